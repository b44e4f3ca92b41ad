"""Linear probe of PixNet's encoders on her2st: frozen features at each spot, ridge regression, leave-one-section-out.

Measures what an encoder knows before any fine-tuning, in a minute instead of a PixNet training per fold: for each
spot, the patch of ``--patch-px`` pixels at ``--microns-per-pixel`` centered on it goes through the frozen encoder,
whose ``pooled`` representation is the features (a ResNet: the global averages of layer2, layer3 and layer4; a ViT:
class token and mean patch token), and scikit-learn's ``StandardScaler`` + ``RidgeCV`` (the alphas of the ridge
baseline) predicts the fold's top-250 genes (protocol ``pixnet_top250``, normalized as in ``benchmarks/her2st.py``).
Scored per test section with PCC@M/S/F.

Encoders ("arms"):
- ``random``: ``--encoder``'s architecture (any PixNet encoder: ``resnet18``, ``resnet50``, a timm ViT name, with
  ``--encoder-args``) at its random initialization under ``--seed`` (what PixNet starts from without weights);
- ``given``: ``--encoder`` with its weights: ``--encoder-weights FILE``, a local timm repository directory or an
  ``hf-hub:`` id (``python encoder_probe.py --arms given --encoder hf-hub:MahmoodLab/UNI`` where it is downloaded);
- ``train``: for each fold, the ResNet18 ``PRETRAIN_DIR/<training sections joined by '+'>.pt``, as
  ``benchmarks/her2st.py --pretrain train`` leaves them (pretrained on the fold's training slides only);
- ``all``: ``PRETRAIN_DIR/<all sections joined by '+'>.pt`` (transductive: it saw the test slide's image).

    python benchmarks/encoder_probe.py --arms random train all --pretrain-dir runs/her2st_pretraining_encoders
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import jsonable, provenance, start_clock
from her2st import load_sections

from histo2st.model._color_ridge import ALPHAS, resampled_rgb

#: Patches per forward pass.
BATCH = 64


def spot_patches(sdata, microns_per_pixel: float, patch_px: int) -> np.ndarray:
    """``(n_spots, 3, patch_px, patch_px)`` uint8 patches centered on the spots of the sample's table."""
    import histo2st as st
    from histo2st.train._tiling import read_tile

    rgb, factor = resampled_rgb(sdata, microns_per_pixel)
    xy = sdata.tables[st.io.get_scale(sdata).table_key].obsm["spatial"] * factor
    half = patch_px / 2
    return np.stack([read_tile(rgb, round(y - half), round(x - half), patch_px) for x, y in xy])


def encoder_features(encoder, stats, patches: np.ndarray) -> np.ndarray:
    """The encoder's ``pooled`` representation of each patch, normalized with ``stats`` (mean, std), float32."""
    import torch

    from histo2st.nn import normalize_images

    out = []
    with torch.no_grad():
        for start in range(0, len(patches), BATCH):
            images = normalize_images(torch.from_numpy(patches[start : start + BATCH]), mean=stats[0], std=stats[1])
            out.append(encoder.pooled(images).numpy())
    return np.concatenate(out)


