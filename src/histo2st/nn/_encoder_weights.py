"""Loading published encoder checkpoints (torchvision ResNets, timm Vision Transformers) strictly, with a report.

Checkpoints come as ``torch.save`` files or safetensors, often wrapped (Lightning's ``{"state_dict": ...}``) and
with key prefixes added by the code that trained them (``module.``, ``model.``, ``backbone.``, ...); the loader
unwraps and strips those, then requires every tensor of the encoder to be present with its shape. Classifier or
projection heads (a ResNet's ``fc.*``, a ViT's ``head.*``: each encoder's ``head_prefixes``) are not part of an
encoder and are ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger("histo2st")

# Wrappers of a state dict in common checkpoint formats (Lightning, training scripts), tried in this order.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
# Key prefixes added by DataParallel/DDP ("module."), Lightning modules ("model."), SimCLR-style code ("backbone.",
# "encoder.") and Ciga et al.'s release ("model.resnet."); stripped repeatedly from the front of every key.
_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "resnet.")


@dataclass
class EncoderLoadReport:
    """What :func:`load_encoder_weights` did.

    Attributes
    ----------
    source
        The file path, or ``"<state dict>"``.
    loaded
        Keys of the encoder that received a tensor from the checkpoint.
    missing
        Encoder keys the checkpoint did not provide (they keep their initial values).
    unexpected
        Checkpoint keys (after prefix stripping) that are not keys of the encoder's published layout at all.
    ignored
        Keys of the published layout the encoder does not have: a classifier or projection head (``fc``, ``head``)
        that does not match, and layers a shallower encoder left out.
    mismatched
        ``key: checkpoint shape -> encoder shape`` for keys whose shapes differ.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph naming every problem."""
        lines = [f"{len(self.loaded)} encoder tensors match in {self.source}."]
        for name in ("missing", "unexpected", "mismatched", "ignored"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"{name}: {shown}")
        return "\n".join(lines)


def read_state_dict(path_or_state_dict, *, weights_only: bool = True) -> tuple[Mapping, str]:
    """The tensors of a checkpoint (a mapping, a ``torch.save`` file or a ``.safetensors`` file) and its name."""
    if isinstance(path_or_state_dict, Mapping):
        return path_or_state_dict, "<state dict>"
    path = Path(path_or_state_dict)
    if not path.is_file():
        raise FileNotFoundError(f"Encoder checkpoint not found: '{path}'. Check the path.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path, device="cpu"), str(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as err:  # torch raises UnpicklingError or RuntimeError depending on the content
        if not weights_only:
            raise
        raise ValueError(
            f"'{path}' holds Python objects besides tensors (for example a Lightning checkpoint's hyper-parameters), "
            "which safe loading refuses. If you trust the file, pass `weights_only=False`; or re-save only its "
            f"state dict with torch.save. Original error: {err}"
        ) from err
    if not isinstance(obj, Mapping):
        raise TypeError(f"'{path}' holds a {type(obj).__name__}, not a state dict; save `model.state_dict()` instead.")
    return obj, str(path)


def _unwrap(state: Mapping) -> Mapping:
    while True:
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if inner is None:
            return state
        state = inner


def _strip_prefixes(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _encoder_of(module: nn.Module) -> nn.Module:
    encoder = module if hasattr(module, "reference_keys") else getattr(module, "encoder", None)
    if encoder is None or not hasattr(encoder, "reference_keys"):
        raise TypeError(
            f"Expected a histo2st encoder (ResNet18, ResNet, ViTEncoder) or a module with one as `encoder`, got "
            f"{type(module).__name__}."
        )
    return encoder


def _sort_keys(state: dict, own: dict, encoder: nn.Module, report: EncoderLoadReport) -> dict:
    """The tensors to load; every other checkpoint key filed in ``report`` as ignored, unexpected or mismatched."""
    reference, heads = encoder.reference_keys(), encoder.head_prefixes
    to_load = {}
    for key, value in state.items():
        if key in own:
            if tuple(value.shape) == tuple(own[key].shape):
                to_load[key] = value
            elif key.startswith(heads):
                report.ignored.append(key)
            else:
                report.mismatched.append(f"{key}: {tuple(value.shape)} -> {tuple(own[key].shape)}")
        elif key in reference or key.startswith(heads):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    # BatchNorm counters are not used by the forward pass
    mismatched = {m.split(":")[0] for m in report.mismatched}
    report.missing = [
        k
        for k in own
        if k not in to_load and k not in mismatched and not (k.endswith("num_batches_tracked") or k.startswith(heads))
    ]
    report.loaded = sorted(to_load)
    return to_load


def load_encoder_weights(
    module: nn.Module, path_or_state_dict, *, strict: bool = True, weights_only: bool = True
) -> EncoderLoadReport:
    """Load a published checkpoint into an encoder (or a module's ``.encoder``), checking every tensor.

    Layouts: torchvision's ResNets into :class:`~histo2st.nn.ResNet` (``conv1.weight``, ``layer1.0.conv1.weight``,
    ...) and timm's ``VisionTransformer`` into :class:`~histo2st.nn.ViTEncoder` (``cls_token``, ``reg_token``,
    ``pos_embed``, ``patch_embed.proj.weight``, ``blocks.0.ls1.gamma``, ...). Accepted: a state dict, a
    ``torch.save`` file or a ``.safetensors`` file; wrapped in ``{"state_dict": ...}``, ``{"model_state_dict": ...}``
    or ``{"model": ...}``; keys prefixed by ``module.``, ``model.``, ``backbone.``, ``encoder.`` or ``resnet.``
    (Ciga et al.'s Lightning checkpoint stores ``state_dict`` with keys ``model.resnet.conv1.weight``, ...). A head
    (``fc`` of a ResNet, ``head`` of a ViT) is loaded only when the encoder has one of the same shape and is
    otherwise ignored; BatchNorm ``num_batches_tracked`` counters are optional.

    Parameters
    ----------
    module
        An encoder, or a module whose ``encoder`` attribute is one (such as ``PixNetModule``).
    path_or_state_dict
        Checkpoint file or mapping of tensors.
    strict
        Raise when an encoder tensor is missing, a key is not of the encoder's layout, or a shape differs. With
        ``strict=False`` the matching tensors are loaded and the problems are logged as a warning.
    weights_only
        Forwarded to ``torch.load``; set ``False`` only for trusted files holding other Python objects.

    Returns
    -------
    An :class:`EncoderLoadReport` listing loaded, missing, unexpected, ignored and mismatched keys.
    """
    encoder = _encoder_of(module)
    raw, source = read_state_dict(path_or_state_dict, weights_only=weights_only)
    state = {_strip_prefixes(k): v for k, v in _unwrap(raw).items() if isinstance(v, torch.Tensor)}
    if not state:
        raise ValueError(f"No tensors found in the checkpoint {source}; is it a model state dict?")
    target = encoder.weights_module
    report = EncoderLoadReport(source=source)
    to_load = _sort_keys(state, target.state_dict(), encoder, report)
    problems = report.missing or report.unexpected or report.mismatched
    name = getattr(encoder, "architecture", type(encoder).__name__)
    if problems and strict:
        raise ValueError(
            f"The checkpoint does not match the {name} encoder.\n"
            + report.summary()
            + f"\nCheck that it is a {name} checkpoint in its published layout (docs: 'Models', encoders), or pass "
            "`strict=False` to load the matching tensors only."
        )
    if problems:
        logger.warning(report.summary())
    target.load_state_dict(to_load, strict=False)
    logger.info(f"loaded {len(report.loaded)} {name} tensors from {source}")
    return report
