"""her2st benchmark: PixNet, THItoGene and a color/texture ridge baseline, same split, genes and normalization.

One run trains every model on the training sections of each fold and scores it on the held-out section(s), under a
named protocol of ``st.tl.protocol``: ``pixnet_top250`` (the PixNet paper's 250 genes with the highest mean
log1p(count / total * 1e4) over the fold's training sections) or ``thitogene_785`` (THItoGene's fixed gene list).
Default split: train C2 C3 C4, test C5; ``--loso`` holds out each section in turn (leave-one-section-out).

Every section is normalized over all its genes (``st.pp.normalize``: log1p(count / total * 1e4)) before the genes
are selected, the same for every model. Each model and fold runs in its own 'spawn' child process, which loads the
sections, trains, predicts the test spots and evaluates them, so the peak memory reported (VmHWM of that process)
belongs to that model alone; ``rss_after_load_gb`` is the memory once the tables are read and normalized.

Reported per model, fold and test section: every metric of ``st.tl.evaluate`` (MSE, MAE, PCC@M/S/F, ARI of k-means
domains of predicted vs measured expression with ``--n-clusters``, the split-half noise ceiling ``PCC@M ceiling``: the
PCC@M that a prediction of the exact expression behind the test spots' counts would expect), the top genes by -log10 p
(``st.tl.gene_scores``), the prediction spread (mean over genes of the predictions' standard deviation across
spots / the same of the measurements: 1 is right, lower is too flat), training and prediction seconds, peak memory.
JSON on stdout; ``--out DIR`` also writes the protocol (``split.json``, genes, ``results.csv``) with
``Protocol.write``, ``results.json`` and ``results.md``.

    python benchmarks/her2st.py --out runs/her2st_c5                    # 3 models x 15 min
    python benchmarks/her2st.py --loso --out runs/her2st_loso           # 4 folds x 3 models
    python benchmarks/her2st.py --synthetic 500 --train S1 S2 --test S3 # dry run without data (numbers mean nothing)

``--preset cpu`` trains with ``st.tl.fit``'s CPU preset (what a user gets by default on a laptop). ``--tta 1 8``
scores each trained PixNet and THItoGene twice, plain and with 8-fold test-time augmentation (``MODEL+tta8``, same
training). ``--mix pixnet,thitogene`` also scores the mean of those models' spot predictions (``mean(...)``, a mixed
ensemble whose training seconds are the members' sum); ``--models pixnet+thitogene`` trains the mixed ensemble as the
product builds it (``st.tl.fit(model=["pixnet", "thitogene"])``, each member with the preset and ``--mixed-params``,
spot values from the members' mean map).

    python benchmarks/her2st.py --loso --preset cpu --models ridge pixnet thitogene --tta 1 8 \\
        --mix pixnet,thitogene pixnet+tta8,thitogene+tta8 --out runs/her2st_loso_tta_mix

Encoder pretraining study (issue: accuracy without downloaded weights): ``--pretrain none train all`` trains PixNet
from scratch, from an encoder pretrained with ``st.tl.pretrain_encoder`` on each fold's training slides only, and from
one pretrained on every slide of the study (marked ``transductive``: it saw the test slide's image, never its
expression); ``--stain on off`` crosses that with stain augmentation. Each encoder is pretrained once, in its own
child process (seconds and peak memory reported), and kept in ``--pretrain-dir`` (default ``<out>_encoders``) for
reuse by later runs.

    python benchmarks/her2st.py --loso --models pixnet --pretrain none train all --stain off on \\
        --microns-per-pixel 4 --max-time 150 --pretrain-max-time 180 --out runs/her2st_pretraining
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    MODELS,
    add_model_arguments,
    check_out_dir,
    fit_options,
    jsonable,
    markdown_table,
    peak_rss_gb,
    provenance,
    rss_gb,
    run_isolated,
    start_clock,
    write_results,
)

#: Spot columns of every results row, in order.
METRICS = ["MSE", "MAE", "PCC@M", "PCC@S", "PCC@F", "ARI"]
#: Domains for the ARI: her2st's pathologists annotated six tissue classes (invasive cancer, cancer in situ, immune
#: infiltrate, breast glands, connective and adipose tissue), the clusters THItoGene/Hist2ST compare k-means with.
N_CLUSTERS = 6
TOP_GENES = 10
PRED_KEY = "bench"
#: Genes of a synthetic section for ``--synthetic``: enough for the 250 of ``pixnet_top250``.
SYNTHETIC_GENES = 256


def load_sections(source: dict, names: list[str]) -> dict:
    """Sections by name: her2st from the data root, or synthetic tissues seeded by their position in ``source``."""
    import histo2st as st

    if source["synthetic_um"] is None:
        return {name: st.datasets.her2st(name, root=source["root"]) for name in names}
    return {
        name: st.datasets.synthetic_tissue(
            size_um=source["synthetic_um"],
            microns_per_pixel=2.0,
            n_genes=SYNTHETIC_GENES,
            seed=source["sections"].index(name),
            sample=name,
        )
        for name in names
    }


def run_model_fold(spec: dict) -> dict:
    """In a child process: load, normalize and select genes, train one model, predict the test spots, evaluate."""
    import histo2st as st

    train, test, genes = spec["train"], spec["test"], spec["genes"]
    samples = load_sections(spec["source"], [*train, *test])
    st.pp.normalize(samples)
    st.pp.select_genes(samples, method=genes)
    loaded_gb = rss_gb()
    training = {name: samples[name] for name in train}
    start = time.perf_counter()
    if spec["model"] == "ridge":
        diameter = float(np.median([st.io.get_scale(s).spot_diameter_um for s in training.values()]))
        model = st.model.ColorTextureRidge(genes, patch_um=diameter, microns_per_pixel=spec["ridge_microns_per_pixel"])
        model.fit(training)
        record = {"alpha": model.alpha, "patch_um": diameter, "microns_per_pixel": model.microns_per_pixel}
    else:
        model = st.tl.fit(training, fit_model_name(spec["model"]), genes=genes, **spec["fit"])
        # per member: a seed ensemble (`n_seeds` in --pixnet-params) has several
        members = model.members if isinstance(model, st.model.Ensemble) else [model]
        record = {
            "epochs": [len(m.history) for m in members],
            "seconds_per_epoch": float(np.mean([h["epoch_seconds"] for m in members for h in m.history])),
            "best_val_pcc": [m.card.get("validation_metrics", {}).get("val_pcc") for m in members],
            "val_pcc_per_epoch": [[h.get("val_pcc") for h in m.history] for m in members],
            "hyperparameters": model.init_params,
            "microns_per_pixel": model.microns_per_pixel,
        }
    train_seconds = time.perf_counter() - start

    tested = {name: samples[name] for name in test}
    variants = {}
    for tta in [1] if spec["model"] == "ridge" else spec["tta"]:
        start = time.perf_counter()
        for sdata in tested.values():
            if spec["model"] == "ridge":
                sdata.tables[f"{PRED_KEY}_spots"] = model.predict_spots(sdata)
            else:
                st.tl.predict(sdata, model, dense=False, tta=tta, key_added=PRED_KEY, overwrite=True)
        variants["" if tta == 1 else f"+tta{tta}"] = {
            **score(tested, genes, spec),
            "tta": tta,
            "predict_seconds": time.perf_counter() - start,
            "predictions": {name: spot_predictions(sdata, genes) for name, sdata in tested.items()},
        }
    return {
        "model": spec["model"],
        "variants": variants,
        "train_seconds": train_seconds,
        "rss_after_load_gb": loaded_gb,
        "peak_rss_gb": peak_rss_gb(),
        **record,
    }


def fit_model_name(name: str) -> str | list[str]:
    """What ``st.tl.fit`` takes for a model of this study: PixNet variants are PixNet, ``a+b`` a mixed ensemble."""
    if name in MODELS and "+" in name:
        return name.split("+")
    return "pixnet" if name.startswith("pixnet") else name


def score(tested: dict, genes: list[str], spec: dict) -> dict:
    """Every metric of ``st.tl.evaluate`` per section and pooled, the prediction spread and the top genes."""
    import histo2st as st

    pred_key = f"{PRED_KEY}_spots"
    summary = st.tl.evaluate(
        tested, pred_key=pred_key, genes=genes, n_clusters=spec["n_clusters"], seed=spec["seed"], ceiling=True
    )
    scores = st.tl.gene_scores(tested, pred_key=pred_key)
    top = {
        name: group.nlargest(TOP_GENES, "neg_log10_pvalue")[["gene", "pcc", "neg_log10_pvalue"]].to_dict("records")
        for name, group in scores.groupby("section", observed=True)
    }
    rows = summary.reset_index().to_dict("records")
    for row in rows:
        if row["scope"] == "section":
            row["spread"] = spread_ratio(tested[row["section"]], pred_key, genes)
    return {"rows": rows, "top_genes": top}


def spot_predictions(sdata, genes: list[str]) -> pd.DataFrame:
    """The predicted spot table as a spots x genes frame (what a mixed ensemble averages)."""
    table = sdata.tables[f"{PRED_KEY}_spots"][:, genes]
    x = table.X.toarray() if hasattr(table.X, "toarray") else np.asarray(table.X)
    return pd.DataFrame(np.asarray(x, dtype=np.float32), index=table.obs_names, columns=genes)


def evaluate_mix(spec: dict) -> dict:
    """In a child process: score the mean of several models' spot predictions (a mixed ensemble) like one model."""
    import anndata as ad

    import histo2st as st

    tested = load_sections(spec["source"], spec["test"])
    st.pp.normalize(tested)
    st.pp.select_genes(tested, method=spec["genes"])
    for name, sdata in tested.items():
        frames = [predictions[name] for predictions in spec["members"]]
        mean = sum(f.loc[frames[0].index] for f in frames) / len(frames)
        sdata.tables[f"{PRED_KEY}_spots"] = ad.AnnData(
            mean.to_numpy(np.float32), obs=pd.DataFrame(index=mean.index), var=pd.DataFrame(index=mean.columns)
        )
    return score(tested, spec["genes"], spec)


