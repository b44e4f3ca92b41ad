"""Where THItoGene's spots become alike: the spread across spots of every layer's output on a held-out section.

Trains THItoGene with ``st.tl.fit(preset="cpu")`` (plus ``--params``) on ``--train`` (her2st, top 250 genes by mean
of the training sections), then runs the trained network once, in evaluation mode, on every spot of ``--test`` as one
window and reports for each layer the mean over features of the standard deviation across spots (``spread``), the
mean absolute value (``magnitude``) and their ratio. A ratio near 0 means every spot gets nearly the same vector
there: the collapse toward the per-gene mean that shows at the head's output. Also the dead units of the head's ReLU,
the prediction's spread over the measured one, and the test PCC@M.

    python benchmarks/thitogene_layers.py --params '{"lr": 1e-3}' --max-time 50
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import jsonable, provenance, start_clock
from her2st import load_sections


def layers(module) -> dict:
    """The layers to watch, in the order a spot's features pass them."""
    vit = module.vit
    return {
        "odconv": module.odconv,
        "capsules": module.capsules,
        "vit_input_norm": vit.input_norm,
        **{f"vit_layer{i}": layer for i, layer in enumerate(vit.encoder.layers)},
        "vit": vit,
        "gat": module.gat,
        "head_linear": module.head[0],
        "head_relu": module.head[1],
        "head_norm": module.head[2],
        "head_out": module.head[3],
    }


def one_window(model, sdata) -> dict:
    """Every spot of the one section of ``sdata`` as one window: its section, patches, grid and graph as tensors."""
    import torch

    from histo2st.train import prepare_sections
    from histo2st.train._spot_windows import _adjacency, cut_patches, grid_coordinates, window_grid

    (sec,), _ = prepare_sections(sdata, list(model.genes), model.microns_per_pixel)
    grid = window_grid(grid_coordinates(sec.centers * sec.microns_per_pixel, model.init_params["grid_pitch_um"]))
    return {
        "section": sec,
        "patches": torch.from_numpy(cut_patches(sec.image, sec.centers, model.module.patch_px)).float().div_(255),
        "grid": grid,
        "adjacency": _adjacency(sec.centers, "cpu"),
    }


def layer_spreads(model, sdata) -> dict:
    """Run ``model``'s network on every spot of ``sdata`` as one window; per layer spread, magnitude and ratio."""
    import torch

    import histo2st as st

    module = model.module.eval()
    window = one_window(model, sdata)
    sec, patches, grid = window["section"], window["patches"], window["grid"]
    n = sec.n_spots
    outputs = {}

    def keep(name):
        def hook(_module, _inputs, out):
            out = out[0] if isinstance(out, tuple) else out
            outputs[name] = out.detach().reshape(n, -1)  # batch dims of one window are (1, n) or (n,)

        return hook

    handles = [layer.register_forward_hook(keep(name)) for name, layer in layers(module).items()]
    with torch.no_grad():
        pred = module(patches, torch.from_numpy(grid), window["adjacency"]).numpy()
    for h in handles:
        h.remove()
    rows = {}
    for name, out in outputs.items():
        spread, magnitude = out.std(0).mean().item(), out.abs().mean().item()
        rows[name] = {"spread": spread, "magnitude": magnitude, "ratio": spread / max(magnitude, 1e-12)}
    rows["head_relu"]["dead_units"] = (outputs["head_relu"].max(0).values <= 0).float().mean().item()
    target = sec.targets
    return {
        "layers": rows,
        "prediction_spread_ratio": float(pred.std(0).mean() / target.std(0).mean()),
        "test_pcc_m": float(np.nanmean(st.metrics.pcc_per_gene(pred, target))),
    }


def add_options(parser, *, train: list[str], test: str, max_time: float | None) -> None:
    """The options of the THItoGene diagnostics: data, sections, training time, more options, seed."""
    parser.add_argument("--root", default=None, help="data root; default $HISTO2ST_DATA, then ../shared/data")
    parser.add_argument("--synthetic", type=float, default=None, metavar="SIZE_UM",
                        help="dry run: each section a synthetic tissue of this size")  # fmt: skip
    parser.add_argument("--train", nargs="+", default=train)
    parser.add_argument("--test", default=test)
    parser.add_argument("--max-time", type=float, default=max_time,
                        help="training seconds" if max_time else "training seconds; default the preset's")  # fmt: skip
    parser.add_argument("--params", type=json.loads, default={}, help="more THItoGene options, a JSON object")
    parser.add_argument("--seed", type=int, default=0)


def train_thitogene(args):
    """Load ``--train`` and ``--test``, normalize, select the training sections' top 250 genes by mean, and train
    THItoGene on the training sections with ``st.tl.fit``'s CPU preset. Returns the model and every loaded section."""
    import histo2st as st

    names = [*args.train, args.test]
    samples = load_sections({"root": args.root, "synthetic_um": args.synthetic, "sections": names}, names)
    st.pp.normalize(samples)
    training = {name: samples[name] for name in args.train}
    st.pp.select_genes(training, n_top=250)
    cap = {} if args.max_time is None else {"max_time": args.max_time}
    model = st.tl.fit(training, "thitogene", preset="cpu", seed=args.seed, progress=False, **cap, **args.params)
    return model, samples


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, train=["C2", "C3", "C4"], test="C5", max_time=50.0)
    args = parser.parse_args(argv)

    clock = start_clock()
    model, samples = train_thitogene(args)
    result = {
        "benchmark": "thitogene_layers",
        "provenance": provenance(clock),
        "settings": vars(args),
        "steps": int(sum(h["steps"] for h in model.history)),
        "val_pcc_per_epoch": [h.get("val_pcc") for h in model.history],
        **layer_spreads(model, {args.test: samples[args.test]}),
    }
    print(json.dumps(jsonable(result), indent=2))
    return result


if __name__ == "__main__":
    main()
