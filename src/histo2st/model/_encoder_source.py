"""Where a PixNet encoder comes from, and its identity for the model card.

An encoder is named by its architecture (random initialization, or a weights file beside it), by a local directory
laid out as a timm hub repository (``config.json`` and ``model.safetensors`` or ``pytorch_model.bin``), or by a
Hugging Face hub id ``"hf-hub:<org>/<name>[@<revision>]"``, downloaded with ``huggingface_hub`` into its cache the way
timm's ``create_model("hf-hub:...")`` does. The identity recorded (source, revision, sha256 of the weights file) lets
:meth:`~histo2st.model.PixNet.load` find the same weights again and refuse others.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

#: Prefix of a Hugging Face hub id, as timm writes it.
HUB_PREFIX = "hf-hub:"
#: The configuration file of a timm hub repository.
CONFIG_FILE = "config.json"
#: Weight files of a timm hub repository, in the order tried (timm's preference).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class EncoderSource:
    """A resolved encoder: what to build, from which local weights file, with which input statistics.

    Attributes
    ----------
    architecture
        ``"resnet18"``, ``"resnet50"`` or a timm ViT name.
    model_args
        Architecture arguments of a timm ViT (from the hub ``config.json``, updated with the user's).
    weights
        Local path of the weights file; ``None``: random initialization.
    mean, std
        RGB statistics the weights expect when their configuration says so; ``None``: the architecture's default.
    origin
        JSON identity for the model card: ``source`` (hub id, directory or file), ``sha256`` of the weights file,
        ``revision`` (hub commit) and ``file`` where they apply.
    """

    architecture: str
    model_args: dict = field(default_factory=dict)
    weights: Path | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    origin: dict = field(default_factory=lambda: {"source": "random initialization"})


def resolve_encoder(encoder: str, weights=None, encoder_args: dict | None = None) -> EncoderSource:
    """The :class:`EncoderSource` of PixNet's ``encoder``, ``encoder_weights`` and ``encoder_args``.

    A hub id or a directory brings its own weights, so ``weights`` must then be ``None``; a hub download needs
    network access the first time (or ``HF_HUB_OFFLINE=1`` and the files in the hub cache).
    """
    if not isinstance(encoder, str) or not encoder:
        raise TypeError(f"`encoder` must be a name, a directory or an 'hf-hub:' id, got {encoder!r}.")
    is_repo = encoder.startswith(HUB_PREFIX) or Path(encoder).is_dir()
    if is_repo and weights is not None:
        raise ValueError(
            f"`encoder={encoder!r}` brings its own weights; leave `encoder_weights` unset (got {weights!r})."
        )
    if encoder.startswith(HUB_PREFIX):
        config, weights_file, origin = _hub_files(encoder[len(HUB_PREFIX) :])
    elif Path(encoder).is_dir():
        config, weights_file, origin = _directory_files(Path(encoder))
    else:
        return EncoderSource(encoder, dict(encoder_args or {}), *_weights_file(weights))
    architecture, model_args, mean, std = _read_config(config)
    origin["sha256"] = file_sha256(weights_file)
    return EncoderSource(architecture, {**model_args, **(encoder_args or {})}, weights_file, mean, std, origin)


def _weights_file(weights) -> tuple[Path | None, None, None, dict]:
    if weights is None:
        return None, None, None, {"source": "random initialization"}
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"Encoder weights not found: '{path}'. Check the path.")
    origin = {"source": str(path), "sha256": file_sha256(path)}
    card = path.with_suffix(".json")  # written beside encoders by st.tl.pretrain_encoder
    pretrained = json.loads(card.read_text()) if card.is_file() else None
    if isinstance(pretrained, dict) and pretrained.get("kind") == "histo2st encoder":
        origin["pretraining"] = {k: pretrained[k] for k in ("method", "slides", "microns_per_pixel", "transductive")}
    return path, None, None, origin


def _read_config(path: Path) -> tuple[str, dict, tuple | None, tuple | None]:
    """Architecture, model arguments, mean and std of a timm ``config.json`` (current or legacy single-dict form)."""
    try:
        config = json.loads(Path(path).read_text())
        architecture = config["architecture"]
    except (ValueError, KeyError) as err:
        raise ValueError(f"'{path}' is not a timm model configuration ({err!r}); it needs an 'architecture'.") from None
    pretrained = config.get("pretrained_cfg", config)
    mean, std = pretrained.get("mean"), pretrained.get("std")
    return architecture, dict(config.get("model_args", {})), mean and tuple(mean), std and tuple(std)


def _directory_files(directory: Path) -> tuple[Path, Path, dict]:
    config = directory / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(f"'{directory}' has no {CONFIG_FILE}: an encoder directory is laid out as a timm hub "
                                f"repository ({CONFIG_FILE} and one of {list(WEIGHT_FILES)}).")  # fmt: skip
    found = next((directory / n for n in WEIGHT_FILES if (directory / n).is_file()), None)
    if found is None:
        raise FileNotFoundError(f"'{directory}' has none of the weight files {list(WEIGHT_FILES)}.")
    return config, found, {"source": str(directory), "file": found.name}


def _hub_files(repo: str) -> tuple[Path, Path, dict]:
    """Download (or find in the hub cache) a timm repository's configuration and weights with ``huggingface_hub``."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError

    repo_id, _, revision = repo.partition("@")
    where = f"the Hugging Face hub repository '{repo_id}'"
    try:
        config = Path(hf_hub_download(repo_id, CONFIG_FILE, revision=revision or None))
        weights = None
        for name in WEIGHT_FILES:
            try:
                weights = Path(hf_hub_download(repo_id, name, revision=revision or None))
                break
            except EntryNotFoundError:
                continue
    except GatedRepoError:
        raise PermissionError(
            f"{where} is gated: accept its terms at https://huggingface.co/{repo_id} and log in (`hf auth login`, or "
            "set HF_TOKEN) on this machine."
        ) from None
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"{where} is not in the local hub cache and "
            + ("HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the hub cannot be reached")
            + ": download it once on a machine with network access (the cache is HF_HUB_CACHE), or give a local "
            "directory with its config.json and weights."
        ) from None
    if weights is None:
        raise FileNotFoundError(f"{where} has none of the weight files {list(WEIGHT_FILES)}.")
    # files live in <cache>/models--org--name/snapshots/<commit>/: the commit is the revision actually used
    return config, weights, {"source": HUB_PREFIX + repo_id, "revision": config.parent.name, "file": weights.name}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, remembered per (path, size, modification time).

    Encoder files can be gigabytes, and every member of an ensemble resolves the same one.
    """
    stat = os.stat(path)
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    from ._base import file_sha256 as uncached

    return uncached(path)
