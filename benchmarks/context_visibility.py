"""How much of the synthetic tissue's context a spot-sized color patch shows: the question of the context study.

``synthetic_tissue(context=...)`` moves each cell's expression by context features (see ``_synthetic_context``).
A model with a wide field of view should win where the features vary at a fixed cell type in ways that the color
and texture of the patch around the cell do not show. This script measures that directly, without training a
network: per context feature, among the cells of one type, a ridge regression from the color/texture statistics of
a square patch centered on each cell (the benchmarks' baseline, ``st.model.ColorTextureRidge``) is fitted on the
cells of the left part of the tissue and scored (R², pooled over cell types, weighted by their cells) on the right
part. Two patch sides: the Visium spot (55 µm, what the ridge baseline sees) and a wide field (default 275 µm, five
spots), which shows that the information is in the H&E, only farther away. JSON on stdout; ``--out FILE`` writes it.

    python benchmarks/context_visibility.py --tissue-seed 7
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import jsonable, provenance, start_clock

from histo2st.model._color_ridge import ALPHAS, channel_stack, patch_statistics

#: Cell types with fewer cells than this on either side are skipped (an R² of a handful of cells is noise).
MIN_CELLS = 50


def visibility(features: np.ndarray, context: np.ndarray, kind: np.ndarray, left: np.ndarray) -> np.ndarray:
    """Per context column, the R² on the right cells of per-type ridges fitted on the left cells, pooled over types."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    residual = np.zeros(context.shape[1])
    total = np.zeros(context.shape[1])
    for k in np.unique(kind):
        train, test = (kind == k) & left, (kind == k) & ~left
        if train.sum() < MIN_CELLS or test.sum() < MIN_CELLS:
            continue
        target = context[train]
        varies = target.std(axis=0) > 1e-6
        pred = np.tile(target.mean(axis=0), (int(test.sum()), 1))
        if varies.any():
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(features[train], target[:, varies])
            pred[:, varies] = model.predict(features[test])
        truth = context[test]
        residual += ((truth - pred) ** 2).sum(axis=0)
        total += ((truth - truth.mean(axis=0)) ** 2).sum(axis=0)
    return np.where(total > 0, 1 - residual / np.where(total > 0, total, 1), np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height-um", type=float, default=1600.0)
    parser.add_argument("--width-um", type=float, default=2400.0)
    parser.add_argument("--n-cell-types", type=int, default=5)
    parser.add_argument("--tissue-seed", type=int, default=7)
    parser.add_argument("--patch-um", type=float, nargs="+", default=[55.0, 275.0])
    parser.add_argument("--microns-per-pixel", type=float, default=2.0, help="resolution of the patch statistics")
    parser.add_argument("--train-fraction", type=float, default=0.6)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import histo2st as st

    clock = start_clock()
    tissue = st.datasets.synthetic_tissue(
        size_um=(args.height_um, args.width_um), n_cell_types=args.n_cell_types, context=1.0, seed=args.tissue_seed
    )
    cells = tissue.tables["table_cells"]
    context = cells.obsm["context"]
    names = [str(c) for c in context.columns]
    xy = np.asarray(cells.obsm["spatial"], dtype=np.float64)
    left = xy[:, 0] < args.train_fraction * args.width_um / st.io.get_scale(tissue).microns_per_pixel
    kind = cells.obs["cell_type"].to_numpy()
    stack, factor = channel_stack(tissue, args.microns_per_pixel)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result = {"settings": jsonable(settings), "features": names, "r2": {}}
    for patch_um in args.patch_um:
        size = max(3, round(patch_um / args.microns_per_pixel))
        r2 = visibility(patch_statistics(stack, xy * factor, size), context.to_numpy(), kind, left)
        result["r2"][f"{patch_um:g}um"] = dict(zip(names, np.round(r2, 3).tolist(), strict=True))
    result["provenance"] = provenance(clock)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
