"""The GPU path, checked: a few training steps of each model and a 4k x 4k prediction on CUDA, against the CPU.

On a CUDA device: PixNet and THItoGene each train for ``--seconds`` on synthetic tissue (bfloat16 autocast, as
``st.tl.fit`` does on CUDA), reporting optimizer steps per second and peak GPU memory; then PixNet predicts a
``--size-px`` square H&E (the synthetic tissue tiled) and reports megapixels of H&E per second. The same weights then
predict a ``--compare-px`` crop on the GPU and on the CPU (float32 both: prediction does not autocast); the maximum
absolute difference is reported (TF32 convolutions on the GPU make it nonzero; a bug makes it large).

Without CUDA it runs the same steps on the CPU and says so (``"device": "cpu"``, no comparison), so the script keeps
working where CI runs it. JSON on stdout.

    python benchmarks/gpu_check.py                      # ~2 min on a GPU
    python benchmarks/gpu_check.py --seconds 5 --size-px 1024 --compare-px 256   # quick, on a CPU
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import jsonable, peak_rss_gb, provenance, start_clock

GENES = 32


def train_rate(sdata, model: str, device: str, seconds: float, params: dict) -> dict:
    """Optimizer steps per second of ``st.tl.fit`` on ``device`` for ``seconds`` (after one warm-up epoch)."""
    import torch

    import histo2st as st

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trained = st.tl.fit(sdata, model, epochs=1000, max_time=seconds, patience=None, validation=0.1, device=device,
                        progress=False, **params)  # fmt: skip
    epochs = trained.history[1:] or trained.history
    steps = sum(h["steps"] for h in epochs)
    rate = steps / sum(h["epoch_seconds"] for h in epochs)
    out = {"steps_per_second": rate, "epochs": len(trained.history), "val_pcc": trained.history[-1].get("val_pcc")}
    if device.startswith("cuda"):
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return {"model": trained, **out}


def predict_rate(model, image: np.ndarray, mpp: float, device: str) -> tuple[np.ndarray, float]:
    """The dense map of ``image`` on ``device`` and the H&E megapixels per second."""
    import dask

    start = time.perf_counter()
    with dask.config.set(scheduler="synchronous"):
        values = np.asarray(model.predict_image(image, mpp, device=device).compute())
    return values, image.shape[1] * image.shape[2] / 1e6 / (time.perf_counter() - start)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="training seconds per model")
    parser.add_argument("--size-px", type=int, default=4096, help="edge of the predicted H&E (1 µm/px)")
    parser.add_argument("--compare-px", type=int, default=512, help="edge of the crop predicted on both devices")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    import torch

    import histo2st as st

    args = parse_args(argv)
    clock = start_clock()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sdata = st.datasets.synthetic_tissue(size_um=1024, microns_per_pixel=1.0, n_genes=GENES, seed=args.seed)
    st.pp.normalize(sdata)
    pixnet = train_rate(sdata, "pixnet", device, args.seconds, {"microns_per_pixel": 2.0, "hidden_dim": 64})
    thitogene = train_rate(sdata, "thitogene", device, args.seconds, {"microns_per_pixel": 1.0, "window_spots": 64})
    he = np.asarray(sdata.images[st.io.get_scale(sdata).image_key].values)  # (3, 1024, 1024) at 1 µm/px
    reps = -(-args.size_px // he.shape[1])
    slide = np.tile(he, (1, reps, reps))[:, : args.size_px, : args.size_px]
    model = pixnet.pop("model")
    _, mpx_per_s = predict_rate(model, slide, 1.0, device)
    result = {"device": device, "note": None if device != "cpu" else "No CUDA device: everything ran on the CPU and "
              "there is no GPU-CPU comparison.", "pixnet_training": pixnet,
              "thitogene_training": {k: v for k, v in thitogene.items() if k != "model"},
              "predict": {"size_px": args.size_px, "megapixels_per_second": mpx_per_s}}  # fmt: skip
    if device != "cpu":
        crop = slide[:, : args.compare_px, : args.compare_px]
        on_gpu, _ = predict_rate(model, crop, 1.0, device)
        on_cpu, _ = predict_rate(model, crop, 1.0, "cpu")
        finite = np.isfinite(on_gpu) & np.isfinite(on_cpu)
        result["gpu_vs_cpu"] = {"compare_px": args.compare_px,
                                "max_abs_difference": float(np.abs(on_gpu - on_cpu)[finite].max()),
                                "value_range": float(np.ptp(on_cpu[finite]))}  # fmt: skip
        result["predict"]["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    result.update(peak_rss_gb=peak_rss_gb(), provenance=provenance(clock))
    print(json.dumps(jsonable(result), indent=2))
    return result


if __name__ == "__main__":
    main()