def pretrain_slides(spec: dict) -> dict:
    """In a child process: pretrain an encoder on ``spec["slides"]`` (images only) and write it to ``spec["path"]``."""
    import histo2st as st

    slides = load_sections(spec["source"], spec["slides"])
    start = time.perf_counter()
    st.tl.pretrain_encoder(slides, out=spec["path"], progress=False, **spec["options"])
    return {"seconds": time.perf_counter() - start, "peak_rss_gb": peak_rss_gb()}


def pretrained_encoder(slides: list[str], args, source: dict, cache: Path) -> dict:
    """An encoder pretrained on ``slides``: reused from ``cache`` when already there, else pretrained now.

    Returns the path, the slides, the pretraining seconds and peak memory (from the run that made the encoder).
    """
    import json

    path = cache / f"{'+'.join(slides)}.pt"
    record_path = path.with_suffix(".bench.json")
    options = {
        "microns_per_pixel": args.microns_per_pixel or 2.0,
        "epochs": args.pretrain_epochs,
        "max_time": args.pretrain_max_time,
        "tile_px": args.pretrain_tile_px,
        "batch_size": args.pretrain_batch_size,
        "seed": args.seed,
    }
    if args.pretrain_steps_per_epoch is not None:  # only when given: encoders made without the option stay reusable
        options["steps_per_epoch"] = args.pretrain_steps_per_epoch
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record["options"] == options:
            return record
        raise SystemExit(
            f"'{path}' was pretrained with other settings ({record['options']}); use another --pretrain-dir."
        )
    cost = run_isolated(pretrain_slides, {"slides": slides, "source": source, "path": str(path), "options": options})
    card = json.loads(path.with_suffix(".json").read_text())
    record = {"path": str(path), "slides": slides, "options": options, **cost, "epochs_run": card["epochs_run"],
              "final": card["history"][-1] if card["history"] else {}}  # fmt: skip
    record_path.write_text(json.dumps(jsonable(record), indent=2))
    return record


