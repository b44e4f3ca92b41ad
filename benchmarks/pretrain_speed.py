"""Seconds per BYOL pretraining step in float32 and in bfloat16 autocast, measured in one run (a ratio).

Each step is what ``st.tl.pretrain_encoder`` runs: two augmented views of ``--batch-size`` tissue regions, the BYOL
loss, backward and the AdamW step. The two precisions alternate step by step, so a change of load during the run
affects both alike; the first ``--warmup`` steps of each are not counted. On a CPU without AMX, bfloat16 is emulated
and expected to be slower (``histo2st.train._precision.native_bfloat16`` keeps it off there by default).

    python benchmarks/pretrain_speed.py --section C2 --steps 10
    python benchmarks/pretrain_speed.py --synthetic 2000 --steps 5   # without data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import provenance, start_clock


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="data root; default $HISTO2ST_DATA, ../shared/data")
    parser.add_argument("--section", default="C2", help="her2st section whose tissue tiles are used")
    parser.add_argument("--synthetic", type=float, default=None, metavar="SIZE_UM", help="synthetic tissue instead")
    parser.add_argument("--microns-per-pixel", type=float, default=4.0)
    parser.add_argument("--tile-px", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="counted steps per precision")
    parser.add_argument("--warmup", type=int, default=2, help="uncounted first steps per precision")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    import torch

    import histo2st as st
    from histo2st._settings import settings
    from histo2st.module._ssl import BYOLModule
    from histo2st.tl._pretrain import _tile_slide
    from histo2st.train._precision import native_bfloat16
    from histo2st.train._ssl_plan import BYOLPlan

    args = parse_args(argv)
    clock = start_clock()
    if args.synthetic is None:
        sdata = st.datasets.her2st(args.section, root=args.root)
    else:
        sdata = st.datasets.synthetic_tissue(size_um=args.synthetic, microns_per_pixel=2.0, n_genes=8)
    slide = _tile_slide(args.section, sdata, args.microns_per_pixel, args.tile_px, 0.5)
    device = torch.device(settings.resolve_device(None))
    runs = {}
    for amp in (False, True):
        torch.manual_seed(0)
        module = BYOLModule().to(device)
        plan = BYOLPlan(module, [slide], tile_px=args.tile_px, batch_size=args.batch_size, epochs=1)
        runs[amp] = {"module": module, "plan": plan, "optimizer": plan.configure_optimizer(module.parameters())}
    seconds = {False: [], True: []}
    rng = np.random.default_rng(0)
    for step in range(args.warmup + args.steps):
        batch = next(iter(runs[False]["plan"].batches(step, rng)))
        for amp, run in runs.items():
            start = time.perf_counter()
            run["optimizer"].zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                loss = run["plan"].training_step(run["module"], batch, device)["loss"]
            loss.backward()
            run["optimizer"].step()
            run["module"].update_target(0.99)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                seconds[amp].append(time.perf_counter() - start)
    fp32, bf16 = (float(np.median(seconds[amp])) for amp in (False, True))
    result = {
        "benchmark": "pretrain_speed",
        "device": str(device),
        "native_bfloat16": native_bfloat16(str(device)),
        "tiles": len(slide.centers),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seconds_per_step_float32": fp32,
        "seconds_per_step_bfloat16": bf16,
        "speedup_bfloat16": fp32 / bf16,
        "provenance": provenance(clock),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
