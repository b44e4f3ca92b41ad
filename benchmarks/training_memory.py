"""Training memory as sections are added, and the share of a PixNet step spent making its batch.

    python benchmarks/training_memory.py --sections 1 2 4 8 --max-time 60 --out runs/training_memory

For each count ``n`` of ``--sections``, a fresh 'spawn' child loads ``n`` her2st sections (C2, C3, C4, C5 repeated
under new names beyond four), normalizes them, keeps the top-250 genes and trains PixNet with ``st.tl.fit``'s
``"cpu"`` preset for ``--max-time`` seconds. Measured: the child's resident memory after loading and its peak
(VmHWM) over loading and training, training seconds and steps. Target (issue 20): peak within 1.2x from 1 to 8
sections.

Data share: in the first child, ``--batches`` batches of the training plan are made (reading crops, augmenting) and
then trained on from memory; the share is the batch-making seconds over batch making plus training steps (target:
at most 20 %).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import (
    check_out_dir,
    jsonable,
    markdown_table,
    peak_rss_gb,
    provenance,
    rss_gb,
    run_isolated,
    start_clock,
    write_results,
)

HER2ST = ("C2", "C3", "C4", "C5")


def train_sections(n: int, root: str | None, max_time: float, batches: int) -> dict:
    """In a child: load ``n`` sections, train the CPU preset for ``max_time`` s; memory, seconds, data share."""
    import histo2st as st

    start = time.perf_counter()
    samples = {}
    for i in range(n):
        name = HER2ST[i % len(HER2ST)]
        samples[f"{name}_{i}"] = st.datasets.her2st(name, root=root)
    st.pp.normalize(samples)
    st.pp.select_genes(samples, n_top=250)
    loaded = {"rss_after_loading_gb": rss_gb(), "peak_after_loading_gb": peak_rss_gb(),
              "loading_seconds": time.perf_counter() - start}  # fmt: skip
    share = _data_share(samples, batches) if batches else {}
    start = time.perf_counter()
    model = st.tl.fit(samples, "pixnet", preset="cpu", max_time=max_time, patience=None, progress=False)
    return {"sections": n, **loaded, "peak_rss_gb": peak_rss_gb(), "train_seconds": time.perf_counter() - start,
            "steps": int(sum(h.get("steps", 0) for h in model.history)), **share}  # fmt: skip


def _data_share(samples: dict, n_batches: int) -> dict:
    """Seconds making ``n_batches`` batches, then training on them from memory: the share of batch making."""
    import numpy as np
    import torch

    from histo2st.model import PixNet
    from histo2st.tl._fit import TRAINING_OPTIONS
    from histo2st.train import prepare_sections

    genes = list(next(iter(samples.values())).tables["table"].var_names)
    model = PixNet(genes, **{k: v for k, v in PixNet.presets["cpu"].items() if k not in TRAINING_OPTIONS})
    sections, _ = prepare_sections(samples, genes, model.microns_per_pixel)
    plan = model._make_plan(sections, [])
    start = time.perf_counter()
    batches = [b for _, b in zip(range(n_batches), plan.batches(0, np.random.default_rng(0)), strict=False)]
    making = time.perf_counter() - start
    optimizer = plan.configure_optimizer(model.module.parameters())
    model.module.train()
    start = time.perf_counter()
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        plan.training_step(model.module, batch, torch.device("cpu"))["loss"].backward()
        optimizer.step()
    stepping = time.perf_counter() - start
    return {"batches": len(batches), "batch_making_seconds": making, "training_step_seconds": stepping,
            "data_share": making / (making + stepping)}  # fmt: skip


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="data root; default $HISTO2ST_DATA, ../shared/data")
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--max-time", type=float, default=60.0, help="training seconds per count")
    parser.add_argument("--batches", type=int, default=20, help="batches timed for the data share (first count)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    check_out_dir(args.out, args.overwrite)
    clock = start_clock()
    rows = [run_isolated(train_sections, n, args.root, args.max_time, args.batches if i == 0 else 0)
            for i, n in enumerate(args.sections)]  # fmt: skip
    base = rows[0]["peak_rss_gb"]
    for row in rows:
        row["peak_ratio_to_first"] = row["peak_rss_gb"] / base
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = jsonable({"benchmark": "training_memory", "provenance": provenance(clock), "settings": settings,
                       "rows": rows})  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.out is not None:
        columns = ["sections", "rss_after_loading_gb", "peak_rss_gb", "peak_ratio_to_first", "train_seconds", "steps"]
        write_results(args.out, result, markdown_table(rows, columns))
    return result


if __name__ == "__main__":
    main()