def variants(args) -> list[tuple[str, str, bool]]:
    """``(name, pretraining, stain augmentation)`` of each PixNet variant of the study, in the order given."""
    stains = args.stain or (["on"] if args.stain_augment else ["off"])
    out = []
    for stain in stains:
        for pretrain in args.pretrain:
            name = "pixnet" + ("" if pretrain == "none" else f"+ssl_{pretrain}") + ("+stain" if stain == "on" else "")
            out.append((name, pretrain, stain == "on"))
    return out


def write_partial(path: Path, folds: list[dict]) -> None:
    """The results so far, rewritten atomically after every model and fold (kept if the run is interrupted)."""
    import json

    tmp = path.with_name(f".{path.name}.tmp")
    kept = [{k: v for k, v in fold.items() if k != "predictions"} for fold in folds]  # frames, for --mix only
    tmp.write_text(json.dumps(jsonable(kept), indent=2))
    tmp.replace(path)


def spread_ratio(sdata, pred_key: str, genes: list[str]) -> float:
    """Mean over genes of the predictions' std across spots / the same of the measurements (1: right; < 1: flat)."""
    truth = sdata["table"]
    pred = sdata.tables[pred_key]
    names = truth.obs_names[truth.obs_names.isin(pred.obs_names)]
    values = []
    for table in (pred[names, genes], truth[names, genes]):
        x = table.X.toarray() if hasattr(table.X, "toarray") else np.asarray(table.X)
        values.append(np.asarray(x, dtype=np.float64).std(axis=0).mean())
    return float(values[0] / values[1])


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root", type=Path, default=None, help="data root; default $HISTO2ST_DATA, then ../shared/data (st.datasets)"
    )
    parser.add_argument("--train", nargs="+", default=["C2", "C3", "C4"])
    parser.add_argument("--test", nargs="+", default=["C5"])
    parser.add_argument("--loso", action="store_true", help="leave-one-section-out over the train and test sections")
    parser.add_argument("--protocol", default="pixnet_top250", choices=["pixnet_top250", "thitogene_785"])
    parser.add_argument("--n-clusters", type=int, default=N_CLUSTERS, help="k-means domains for the ARI")
    parser.add_argument("--out", type=Path, default=None, help="directory for the protocol and results")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.add_argument(
        "--synthetic",
        type=float,
        default=None,
        metavar="SIZE_UM",
        help="dry run: each section a synthetic tissue of this size instead of her2st (unrelated expression "
        "profiles, so the numbers mean nothing)",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--tta",
        nargs="+",
        type=int,
        default=[1],
        choices=[1, 2, 4, 8],
        help="test-time augmentation of PixNet and THItoGene (st.tl.predict's tta): each count is scored, from the "
        "same trained model, as MODEL+ttaN (1: plain MODEL)",
    )
    parser.add_argument(
        "--mix",
        nargs="+",
        default=[],
        metavar="A,B",
        help="mixed ensembles: the mean of the spot predictions of these models of the run (e.g. pixnet,thitogene "
        "or pixnet+tta8,thitogene+tta8), scored as 'mean(A,B)'; their training seconds add up",
    )
    study = parser.add_argument_group("encoder pretraining study (PixNet)")
    study.add_argument(
        "--pretrain",
        nargs="+",
        default=["none"],
        choices=["none", "train", "all"],
        help="encoder of PixNet: 'none' (random, or --encoder-weights), 'train' (pretrained on the fold's training "
        "slides), 'all' (pretrained on every slide of the study: transductive)",
    )
    study.add_argument(
        "--stain", nargs="+", choices=["off", "on"], default=None, help="stain augmentation of PixNet, one run each"
    )
    study.add_argument("--pretrain-dir", type=Path, default=None, help="encoders; default OUT_encoders or a temp dir")
    study.add_argument("--pretrain-max-time", type=float, default=180.0, help="pretraining seconds per encoder")
    study.add_argument("--pretrain-epochs", type=int, default=1000, help="most pretraining epochs")
    study.add_argument("--pretrain-tile-px", type=int, default=96, help="pretraining tile edge in model pixels")
    study.add_argument("--pretrain-batch-size", type=int, default=32, help="pretraining tiles per step")
    study.add_argument(
        "--pretrain-steps-per-epoch", type=int, default=None, help="pretraining steps per epoch (default: a pass, >=25)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Run the benchmark; print and return the results."""
    import json

    import histo2st as st

    args = parse_args(argv)
    check_out_dir(args.out, args.overwrite)
    clock = start_clock()
    sections = list(dict.fromkeys([*args.train, *args.test]))
    source = {"root": None if args.root is None else str(args.root), "synthetic_um": args.synthetic,
              "sections": sections}  # fmt: skip
    protocol = st.tl.protocol(
        args.protocol, load_sections(source, sections), test=None if args.loso else args.test, root=args.root
    )
    cache = args.pretrain_dir or (
        args.out.with_name(f"{args.out.name}_encoders") if args.out else Path(tempfile.mkdtemp(prefix="encoders-"))
    )
    cache.mkdir(parents=True, exist_ok=True)
    runs = [(v, p, s) for name in args.models for v, p, s in (variants(args) if name == "pixnet" else [(name, "", 0)])]
    folds = [{"train": train, "test": test, "n_genes": len(genes), "models": {}, "predictions": {}}
             for (train, test), genes in zip(protocol.folds, protocol.fold_genes, strict=True)]  # fmt: skip
    # model by model, so that an interrupted study has whole models (every fold) in its partial results
    for name, pretrain, stain in runs:
        base = name if name in MODELS else "pixnet"  # the other names are PixNet variants
        for fold, genes in zip(folds, protocol.fold_genes, strict=True):
            train, test = fold["train"], fold["test"]
            spec = {
                "model": name,
                "train": train,
                "test": test,
                "genes": genes,
                "source": source,
                "n_clusters": args.n_clusters,
                "seed": args.seed,
                "ridge_microns_per_pixel": args.ridge_microns_per_pixel,
                "fit": None if name == "ridge" else fit_options(args, base, test),
                "tta": args.tta,
            }
            encoder = None
            if pretrain in ("train", "all"):
                encoder = pretrained_encoder(train if pretrain == "train" else sections, args, source, cache)
                spec["fit"]["encoder_weights"] = encoder["path"]
            if base == "pixnet":
                spec["fit"]["stain_augment"] = bool(stain)
            result = run_isolated(run_model_fold, spec)
            if encoder is not None:
                result["pretraining"] = {**encoder, "transductive": any(t in encoder["slides"] for t in test)}
            for suffix, variant in result.pop("variants").items():
                fold["predictions"][name + suffix] = variant.pop("predictions")
                fold["models"][name + suffix] = {**result, **variant}
            if args.out is not None:
                write_partial(args.out.with_name(f"{args.out.name}.partial.json"), folds)
    for mix in args.mix:
        for fold, genes in zip(folds, protocol.fold_genes, strict=True):
            fold["models"][f"mean({mix})"] = mixed(fold, mix.split(","), genes, source, args)
    for fold in folds:
        del fold["predictions"]  # kept for the mixes only, not part of the results
    names = list(folds[0]["models"]) if folds else []

    result = jsonable(
        {
            "benchmark": "her2st",
            "protocol": protocol.name,
            "protocol_params": protocol.params,
            "provenance": provenance(clock),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "summary": summarize(folds, names),
            "folds": folds,
        }
    )
    print(json.dumps(result, indent=2))
    if args.out is not None:
        protocol.write(args.out, results=results_frame(folds), overwrite=args.overwrite)
        write_results(args.out, result, markdown(result))
    return result


def mixed(fold: dict, members: list[str], genes: list[str], source: dict, args) -> dict:
    """A mixed ensemble of ``members`` (models run in this fold): its scores, training cost summed, peak the max."""
    missing = [m for m in members if m not in fold["predictions"]]
    if missing:
        raise SystemExit(f"--mix names {missing}, which this run did not train; it ran {list(fold['predictions'])}.")
    spec = {"test": fold["test"], "genes": genes, "source": source, "n_clusters": args.n_clusters, "seed": args.seed,
            "members": [fold["predictions"][m] for m in members]}  # fmt: skip
    runs = [fold["models"][m] for m in members]
    return {
        **run_isolated(evaluate_mix, spec),
        "members": members,
        "train_seconds": sum(r["train_seconds"] for r in runs),
        "predict_seconds": sum(r["predict_seconds"] for r in runs),
        "peak_rss_gb": max(r["peak_rss_gb"] for r in runs),
    }


def results_frame(folds: list[dict]) -> pd.DataFrame:
    """One row per fold, model and scope (test section or pooled): the table written as ``results.csv``."""
    rows = []
    for i, fold in enumerate(folds):
        for name, res in fold["models"].items():
            for row in res["rows"]:
                rows.append(
                    {
                        "fold": i,
                        "model": name,
                        "train": "+".join(fold["train"]),
                        **row,
                        "train_seconds": res["train_seconds"],
                        "peak_rss_gb": res["peak_rss_gb"],
                    }
                )
    return pd.DataFrame(rows).set_index(["fold", "model", "section"])


def summarize(folds: list[dict], models: list[str]) -> dict:
    """Per model: mean and sd over the test sections of every fold (the PixNet paper's per-section averaging)."""
    out = {}
    for name in models:
        rows = [r for fold in folds for r in fold["models"][name]["rows"] if r["scope"] == "section"]
        runs = [fold["models"][name] for fold in folds]
        entry = {"n_test_sections": len(rows)}
        for metric in [*METRICS, "spread"]:
            values = np.array([r[metric] for r in rows], dtype=np.float64)
            entry[f"{metric}_mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else None
            entry[f"{metric}_sd"] = float(np.nanstd(values)) if np.isfinite(values).any() else None
        entry["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in runs]))
        entry["predict_seconds_mean"] = float(np.mean([r["predict_seconds"] for r in runs]))
        pretraining = [r["pretraining"] for r in runs if "pretraining" in r]
        if pretraining:
            # one encoder serves several folds in the transductive arm: count each once
            unique = {p["path"]: p for p in pretraining}.values()
            entry["pretrain_seconds_mean"] = float(np.mean([p["seconds"] for p in unique]))
            entry["pretrain_peak_rss_gb_max"] = float(np.max([p["peak_rss_gb"] for p in unique]))
            entry["transductive"] = any(p["transductive"] for p in pretraining)
        entry["peak_rss_gb_max"] = float(np.max([r["peak_rss_gb"] for r in runs]))
        out[name] = entry
    return out


def markdown(result: dict) -> str:
    """The results as markdown tables: a summary per model, every fold, and the top genes."""
    prov = result["provenance"]
    head = (
        f"# her2st benchmark, protocol `{result['protocol']}`\n\n"
        f"Commit `{prov['commit']}`{' (with uncommitted changes)' if prov['uncommitted_changes'] else ''}, "
        f"{prov['started']}, {prov['cpu']} ({prov['cores']} cores, {prov['torch_threads']} torch threads), "
        f"load average {prov['load_average_start'][0]:.1f} at the start.\n\n`{prov['command']}`\n\n"
    )
    summary_rows = []
    for name, s in result["summary"].items():
        row = {"model": name, "test sections": s["n_test_sections"]}
        for metric in [*METRICS, "spread"]:
            mean, sd = s[f"{metric}_mean"], s[f"{metric}_sd"]
            row[metric] = "" if mean is None else f"{mean:.3f} ± {sd:.3f}"
        row["train s"] = round(s["train_seconds_mean"])
        row["predict s"] = round(s["predict_seconds_mean"])
        row["peak GB"] = round(s["peak_rss_gb_max"], 2)
        if "pretrain_seconds_mean" in s:
            row["pretrain s"] = round(s["pretrain_seconds_mean"])
            row["pretrain peak GB"] = round(s["pretrain_peak_rss_gb_max"], 2)
            row["transductive"] = "yes" if s["transductive"] else "no"
        summary_rows.append(row)
    columns = ["model", "test sections", *METRICS, "spread", "train s", "predict s", "peak GB"]
    if any("pretrain s" in row for row in summary_rows):
        columns += ["pretrain s", "pretrain peak GB", "transductive"]
    fold_rows, gene_rows = [], []
    for fold in result["folds"]:
        for name, res in fold["models"].items():
            cost = {"train s": round(res["train_seconds"]), "peak GB": round(res["peak_rss_gb"], 2)}
            for row in res["rows"]:
                fold_rows.append({"model": name, "train": "+".join(fold["train"]), **row, **cost})
            for section, genes in res["top_genes"].items():
                named = ", ".join(f"{g['gene']} ({g['pcc']:.2f})" for g in genes)
                gene_rows.append({"model": name, "test": section, "genes (PCC)": named})
    fold_columns = [
        "model",
        "train",
        "section",
        "scope",
        "n_spots",
        "n_genes",
        *METRICS,
        "spread",
        "PCC@M ceiling",
        "train s",
        "peak GB",
    ]
    return (
        head
        + "## Mean ± sd over test sections\n\n"
        + markdown_table(summary_rows, columns)
        + "\n## Every fold (pooled: all test spots of the fold together)\n\n"
        + markdown_table(fold_rows, fold_columns)
        + f"\n## Top {TOP_GENES} genes by -log10 p\n\n"
        + markdown_table(gene_rows, ["model", "test", "genes (PCC)"])
    )


if __name__ == "__main__":
    main()
