"""Cohort prediction benchmark: slides per hour on 1 and 2 workers, peak memory per worker, kill and resume.

    python benchmarks/cohort.py                      # 8 synthetic slides of 8000 x 8000 px at 0.5 µm/px
    python benchmarks/cohort.py --slides 2 --size 2000 --workdir /tmp/c   # a quick run

Phases, each in its own process (``--phase``), so that memory and time are their own:

1. ``slides``: ``--slides`` synthetic H&E slides (pyramidal JPEG OME-TIFFs, one tissue seed each).
2. ``model``: a PixNet (``--genes`` genes, ResNet18, decoder width ``--hidden-dim``) trained one epoch on a small
   synthetic tissue; accuracy is not the point, the weights are a trained network's.
3. ``workers_1`` and ``workers_2``: ``st.tl.predict_cohort`` of every slide (bins of ``--bins`` µm) on a
   ``LocalCluster`` of that many single-threaded worker processes, each into its own output directory. Measured: wall
   time, slides per hour, scaling efficiency (the 2-worker rate over twice the 1-worker rate), peak resident memory of
   each worker process and of the client (sampled every 0.2 s).
4. ``kill``: the 2-worker run again into a fresh directory, killed (SIGKILL of its process group) once one slide is
   done and the next has some blocks stored, then started again. Measured: slides skipped as done, the blocks the
   resumed run found done against those recorded at the kill (a difference means recorded work was lost), and the
   blocks it computed.

Targets (issue 20): peak RSS per worker at most 3 GB, whatever the number of slides; resume redoes at most one block
per slide in flight.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PeakRSS


def phase_slides(args) -> dict:
    from histo2st.datasets._synthetic_slide import write_synthetic_slide

    start = time.perf_counter()
    for i in range(args.slides):
        write_synthetic_slide(_slide_paths(args)[i], size_px=args.size, microns_per_pixel=args.slide_mpp, seed=i,
                              overwrite=True)  # fmt: skip
    size = sum(p.stat().st_size for p in _slide_paths(args))
    return {"slides": args.slides, "size_px": args.size, "microns_per_pixel": args.slide_mpp,
            "seconds": round(time.perf_counter() - start, 1), "files_gb": round(size / 1e9, 3)}  # fmt: skip


def phase_model(args) -> dict:
    import histo2st as st

    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=args.model_mpp, n_genes=args.genes, seed=0)
    st.pp.normalize(sdata)
    model = st.tl.fit(sdata, "pixnet", epochs=1, microns_per_pixel=args.model_mpp, hidden_dim=args.hidden_dim,
                      tile_px=args.tile_px, progress=False, seed=0)  # fmt: skip
    model.save(args.workdir / "model", overwrite=True)
    return {"genes": model.n_genes, "microns_per_pixel": model.microns_per_pixel, "hidden_dim": args.hidden_dim,
            "tile_px": args.tile_px}  # fmt: skip


def phase_cohort(args) -> dict:
    """One ``predict_cohort`` run on a LocalCluster of ``--workers`` processes into ``--out-dir``."""
    from distributed import Client, LocalCluster

    import histo2st as st

    start = time.perf_counter()
    with (
        PeakRSS() as rss,
        LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None) as lc,
        Client(lc) as client,
    ):
        workers = set(client.run(os.getpid).values())
        cohort = st.tl.predict_cohort(_slide_paths(args), args.workdir / "model", args.out_dir,
                                      spot_um=args.bins, client=client, progress=False)  # fmt: skip
    seconds = time.perf_counter() - start
    worker_peaks = [rss.peaks[pid] / 1e9 for pid in workers if pid in rss.peaks]
    return {
        "workers": args.workers,
        "slides_done": int(cohort.n_obs),
        "seconds": round(seconds, 1),
        "slides_per_hour": round(cohort.n_obs / seconds * 3600, 1),
        "peak_rss_gb_per_worker": [round(p, 2) for p in sorted(worker_peaks)],
        "peak_rss_gb_client": round(rss.peaks[os.getpid()] / 1e9, 2),
    }


def run_kill_and_resume(args, argv: list[str]) -> dict:
    """Start the 2-worker cohort, kill it mid-slide, resume it; what the resume found and redid."""
    from histo2st.tl._cohort import MANIFEST
    from histo2st.tl._stream import PARTIAL_DIR

    out = args.workdir / "kill"
    cmd = [sys.executable, __file__, *argv, "--phase", "cohort", "--workers", "2", "--out-dir", str(out)]
    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    recorded, in_flight = None, None
    while victim.poll() is None:
        time.sleep(0.5)
        done = _read_json(out / MANIFEST)
        finished = [n for n, r in done.items() if r.get("status") == "done"]
        pending = [p.name.split(".")[0] for p in _slide_paths(args) if p.name.split(".")[0] not in finished]
        if finished and pending:
            blocks = _done_blocks(out / f"{pending[0]}.zarr" / PARTIAL_DIR)
            if blocks:
                os.killpg(victim.pid, signal.SIGKILL)
                victim.wait()
                recorded, in_flight = (_done_blocks(out / f"{pending[0]}.zarr" / PARTIAL_DIR), pending[0])
                skipped = len(finished)
                break
    if in_flight is None:
        return {"error": "the run finished before it could be killed mid-slide; use more or larger slides"}
    resumed = subprocess.run(cmd, capture_output=True, text=True)
    lines = re.findall(r"Predicting (\d+) of (\d+) blocks \((\d+) already done\)", resumed.stderr)
    first = [tuple(map(int, m)) for m in lines][0] if lines else None
    return {
        "slides_done_at_kill": skipped,
        "slide_in_flight": in_flight,
        "blocks_recorded_at_kill": recorded,
        "blocks_found_done_on_resume": first[2] if first else None,
        "blocks_computed_on_resume": first[0] if first else None,
        "blocks_of_the_slide": first[1] if first else None,
        "slides_predicted_on_resume": len(lines),
        "resume": json.loads(resumed.stdout.strip().splitlines()[-1]) if resumed.returncode == 0 else resumed.stderr,
    }


def _done_blocks(partial_dir: Path) -> int:
    import zarr

    markers = list(partial_dir.glob("*.done")) if partial_dir.exists() else []
    return int(sum(zarr.open_array(str(m), mode="r")[:].sum() for m in markers))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _slide_paths(args) -> list[Path]:
    return [args.workdir / f"slide{i}.ome.tif" for i in range(args.slides)]


PHASES = {"slides": phase_slides, "model": phase_model, "cohort": phase_cohort}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slides", type=int, default=8)
    parser.add_argument("--size", type=int, default=8000, help="slide side in pixels")
    parser.add_argument("--slide-mpp", type=float, default=0.5)
    parser.add_argument("--model-mpp", type=float, default=2.0)
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--tile-px", type=int, default=512)
    parser.add_argument("--bins", type=float, nargs="+", default=[16.0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here (default: a temporary directory)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json here")
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out-dir", type=Path, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None) -> dict | None:
    from _common import provenance, start_clock

    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return None
    clock = start_clock()
    with tempfile.TemporaryDirectory(prefix="histo2st-cohort-") as tmp:
        args.workdir = args.workdir or Path(tmp)
        args.workdir.mkdir(parents=True, exist_ok=True)
        base = [*_without(argv, "--workdir", "--out"), "--workdir", str(args.workdir)]
        result = {}
        for phase, extra in [("slides", []), ("model", []), ("workers_1", ["--workers", "1"]),
                             ("workers_2", ["--workers", "2"])]:  # fmt: skip
            name = "cohort" if phase.startswith("workers") else phase
            out_dir = ["--out-dir", str(args.workdir / phase)] if name == "cohort" else []
            done = subprocess.run([sys.executable, __file__, *base, "--phase", name, *extra, *out_dir],
                                  capture_output=True, text=True)  # fmt: skip
            if done.returncode:
                sys.exit(f"Phase {phase!r} failed:\n{done.stderr[-5000:]}")
            result[phase] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{phase}: {json.dumps(result[phase])}", file=sys.stderr)
        result["scaling_efficiency"] = round(
            result["workers_2"]["slides_per_hour"] / (2 * result["workers_1"]["slides_per_hour"]), 3
        )
        result["kill_and_resume"] = run_kill_and_resume(args, base)
    result = {"benchmark": "cohort", "provenance": provenance(clock), "settings": {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("phase", "out_dir")},
        **result}  # fmt: skip
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return result


def _without(argv: list[str], *options: str) -> list[str]:
    """``argv`` less the given options and their values."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not any(arg.startswith(f"{o}=") for o in options):
            out.append(arg)
    return out


if __name__ == "__main__":
    main()
