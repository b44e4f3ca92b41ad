"""Cross-resolution check: a PixNet trained on her2st (0.69 µm/px H&E) predicts the mouse olfactory bulb (4.4 µm/px).

Expression does not transfer across species (and the bulb's genes are Ensembl IDs, her2st's gene symbols), so this
measures geometry, not accuracy. Per bulb section: the µm per pixel of the slide and of the model, the warnings
``st.tl.predict`` logged (the slide is upsampled to the model's resolution; no model gene is measured there), the
extent of the dense map against the H&E's, both in µm (they must agree to one model pixel), the mean difference
between a spot's predicted value and the map's mean over that spot's circle recomputed in µm (0 when spots and map
align; also with the circle moved by a spot diameter, for scale), the share of spots with a prediction, what
``st.tl.evaluate`` says, and seconds. JSON on stdout.

    python benchmarks/cross_resolution.py                       # her2st C2-C5, PixNet at 2 µm/px, 1 epoch
    python benchmarks/cross_resolution.py --sections C2 --pixnet-params '{"hidden_dim": 8}'  # quick
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import numpy as np
from _common import jsonable, peak_rss_gb, provenance, start_clock


def spot_alignment(sdata, key: str, map_um: float, shift_um: float = 0.0) -> float:
    """Mean |spot value - map mean over the spot's circle in µm, moved right by ``shift_um``| over spots and genes.

    0 without a shift when spots and map align; the same with a shift of a spot diameter says how much a misaligned
    map would differ.
    """
    import histo2st as st

    scale = st.io.get_scale(sdata)
    dense = sdata.images[key].data  # lazy: only the window around each spot is read, in float64
    pred = sdata.tables[f"{key}_spots"]
    centers = pred.obsm["spatial"] * scale.microns_per_pixel + [shift_um, 0]
    radius = scale.spot_diameter_um / 2
    y_um, x_um = ((np.arange(n) + 0.5) * map_um for n in dense.shape[1:])
    differences = []
    for k, (cx, cy) in enumerate(centers):
        rows, cols = np.flatnonzero(np.abs(y_um - cy) <= radius), np.flatnonzero(np.abs(x_um - cx) <= radius)
        if not (rows.size and cols.size):
            continue
        window = np.asarray(dense[:, rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], dtype=np.float64)
        disk = (y_um[rows, None] - cy) ** 2 + (x_um[None, cols] - cx) ** 2 <= radius**2
        values = window[:, disk]
        if np.isfinite(values).any(axis=1).all():
            differences.append(np.abs(np.nanmean(values, axis=1) - pred.X[k]))
    return float(np.mean(differences))


def main(argv=None) -> dict:
    import histo2st as st

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=["C2", "C3", "C4", "C5"], help="her2st training sections")
    parser.add_argument("--microns-per-pixel", type=float, default=2.0, help="PixNet's resolution")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--n-top", type=int, default=50, help="genes")
    parser.add_argument("--pixnet-params", type=json.loads, default={}, help="more hyperparameters, a JSON object")
    args = parser.parse_args(argv)
    clock = start_clock()

    her2st = {name: st.datasets.her2st(name) for name in args.sections}
    st.pp.normalize(her2st)
    st.pp.select_genes(her2st, n_top=args.n_top)
    start = time.perf_counter()
    model = st.tl.fit(her2st, "pixnet", epochs=args.epochs, microns_per_pixel=args.microns_per_pixel,
                      validation=None, progress=False, **args.pixnet_params)  # fmt: skip
    train_seconds = time.perf_counter() - start

    sections = {}
    for section in (1, 2):
        mob = st.datasets.mouse_olfactory_bulb(section)
        records = []
        handler = logging.Handler(logging.WARNING)
        handler.emit = records.append
        logging.getLogger("histo2st").addHandler(handler)
        start = time.perf_counter()
        try:
            st.tl.predict(mob, model)
        finally:
            logging.getLogger("histo2st").removeHandler(handler)
        scale = st.io.get_scale(mob)
        dense = mob.images["pred"]
        pred = mob.tables["pred_spots"]
        sections[f"MOB{section}"] = {
            "slide_microns_per_pixel": scale.microns_per_pixel,
            "model_microns_per_pixel": model.microns_per_pixel,
            "predict_seconds": time.perf_counter() - start,
            "warnings": [r.getMessage() for r in records],
            "he_extent_um": (np.array(mob.images["he"].shape[1:]) * scale.microns_per_pixel).tolist(),
            "map_extent_um": (np.array(dense.shape[1:]) * model.microns_per_pixel).tolist(),
            "n_spots": int(mob["table"].n_obs),
            "spots_predicted": float(np.isfinite(pred.X).all(axis=1).mean()),
            "spot_vs_map_difference": spot_alignment(mob, "pred", model.microns_per_pixel),
            "spot_vs_shifted_map_difference": spot_alignment(
                mob, "pred", model.microns_per_pixel, shift_um=scale.spot_diameter_um
            ),
            "evaluate_error": _evaluate_error(mob),
            "shared_genes": len(set(model.genes) & set(mob["table"].var_names)),
        }
    result = jsonable({
        "benchmark": "cross_resolution",
        "provenance": provenance(clock),
        "training": {"sections": args.sections, "seconds": train_seconds, "genes": model.n_genes},
        "sections": sections,
        "peak_rss_gb": peak_rss_gb(),
    })  # fmt: skip
    print(json.dumps(result, indent=2))
    return result


def _evaluate_error(sdata) -> str | None:
    """What ``st.tl.evaluate`` says when the predicted genes are not measured in the sample (``None``: no error)."""
    import histo2st as st

    try:
        st.tl.evaluate(sdata, pred_key="pred_spots")
    except (KeyError, ValueError) as err:
        return str(err)
    return None


if __name__ == "__main__":
    main()
