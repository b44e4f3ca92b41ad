"""What bounds accuracy on her2st: the noise ceiling, spatial smoothness, and how the ridge grows with training data.

For each leave-one-section-out fold of ``benchmarks/her2st.py`` (protocol ``pixnet_top250``: the fold's top 250
genes by mean over its training sections, every section normalized over all genes), on the held-out section's spots:

- ``ceiling``: the split-half noise ceiling of its counts (``st.metrics.noise_ceiling``, 8 splits), the PCC@M that a
  prediction of the exact expression behind the counts would expect;
- ``neighbours``: each spot predicted by the mean *measured* expression of the other spots within ``--radius-um``
  (300 µm: the 4-8 nearest on her2st's 200 µm grid), i.e. how much a spot's expression follows its surroundings;
- ``ridge, k sections``: the color/texture ridge of ``benchmarks/her2st.py`` (patch statistics at 2 µm/px over the
  spot diameter, scikit-learn ``StandardScaler`` + ``RidgeCV``) trained on every set of k of the fold's training
  sections, k = 1, 2, 3, scored on the held-out section; the mean over the sets. How accuracy grows with training
  spots says whether a model here is limited by data.

No model is trained beyond the ridge: 24 s on 2 cores. JSON on stdout, ``--out FILE`` writes it too.

    python benchmarks/her2st_limits.py --root ../shared/data --out runs/her2st_limits.json
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from _common import jsonable, provenance, start_clock

SECTIONS = ["C2", "C3", "C4", "C5"]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="her2st data root (default: histo2st's)")
    parser.add_argument("--sections", nargs="+", default=SECTIONS, help="sections, each held out in turn")
    parser.add_argument("--radius-um", type=float, default=300.0, help="neighbourhood of the spatial reference")
    parser.add_argument("--seed", type=int, default=0, help="seed of the count splits")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    return parser.parse_args(argv)


def spot_arrays(sdata, ridge) -> dict:
    """A section's spot positions in µm, its ridge features and its spot table (normalized, raw counts kept)."""
    import histo2st as st

    scale = st.io.get_scale(sdata)
    table = sdata.tables[scale.table_key]
    xy = np.asarray(table.obsm["spatial"], dtype=np.float64)
    return {"xy_um": xy * scale.microns_per_pixel, "features": ridge.features(sdata, xy), "table": table}


def values(table, genes: list[str], layer: str | None = None) -> np.ndarray:
    x = table[:, genes].X if layer is None else table[:, genes].layers[layer]
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)


def neighbour_mean(xy_um: np.ndarray, y: np.ndarray, radius_um: float) -> np.ndarray:
    """Each spot's mean measured expression over the other spots within ``radius_um`` (its own if it has none)."""
    from scipy.spatial import cKDTree

    out = y.copy()
    for i, ids in enumerate(cKDTree(xy_um).query_ball_point(xy_um, radius_um)):
        others = [j for j in ids if j != i]
        if others:
            out[i] = y[others].mean(axis=0)
    return out


def ridge_pcc(train: list[dict], test: dict, genes: list[str]) -> float:
    """PCC@M on ``test`` of the color/texture ridge trained on ``train`` (the baseline's scaler, alphas and model)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import histo2st as st
    from histo2st.model._color_ridge import ALPHAS

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
    targets = np.concatenate([values(s["table"], genes) for s in train])
    model.fit(np.concatenate([s["features"] for s in train]), targets)
    truth = values(test["table"], genes)
    return st.metrics.pcc_summary(st.metrics.pcc_per_gene(model.predict(test["features"]), truth))["PCC@M"]


def fold_limits(train: list[str], test: str, genes: list[str], arrays: dict, args) -> dict:
    import histo2st as st

    held = arrays[test]
    table = held["table"]
    truth = values(table, genes)
    ceiling = st.metrics.noise_ceiling(
        values(table, genes, layer="counts"), table.obs["total_counts"].to_numpy(), target_sum=1e4, seed=args.seed
    )
    neighbours = neighbour_mean(held["xy_um"], truth, args.radius_um)
    row = {
        "test": test,
        "n_spots": int(table.n_obs),
        "ceiling": float(np.nanmean(ceiling)),
        "neighbours": st.metrics.pcc_summary(st.metrics.pcc_per_gene(neighbours, truth))["PCC@M"],
    }
    for k in range(1, len(train) + 1):
        subsets = [[arrays[n] for n in names] for names in itertools.combinations(train, k)]
        scores = [ridge_pcc(subset, held, genes) for subset in subsets]
        row[f"ridge, {k} sections"] = float(np.mean(scores))
        row[f"ridge, {k} sections, each set"] = scores
        row[f"training spots, {k} sections"] = float(np.mean([sum(s["table"].n_obs for s in sub) for sub in subsets]))
    return row


def main(argv=None) -> dict:
    import histo2st as st

    args = parse_args(argv)
    clock = start_clock()
    samples = {name: st.datasets.her2st(name, root=args.root) for name in args.sections}
    st.pp.normalize(samples, target_sum=1e4)
    protocol = st.tl.protocol("pixnet_top250", samples, test=None, root=args.root)
    diameter = float(np.median([st.io.get_scale(s).spot_diameter_um for s in samples.values()]))
    ridge = st.model.ColorTextureRidge(["unused"], patch_um=diameter)  # only its features
    arrays = {name: spot_arrays(sdata, ridge) for name, sdata in samples.items()}
    folds = [
        fold_limits(train, test, genes, arrays, args)
        for (train, (test,)), genes in zip(protocol.folds, protocol.fold_genes, strict=True)
    ]
    result = jsonable({"benchmark": "her2st_limits", "provenance": provenance(clock), "radius_um": args.radius_um,
                       "folds": folds})  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    return result


if __name__ == "__main__":
    main()
