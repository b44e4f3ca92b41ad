"""Whole-slide prediction benchmark: prints one JSON object (see issue 7).

    python benchmarks/wsi.py                  # 20,000 x 20,000 px slide at 0.5 µm/px, PixNet with 50 genes
    python benchmarks/wsi.py --size 4000      # the same measurements on a small slide

Steps, each in its own process so that its peak memory is its own:

1. ``slide``: a synthetic H&E slide generated tile by tile (a scratch zarr store, then a pyramidal JPEG OME-TIFF;
   ``histo2st.datasets._synthetic_slide``), never held whole.
2. ``model``: a PixNet (50 genes, ResNet18 encoder, decoder width ``--hidden-dim``, prediction tiles of ``--tile-px``)
   trained briefly (``--epochs``) on ``st.datasets.synthetic_tissue`` at the model's µm per pixel; accuracy is not
   the point, the weights are a trained network's.
3. ``predict``, once on the local threaded scheduler and once on a ``LocalCluster`` of 2 worker processes with one
   thread each: ``st.io.read_wsi`` at the model's resolution (the pyramid level closest to it), ``st.io.write_zarr``,
   then ``st.tl.predict`` with bins of ``--bins`` µm into that store.

Measured: wall times; throughput in megapixels per second (slide pixels at full resolution, and map pixels at the
model's resolution); the share of the block-prediction phase spent in the network forward (local run: the forward
itself, timed around ``module.forward``; cluster: the time of the tasks that run the network, from the task stream,
over twice the wall time as 2 workers run at once) and its complement, the overhead of reading, resampling, tiling,
converting and writing (target: at most 30%); peak resident memory of the process tree, sampled every 0.2 s
(target: at most 4 GB); the map's size on disk and its chunk files; the time to read one gene's full-resolution map
back from the store (just written, so from the page cache).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import PeakRSS


def phase_slide(args) -> dict:
    from histo2st.datasets._synthetic_slide import write_synthetic_slide

    start = time.perf_counter()
    with PeakRSS() as rss:
        path = write_synthetic_slide(args.workdir / "slide.ome.tif", size_px=args.size,
                                     microns_per_pixel=args.slide_mpp, overwrite=True)  # fmt: skip
    return {
        "size_px": args.size,
        "microns_per_pixel": args.slide_mpp,
        "seconds": round(time.perf_counter() - start, 1),
        "file_gb": round(path.stat().st_size / 1e9, 3),
        "peak_rss_gb": round(rss.peak / 1e9, 2),
    }


def phase_model(args) -> dict:
    import histo2st as st

    start = time.perf_counter()
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=args.model_mpp, n_genes=args.genes, seed=0)
    st.pp.normalize(sdata)
    model = st.tl.fit(sdata, "pixnet", epochs=args.epochs, microns_per_pixel=args.model_mpp, hidden_dim=args.hidden_dim,
                      tile_px=args.tile_px, progress=False, seed=0)  # fmt: skip
    model.save(args.workdir / "model", overwrite=True)
    return {
        "genes": model.n_genes,
        "microns_per_pixel": model.microns_per_pixel,
        "hidden_dim": args.hidden_dim,
        "tile_px": args.tile_px,
        "parameters": int(sum(p.numel() for p in model.module.parameters())),
        "training": f"{len(model.history)} epoch(s) on a 0.6 mm synthetic tissue",
        "seconds": round(time.perf_counter() - start, 1),
    }


def phase_predict(args) -> dict:
    import dask
    import spatialdata as sd

    import histo2st as st

    cluster = args.phase == "cluster"
    store = args.workdir / f"{args.phase}.zarr"
    model = st.tl.load_model(args.workdir / "model")
    forward = None if cluster else _time_forward(model)  # worker processes get their own copy of the module
    start = time.perf_counter()
    with PeakRSS() as rss:
        sdata = st.io.read_wsi(args.workdir / "slide.ome.tif", target_microns_per_pixel=model.microns_per_pixel)
        st.io.write_zarr(sdata, store, overwrite=True)
        setup_s = time.perf_counter() - start
        if cluster:
            from distributed import Client, LocalCluster, get_task_stream

            with (
                LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
                Client(lc) as client,
                get_task_stream(client) as stream,
            ):
                predict_start = time.perf_counter()
                st.tl.predict(sdata, model, spot_um=args.bins)
                predict_s = time.perf_counter() - predict_start
            network_s = sum(_duration(t) for t in stream.data if "predict_block" in str(t["key"]))
            task_s = sum(_duration(t) for t in stream.data)
        else:
            from dask.diagnostics import Profiler

            with dask.config.set(scheduler="threads"), Profiler() as profiler:
                predict_start = time.perf_counter()
                st.tl.predict(sdata, model, spot_um=args.bins)
                predict_s = time.perf_counter() - predict_start
            network_s = sum(r.end_time - r.start_time for r in profiler.results if "predict_block" in str(r.key))
            task_s = sum(r.end_time - r.start_time for r in profiler.results)
    stats = dict(_element_attrs(store / "images" / "pred"))["stream"]
    prediction_s = stats["seconds"] - stats["pyramid_seconds"]
    # cluster: 2 workers predict at once, so their network time is compared with twice the wall time
    forward_s, capacity_s = (network_s, 2 * prediction_s) if cluster else (forward["seconds"], prediction_s)
    map_shape = _scale0(sdata.images["pred"]).shape
    gene = model.genes[0]
    read_start = time.perf_counter()
    one = _scale0(sd.read_zarr(store, selection=("images",)).images["pred"]).sel(c=gene).data.compute()
    read_s = time.perf_counter() - read_start
    pred_dir = store / "images" / "pred"
    return {
        "scheduler": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True)" if cluster else "threads (2)",
        "read_and_write_store_s": round(setup_s, 1),
        "predict_s": round(predict_s, 1),
        "block_prediction_s": round(prediction_s, 1),
        "pyramid_s": round(stats["pyramid_seconds"], 1),
        "tables_s": round(predict_s - stats["seconds"], 1),
        "slide_megapixels_per_s": round(args.size**2 / 1e6 / predict_s, 2),
        "map_megapixels_per_s": round(map_shape[1] * map_shape[2] / 1e6 / predict_s, 3),
        "forward_s": round(forward_s, 1),
        "forward_measured_as": "task stream: tasks running the network" if cluster else "timer around module.forward",
        "forward_calls": forward["calls"] if not cluster else None,
        "forward_share_of_block_prediction": round(forward_s / capacity_s, 3),
        "overhead_share_of_block_prediction": round(1 - forward_s / capacity_s, 3),
        "network_task_share_of_all_task_time": round(network_s / task_s, 3),
        "peak_rss_gb": round(rss.peak / 1e9, 2),
        "map_shape": list(map_shape),
        "blocks": stats["blocks"],
        "blocks_on_tissue": stats["blocks_on_tissue"],
        "map_on_disk_gb": round(_disk_bytes(pred_dir) / 1e9, 3),
        "map_chunk_files": sum(1 for p in (pred_dir / "s0").rglob("*") if p.is_file() and p.name != "zarr.json"),
        "store_on_disk_gb": round(_disk_bytes(store) / 1e9, 3),
        "read_one_gene_s": round(read_s, 2),
        "read_one_gene_megapixels": round(one.size / 1e6, 1),
        "tables": {
            k: {"bins": int(sdata.tables[k].n_obs), "finite": bool(np.isfinite(sdata.tables[k].X).all())}
            for k in sdata.tables
        },
    }


def _time_forward(model) -> dict:
    """Time every forward pass of ``model.module`` (in this process: the threaded scheduler)."""
    lock, totals = threading.Lock(), {"seconds": 0.0, "calls": 0}
    inner = model.module.forward

    def timed(x):
        start = time.perf_counter()
        out = inner(x)
        with lock:
            totals["seconds"] += time.perf_counter() - start
            totals["calls"] += 1
        return out

    model.module.forward = timed
    return totals


def _scale0(element):
    return element["scale0"].ds["image"] if hasattr(element, "children") else element


def _duration(task) -> float:
    return sum(s["stop"] - s["start"] for s in task["startstops"] if s["action"] == "compute")


def _element_attrs(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]["histo2st"]


def _disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


PHASES = {"slide": phase_slide, "model": phase_model, "local": phase_predict, "cluster": phase_predict}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20_000, help="slide side in pixels (default 20000)")
    parser.add_argument("--slide-mpp", type=float, default=0.5, help="µm per pixel of the slide (default 0.5)")
    parser.add_argument("--model-mpp", type=float, default=2.0, help="µm per pixel of the model (default 2)")
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--hidden-dim", type=int, default=512, help="PixNet decoder width (paper: 512)")
    parser.add_argument("--tile-px", type=int, default=1024, help="prediction tile, 128 px halo included")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--bins", type=float, nargs="+", default=[8.0, 16.0], help="bin sizes in µm")
    parser.add_argument("--no-cluster", action="store_true", help="skip the LocalCluster run")
    parser.add_argument("--workdir", type=Path, help="keep files here (default: a temporary directory)")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return
    with tempfile.TemporaryDirectory(prefix="histo2st-wsi-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = {"machine": _machine()}
        for phase in ["slide", "model", "local"] + ([] if args.no_cluster else ["cluster"]):
            argv = [a for a in sys.argv[1:] if a != "--workdir" and not a.startswith("--workdir=")]
            if args.workdir:
                argv = [a for a in argv if a != str(args.workdir)]
            done = subprocess.run([sys.executable, __file__, *argv, "--workdir", str(workdir), "--phase", phase],
                                  capture_output=True, text=True)  # fmt: skip
            if done.returncode:
                sys.exit(f"Phase {phase!r} failed:\n{done.stderr[-5000:]}")
            result[phase] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{phase}: {json.dumps(result[phase])}", file=sys.stderr)
    print(json.dumps(result, indent=2))


def _machine() -> dict:
    import os

    import psutil
    import torch

    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}  # fmt: skip


if __name__ == "__main__":
    main()