def load_encoder(arm: str, train: list[str], sections: list[str], args: argparse.Namespace):
    """The frozen encoder of one arm and fold, in evaluation mode, its input statistics and where it came from."""
    import torch

    from histo2st.model import resolve_encoder
    from histo2st.nn import build_encoder, encoder_input_stats, load_encoder_weights

    torch.manual_seed(args.seed)
    if arm in ("random", "given"):
        source = resolve_encoder(args.encoder, args.encoder_weights if arm == "given" else None, args.encoder_args)
        if arm == "random" and (source.weights is not None):
            source = resolve_encoder(source.architecture, None, source.model_args)
        encoder = build_encoder(source.architecture, model_args=source.model_args)
        if source.weights is not None:
            load_encoder_weights(encoder, source.weights)
        default = encoder_input_stats(encoder)
        stats = (source.mean or default[0], source.std or default[1])
        return encoder.eval(), stats, {"architecture": source.architecture, **source.origin}
    if args.pretrain_dir is None:
        raise SystemExit(f"Arm '{arm}' needs --pretrain-dir.")
    path = args.pretrain_dir / f"{'+'.join(train if arm == 'train' else sections)}.pt"
    if not path.is_file():
        raise SystemExit(f"No encoder '{path}' for arm '{arm}'; pretrain it with benchmarks/her2st.py first.")
    encoder = build_encoder("resnet18")
    load_encoder_weights(encoder, path)
    return encoder.eval(), encoder_input_stats(encoder), {"architecture": "resnet18", "source": str(path)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="data root; default $HISTO2ST_DATA, ../shared/data")
    parser.add_argument("--sections", nargs="+", default=["C2", "C3", "C4", "C5"])
    parser.add_argument("--arms", nargs="+", default=["random"], choices=["random", "given", "train", "all"])
    parser.add_argument("--encoder", default="resnet18", help="architecture, timm repository directory or hf-hub: id")
    parser.add_argument("--encoder-weights", type=Path, default=None, help="weights file of --encoder (arm 'given')")
    parser.add_argument("--encoder-args", type=json.loads, default=None, help="timm ViT arguments, as JSON")
    parser.add_argument("--pretrain-dir", type=Path, default=None, help="encoders of benchmarks/her2st.py")
    parser.add_argument("--microns-per-pixel", type=float, default=4.0, help="resolution the encoders work at")
    parser.add_argument("--patch-px", type=int, default=64, help="patch edge around each spot, in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--synthetic", type=float, default=None, metavar="SIZE_UM", help="dry run on synthetic tissues of this size"
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    """Run the probe; print and return the results."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import histo2st as st
    from histo2st.metrics import pcc_per_gene, pcc_summary

    args = parse_args(argv)
    clock = start_clock()
    source = {"root": None if args.root is None else str(args.root), "synthetic_um": args.synthetic,
              "sections": args.sections}  # fmt: skip
    samples = load_sections(source, args.sections)
    st.pp.normalize(samples)
    protocol = st.tl.protocol("pixnet_top250", samples, test=None, root=args.root)
    patches = {name: spot_patches(s, args.microns_per_pixel, args.patch_px) for name, s in samples.items()}
    rows = []
    for arm in args.arms:
        for (train, test), genes in zip(protocol.folds, protocol.fold_genes, strict=True):
            encoder, stats, origin = load_encoder(arm, train, args.sections, args)
            features = {name: encoder_features(encoder, stats, patches[name]) for name in [*train, *test]}

            def targets(name, genes=genes):
                x = samples[name].tables[st.io.get_scale(samples[name]).table_key][:, genes].X
                return np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float64)

            probe = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS))
            probe.fit(np.concatenate([features[n] for n in train]), np.concatenate([targets(n) for n in train]))
            for name in test:
                pcc = pcc_per_gene(probe.predict(features[name]), targets(name))
                rows.append({"arm": arm, "test": name, "train": train, "encoder": origin,
                             "alpha": float(probe[-1].alpha_), **pcc_summary(pcc)})  # fmt: skip
    summary = {
        arm: {
            f"{metric}_{stat}": float(fn([r[metric] for r in rows if r["arm"] == arm]))
            for metric in ("PCC@M", "PCC@S", "PCC@F")
            for stat, fn in (("mean", np.mean), ("sd", np.std))
        }
        for arm in args.arms
    }
    result = jsonable({"benchmark": "encoder_probe", "provenance": provenance(clock), "settings": vars(args) | {
        "root": source["root"], "pretrain_dir": None if args.pretrain_dir is None else str(args.pretrain_dir),
        "encoder_weights": None if args.encoder_weights is None else str(args.encoder_weights)},
        "summary": summary, "rows": rows})  # fmt: skip
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
