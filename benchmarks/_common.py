"""Helpers shared by the model benchmarks: model options, one child process per model, memory, provenance, output."""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SINGLE_MODELS = ("pixnet", "thitogene", "ridge")
#: ``"pixnet+thitogene"``: the mixed ensemble ``st.tl.fit(model=["pixnet", "thitogene"])`` builds, as one model.
MODELS = (*SINGLE_MODELS, "pixnet+thitogene")
REPO = Path(__file__).resolve().parents[1]


def add_model_arguments(parser) -> None:
    """The options of the three models, the same in every model benchmark."""
    parser.add_argument("--models", nargs="+", default=list(SINGLE_MODELS), choices=MODELS, help="models to compare")
    parser.add_argument("--epochs", type=int, default=100, help="most epochs of PixNet and THItoGene")
    parser.add_argument("--max-time", type=float, default=900.0, help="training seconds per model and fold")
    parser.add_argument("--patience", type=int, default=8, help="early stopping patience in epochs (validation PCC)")
    parser.add_argument("--validation", type=float, default=0.15, help="fraction of training spots for validation")
    parser.add_argument("--seed", type=int, default=0)
    pixnet = parser.add_argument_group("PixNet")
    pixnet.add_argument("--hidden-dim", type=int, default=128, help="decoder width (paper: 512)")
    pixnet.add_argument("--crop-px", type=int, default=128, help="training crop edge in model pixels")
    pixnet.add_argument("--microns-per-pixel", type=float, default=None, help="resolution; default the model's")
    pixnet.add_argument("--lr", type=float, default=None, help="Adam learning rate; default the model's")
    pixnet.add_argument(
        "--encoder-weights",
        default=None,
        help="torchvision-format ResNet18 checkpoint (e.g. from st.tl.pretrain_encoder); '{test}' in the path is "
        "replaced by the fold's test sections joined by '+', so each fold can load an encoder pretrained without it",
    )
    pixnet.add_argument("--stain-augment", action="store_true", help="H&E re-staining, blur and scale augmentation")
    pixnet.add_argument("--pixnet-params", type=json.loads, default={}, help="more hyperparameters, a JSON object")
    thito = parser.add_argument_group("THItoGene")
    thito.add_argument("--thitogene-microns-per-pixel", type=float, default=None, help="default the model's (0.69)")
    thito.add_argument("--thitogene-lr", type=float, default=None, help="default the model's (1e-5)")
    thito.add_argument("--thitogene-loss", choices=["mse", "pixnet"], default=None, help="default the model's (mse)")
    thito.add_argument("--thitogene-window-spots", type=int, default=None, help="spots seen at once; default 1024")
    thito.add_argument("--thitogene-params", type=json.loads, default={}, help="more hyperparameters, a JSON object")
    parser.add_argument(
        "--mixed-params",
        type=json.loads,
        default={},
        help="training options of the mixed ensemble 'pixnet+thitogene' (each member's, e.g. max_time), a JSON object",
    )
    parser.add_argument(
        "--preset",
        choices=["cpu", "paper"],
        default=None,
        help="train PixNet and THItoGene with st.tl.fit's preset: its epochs, patience, time cap and hyperparameters "
        "replace the options above (--pixnet-params / --thitogene-params / --mixed-params still apply)",
    )
    parser.add_argument(
        "--ema-decay",
        type=float,
        default=None,
        help="weight averaging of PixNet and THItoGene (st.tl.fit); with --preset, default the preset's",
    )
    parser.add_argument(
        "--ridge-microns-per-pixel", type=float, default=2.0, help="resolution of the baseline's patch features"
    )


def add_ensemble_arguments(parser) -> None:
    """Options of the trust benchmarks: the PixNet seed ensemble they train, and where the results go."""
    parser.add_argument("--n-seeds", type=int, default=3, help="ensemble members")
    parser.add_argument("--max-time", type=float, default=120.0, help="training seconds per member")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pixnet-params", type=json.loads, default={}, help="more PixNet options, a JSON object")
    parser.add_argument("--out", type=Path, default=None, help="directory for results.json and results.md")
    parser.add_argument("--overwrite", action="store_true", help="replace the results in --out")


