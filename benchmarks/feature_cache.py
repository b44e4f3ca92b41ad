"""Seconds per PixNet training step with a frozen ViT encoder, with and without the feature cache, in one run.

Both plans train the same network (same initial weights, a frozen timm ViT, ``--encoder``): without the cache each
step runs the encoder's trunk on the batch's crops; with it (``cache_features=True``) the trunk ran once over every
training slide and each step reads crops of that token map. Steps alternate between the two, so a change of load
affects both alike; a step is making the batch, the forward pass, the loss, backward and the Adam step; the first
``--warmup`` steps of each are not counted. Also the seconds to build the cache (once per slide and run).

    python benchmarks/feature_cache.py --section C2 --steps 20
    python benchmarks/feature_cache.py --synthetic 2000 --steps 5   # without data
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
    parser.add_argument("--section", default="C2", help="her2st section trained on")
    parser.add_argument("--synthetic", type=float, default=None, metavar="SIZE_UM", help="synthetic tissue instead")
    parser.add_argument("--encoder", default="vit_small_patch16_224", help="timm ViT (random weights, frozen)")
    parser.add_argument("--encoder-args", type=json.loads, default={}, help="timm arguments, as JSON")
    parser.add_argument("--microns-per-pixel", type=float, default=2.0)
    parser.add_argument("--crop-px", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    import torch

    import histo2st as st
    from histo2st.model import PixNet
    from histo2st.train import prepare_sections
    from histo2st.train._feature_cache import slide_tokens

    args = parse_args(argv)
    clock = start_clock()
    if args.synthetic is None:
        sdata = st.datasets.her2st(args.section, root=args.root)
    else:
        sdata = st.datasets.synthetic_tissue(size_um=args.synthetic, microns_per_pixel=1.0, n_genes=8)
    st.pp.normalize(sdata)
    genes = list(sdata.tables[st.io.get_scale(sdata).table_key].var_names[:50])
    options = {"encoder": args.encoder, "encoder_args": args.encoder_args or None, "freeze_encoder": True,
               "microns_per_pixel": args.microns_per_pixel, "crop_px": args.crop_px, "batch_size": args.batch_size,
               "hidden_dim": args.hidden_dim}  # fmt: skip
    torch.manual_seed(0)
    model = PixNet(genes, **options)
    sections, _ = prepare_sections(sdata, genes, args.microns_per_pixel)
    start = time.perf_counter()
    slide_tokens(model.module, sections[0].image, margin=args.crop_px, tile_px=args.crop_px)
    cache_seconds = time.perf_counter() - start
    runs = {}
    for cached in (False, True):
        plan = model._plan_class()(model.module, sections, [], **{**_plan_options(model), "cache_features": cached})
        runs[cached] = {"plan": plan, "optimizer": plan.configure_optimizer(model.module.parameters()),
                        "batches": plan.batches(0, np.random.default_rng(0))}  # fmt: skip
    seconds = {False: [], True: []}
    model.module.train()
    for step in range(args.warmup + args.steps):
        for cached, run in runs.items():
            begin = time.perf_counter()
            batch = next(run["batches"])
            run["optimizer"].zero_grad(set_to_none=True)
            run["plan"].training_step(model.module, batch, torch.device("cpu"))["loss"].backward()
            run["optimizer"].step()
            if step >= args.warmup:
                seconds[cached].append(time.perf_counter() - begin)
    plain, cached = (float(np.median(seconds[c])) for c in (False, True))
    result = {
        "benchmark": "feature_cache",
        "provenance": provenance(clock),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "seconds_per_step_without_cache": plain,
        "seconds_per_step_with_cache": cached,
        "speedup": plain / cached,
        "cache_seconds": cache_seconds,
        "crops_per_second_with_cache": args.batch_size / cached,
    }
    print(json.dumps(result, indent=2))
    return result


def _plan_options(model) -> dict:
    return {k: model.init_params[k] for k in model._plan_args}


if __name__ == "__main__":
    main()
