"""How much THItoGene's predictions on a held-out section rest on the spots' grid positions.

Trains THItoGene with ``st.tl.fit(preset="cpu")`` (plus ``--params``, e.g. ``'{"augment_positions": true}'``) on
``--train`` (her2st, top 250 genes by mean of the training sections), then predicts every spot of ``--test`` as one
window, in evaluation mode, with its grid positions as they are and moved: shifted by 5 steps, mirrored in x,
transposed, all at 0, and randomly permuted among the spots (patches and graph unchanged). Reports PCC@M of each
against the measured expression. Serial sections of one tumour share a layout, so a model can score by where a spot
sits in the section; a model that scores as well with permuted positions predicts from the tissue alone.

    python benchmarks/thitogene_positions.py --train C3 C4 C5 --test C2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import jsonable, provenance, start_clock
from thitogene_layers import add_options, one_window, train_thitogene


def moved_grids(grid: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The test window's grid ``(n, 2)`` as it is and moved five ways (see the module docstring)."""
    return {
        "as_is": grid,
        "shifted_5": grid + 5,
        "mirrored_x": np.stack([grid[:, 0].max() - grid[:, 0], grid[:, 1]], axis=1),
        "transposed": np.ascontiguousarray(grid[:, ::-1]),
        "zeros": np.zeros_like(grid),
        "permuted": grid[np.random.default_rng(seed).permutation(len(grid))],
    }


def position_scores(model, sdata, seed: int) -> dict[str, float]:
    """PCC@M on the one section of ``sdata`` with each of :func:`moved_grids`."""
    import torch

    import histo2st as st

    module = model.module.eval()
    window = one_window(model, sdata)
    scores = {}
    for name, grid in moved_grids(window["grid"], seed).items():
        with torch.no_grad():
            pred = module(window["patches"], torch.from_numpy(grid), window["adjacency"]).numpy()
        scores[name] = float(np.nanmean(st.metrics.pcc_per_gene(pred, window["section"].targets)))
    return scores


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(parser, train=["C3", "C4", "C5"], test="C2", max_time=None)
    args = parser.parse_args(argv)

    clock = start_clock()
    model, samples = train_thitogene(args)
    result = {
        "benchmark": "thitogene_positions",
        "provenance": provenance(clock),
        "settings": vars(args),
        "epochs": len(model.history),
        "train_seconds": float(sum(h["epoch_seconds"] for h in model.history)),
        "best_val_pcc": model.card.get("validation_metrics", {}).get("val_pcc"),
        "test_pcc_m": position_scores(model, {args.test: samples[args.test]}, args.seed),
    }
    print(json.dumps(jsonable(result), indent=2))
    return result


if __name__ == "__main__":
    main()
