"""her2st benchmark: train on some sections, test on a held-out section; prints JSON.

Protocol (PixNet paper): top 250 genes by mean over the training sections of log1p(count / total * 1e4), or the
785-gene THItoGene list (--genes thitogene785). Default split: train C2 C3 C4, test C5; --loso runs leave-one-section-
out over all given sections. Metrics over the test section's spots: per-gene Pearson correlation across spots, then
PCC@M (mean over genes), PCC@S (median), PCC@F (first quartile); MSE and MAE over spots x genes.

    python benchmarks/her2st.py --model pixnet --max-time 900
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np

import histo2st as st
from histo2st.train._metrics import per_gene_pcc

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"
THITOGENE_GENES = "thitogene/her_hvg_cut_1000.npy"


def peak_rss_gb() -> float:
    """Peak resident memory of this process (VmHWM), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def load(root: Path, sections: list[str]) -> dict:
    samples = {s: st.io.read_her2st(root / "her2st", s) for s in sections}
    st.pp.normalize(samples)
    return samples


def select(samples: dict, train: list[str], genes: str, root: Path) -> list[str]:
    if genes == "thitogene785":
        selection = st.pp.select_genes(samples, method=root / THITOGENE_GENES)
    else:
        # genes are ranked on the training sections only, then kept in every section
        ranked = st.pp.select_genes({k: samples[k] for k in train}, n_top=250, method="mean", copy=True)
        chosen = list(next(iter(ranked.values()))["table"].var_names)
        selection = st.pp.select_genes(samples, method=chosen)
    return list(selection.genes)


def run_fold(samples: dict, train: list[str], test: str, args) -> dict:
    hyper = {"hidden_dim": args.hidden_dim, "crop_px": args.crop_px} if args.model == "pixnet" else {}
    if args.microns_per_pixel is not None:
        hyper["microns_per_pixel"] = args.microns_per_pixel
    if args.lr is not None:
        hyper["lr"] = args.lr
    start = time.perf_counter()
    model = st.tl.fit(
        {k: samples[k] for k in train},
        args.model,
        epochs=args.epochs,
        max_time=args.max_time,
        validation=0.15,
        seed=args.seed,
        progress=False,
        **hyper,
    )
    train_s = time.perf_counter() - start
    sdata = samples[test]
    st.tl.predict(sdata, model, dense=False, overwrite=True, key_added="bench")
    pred = np.asarray(sdata.tables["bench_spots"][sdata["table"].obs_names, model.genes].X, dtype=np.float64)
    truth = sdata["table"][:, model.genes].X
    truth = np.asarray(truth.toarray() if hasattr(truth, "toarray") else truth, dtype=np.float64)
    pcc = per_gene_pcc(pred, truth)
    return {
        "train": train,
        "test": test,
        "PCC@M": float(np.nanmean(pcc)),
        "PCC@S": float(np.nanmedian(pcc)),
        "PCC@F": float(np.nanquantile(pcc, 0.25)),
        "MSE": float(np.mean((pred - truth) ** 2)),
        "MAE": float(np.mean(np.abs(pred - truth))),
        "pred_spread_ratio": float(np.mean(pred.std(0)) / np.mean(truth.std(0))),
        "train_seconds": round(train_s, 1),
        "epochs": len(model.history),
        "seconds_per_epoch": round(float(np.mean([h["epoch_seconds"] for h in model.history])), 1),
        "best_val_pcc": model.card.get("validation_metrics", {}).get("val_pcc"),
        "top_genes": [model.genes[i] for i in np.argsort(-np.nan_to_num(pcc, nan=-1))[:5]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pixnet", choices=["pixnet", "thitogene"])
    parser.add_argument("--root", type=Path, default=Path(os.environ.get("HISTO2ST_DATA", ROOT)))
    parser.add_argument("--train", nargs="+", default=["C2", "C3", "C4"])
    parser.add_argument("--test", default="C5")
    parser.add_argument("--loso", action="store_true", help="leave-one-section-out over train + test sections")
    parser.add_argument("--genes", default="top250", choices=["top250", "thitogene785"])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--max-time", type=float, default=900.0, help="training seconds per fold")
    parser.add_argument("--hidden-dim", type=int, default=128, help="PixNet decoder width (paper: 512)")
    parser.add_argument("--crop-px", type=int, default=128, help="PixNet training crop edge in model pixels")
    parser.add_argument("--microns-per-pixel", type=float, default=None, help="model resolution; default the model's")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate; default the model's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sections = [*args.train, args.test]
    folds = [([s for s in sections if s != t], t) for t in sections] if args.loso else [(args.train, args.test)]
    results = []
    for train, test in folds:
        samples = load(args.root, sections)
        genes = select(samples, train, args.genes, args.root)
        results.append({**run_fold(samples, train, test, args), "n_genes": len(genes)})
    summary = {
        "benchmark": "her2st",
        "model": args.model,
        "lr": args.lr,
        "microns_per_pixel": args.microns_per_pixel,
        "hidden_dim": args.hidden_dim if args.model == "pixnet" else None,
        "crop_px": args.crop_px if args.model == "pixnet" else None,
        "genes": args.genes,
        "folds": results,
        "PCC@M_mean": float(np.mean([r["PCC@M"] for r in results])),
        "PCC@M_sd": float(np.std([r["PCC@M"] for r in results])),
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "torch_threads": __import__("torch").get_num_threads(),
        "histo2st_version": st.__version__,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