def fit_options(args, model: str, test: list[str]) -> dict:
    """Keyword arguments of ``st.tl.fit`` for one neural model (or a mixed ensemble), from the parsed options."""
    if "+" in model and getattr(args, "preset", None) is None:
        raise SystemExit(f"--models {model} trains with st.tl.fit's presets: add --preset cpu (or paper).")
    if getattr(args, "preset", None) is not None:
        extra = {"pixnet": args.pixnet_params, "thitogene": args.thitogene_params}.get(model, args.mixed_params)
        # the preset's weight averaging unless --ema-decay overrides it
        ema = {} if args.ema_decay is None else {"ema_decay": args.ema_decay}
        return {"preset": args.preset, "validation": args.validation, "seed": args.seed, "progress": False,
                **ema, **extra}  # fmt: skip
    options = {
        "epochs": args.epochs,
        "max_time": args.max_time,
        "patience": args.patience,
        "validation": args.validation,
        "seed": args.seed,
        "progress": False,
        "ema_decay": args.ema_decay,
    }
    if model == "pixnet":
        hyper = {"hidden_dim": args.hidden_dim, "crop_px": args.crop_px, "stain_augment": args.stain_augment}
        if args.encoder_weights is not None:
            hyper["encoder_weights"] = args.encoder_weights.replace("{test}", "+".join(test))
        given = {"microns_per_pixel": args.microns_per_pixel, "lr": args.lr}
        extra = args.pixnet_params
    else:
        hyper = {}
        given = {
            "microns_per_pixel": args.thitogene_microns_per_pixel,
            "lr": args.thitogene_lr,
            "loss": args.thitogene_loss,
            "window_spots": args.thitogene_window_spots,
        }
        extra = args.thitogene_params
    hyper.update({k: v for k, v in given.items() if v is not None})
    return {**options, **hyper, **extra}


class PeakRSS:
    """Peak resident memory of this process and its children (cluster workers), sampled in a thread.

    ``peak``: the highest sum over the process tree at one sample; ``peaks``: each process's own highest, by pid.
    """

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.process, self.interval, self.peak, self.peaks = psutil.Process(), interval, 0, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self.process, *self.process.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    rss = proc.memory_info().rss
                    total += rss
                    self.peaks[proc.pid] = max(self.peaks.get(proc.pid, 0), rss)
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_isolated(fn, /, *args):
    """``fn(*args)`` in a fresh 'spawn' child process, so its peak memory (VmHWM) is that of this one call alone."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(fn, *args).result()


def _status_gb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError(f"No {field} in /proc/self/status: the memory figures need Linux.")


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (VmHWM), in GiB."""
    return _status_gb("VmHWM")


def rss_gb() -> float:
    """Resident memory of this process now (VmRSS), in GiB."""
    return _status_gb("VmRSS")


def start_clock() -> dict:
    """When and under which load a run started, for :func:`provenance`."""
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "load": list(os.getloadavg()), "t0": time.perf_counter()}


def provenance(clock: dict) -> dict:
    """Commit, command, machine, versions, duration and load: the machine is shared, so the load says how busy."""
    import torch

    import histo2st as st

    with open("/proc/cpuinfo") as info:
        cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": shlex.join(["python", *sys.argv]),
        "started": clock["started"],
        "wall_seconds": time.perf_counter() - clock["t0"],
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "histo2st": st.__version__,
        "load_average_start": clock["load"],
        "load_average_end": list(os.getloadavg()),
    }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def jsonable(value):
    """numpy scalars and arrays as Python values, NaN and infinities as ``None`` (valid JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(rows: list[dict], columns: list[str], digits: int = 3) -> str:
    """A GitHub markdown table of ``rows`` (dicts) with these columns; floats rounded, missing values blank."""

    def cell(value) -> str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return ""
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        if isinstance(value, list | tuple):
            return " ".join(str(v) for v in value)
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def check_out_dir(out: Path | None, overwrite: bool) -> None:
    """Fail before any training if the output directory exists and may not be replaced."""
    if out is not None and out.exists() and not overwrite:
        raise SystemExit(f"--out '{out}' already exists; pass --overwrite to replace its results or choose another.")


def write_results(out: Path, result: dict, markdown: str) -> None:
    """``results.json`` and ``results.md`` in ``out`` (created if needed), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("results.json", json.dumps(result, indent=2)), ("results.md", markdown)):
        tmp = out / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.write_text(text)
        os.replace(tmp, out / name)
