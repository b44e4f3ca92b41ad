"""``histo2st info``: what a zarr store or a model directory holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .config import UsageError

HELP = "Describe a zarr store (elements, genes, scale) or a model directory (its model card)."
DESCRIPTION = (
    "For a zarr store: its images and labels (shapes, dtypes, chunks), shapes, points and tables (n_obs x n_vars), "
    "the genes of its spot table and its scale (µm per pixel). For a model directory: its model card (card.json) and "
    "whether its weights still match the sha256 the card records (a damaged model exits with status 1)."
)
DEFAULTS = {"path": None, "json": False}
POSITIONAL = "path"
#: Genes listed in the text output; --json lists all.
SHOW_GENES = 30
#: Card entries not printed as "key: value" lines (genes are listed apart, the history is summarized).
CARD_APART = ("genes", "history", "init_params")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``info``."""
    # no `type`: argparse would convert its SUPPRESS marker when the path is left out
    parser.add_argument("path", nargs="?", help="zarr store or model directory")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(opts: argparse.Namespace) -> None:
    """Describe ``opts.path`` as text or JSON; a damaged model is described, then its error raised."""
    from ..model import CARD_FILE
    from .common import is_zarr_store

    if opts.path is None:
        raise UsageError("give a zarr store or a model directory.")
    path = Path(opts.path)
    damage = None
    if (path / CARD_FILE).is_file():
        info, damage = describe_model(path)
        text = _model_text
    elif is_zarr_store(path):
        info = {"kind": "store", "path": str(path), **describe_store(path)}
        text = _store_text
    elif not path.exists():
        raise FileNotFoundError(f"'{path}' not found.")
    else:
        raise ValueError(f"'{path}' is neither a zarr store nor a model directory (no {CARD_FILE}).")
    print(json.dumps(info, indent=2, default=str) if opts.json else text(info))
    if damage is not None:
        raise damage


def describe_model(path: Path) -> tuple[dict, Exception | None]:
    """The model card at ``path`` with ``"integrity"``, and the error of a damaged weights file (else ``None``).

    A card that cannot be read raises at once: nothing is left to describe.
    """
    from ..model import ModelFileError, check_model_dir, read_card

    card = read_card(path)
    try:
        _, checked = check_model_dir(path)
    except (ModelFileError, FileNotFoundError) as err:
        return {"kind": "model", "path": str(path), "integrity": f"damaged: {err}", **card}, err
    integrity = "weights match their sha256 in the card" if checked else "unchecked (saved without a sha256)"
    return {"kind": "model", "path": str(path), "integrity": integrity, **card}, None


def describe_store(path: Path) -> dict:
    """Elements, genes and scale of the SpatialData at ``path``, as plain JSON-able values."""
    import spatialdata as sd

    from .._constants import ATTRS_KEY, TABLE_KEY
    from .._core import get_scale

    sdata = sd.read_zarr(path)
    try:
        scale = get_scale(sdata)
    except ValueError:
        scale = None
    table_key = scale.table_key if scale is not None else TABLE_KEY
    genes = sdata.tables[table_key].var_names.tolist() if table_key in sdata.tables else None
    return {
        "scale": None if scale is None else scale.to_dict(),
        "coordinate_systems": list(sdata.coordinate_systems),
        "images": {name: _raster(el) for name, el in sdata.images.items()},
        "labels": {name: _raster(el) for name, el in sdata.labels.items()},
        "shapes": {name: _shapes(gdf) for name, gdf in sdata.shapes.items()},
        "points": {name: {"columns": list(ddf.columns)} for name, ddf in sdata.points.items()},
        "tables": {
            name: {
                "n_obs": int(t.n_obs),
                "n_vars": int(t.n_vars),
                "region": _region(t),
                "normalized": "normalize" in t.uns.get(ATTRS_KEY, {}),
            }
            for name, t in sdata.tables.items()
        },
        "genes_table": table_key if genes is not None else None,
        "genes": genes,
    }


def _raster(element) -> dict:
    """Dims, shape, dtype and chunks of an image or labels element; every level of a multiscale one."""
    if hasattr(element, "children"):  # multiscale: a DataTree of scale0, scale1, ...
        levels = [next(iter(element[name].ds.data_vars.values())) for name in element.children]
    else:
        levels = [element]
    first = levels[0]
    info = {
        "dims": list(first.dims),
        "shape": list(first.shape),
        "dtype": str(first.dtype),
        "chunks": list(first.data.chunksize),
        "levels": [list(level.shape) for level in levels],
    }
    if "c" in first.coords:
        info["channels"] = [str(c) for c in first.coords["c"].values]
    return info


def _shapes(gdf) -> dict:
    kind = "circles" if "radius" in gdf.columns else ", ".join(sorted(gdf.geometry.geom_type.unique()))
    return {"n": len(gdf), "geometry": kind}


def _region(table) -> list[str] | None:
    region = table.uns.get("spatialdata_attrs", {}).get("region")
    if region is None:
        return None
    return [region] if isinstance(region, str) else [str(r) for r in region]


def _store_text(info: dict) -> str:
    lines = [f"store: {info['path']}"]
    scale = info["scale"]
    if scale is None:
        lines.append("scale: unknown (no histo2st metadata; see `st.io.set_scale`)")
    else:
        pitch = f", pitch {scale['spot_pitch_um']:g} µm" if scale.get("spot_pitch_um") else ""
        # a whole-slide image read without spots (st.io.read_wsi) has no spot diameter
        spots = f"spots {scale['spot_diameter_um']:g} µm{pitch}" if scale.get("spot_diameter_um") else "no spots"
        lines += [
            f"sample: {scale['sample']}",
            f"scale: {scale['microns_per_pixel']:g} µm per pixel ({scale['mpp_source']}); {spots}",
        ]
    lines.append(f"coordinate systems: {', '.join(info['coordinate_systems'])}")
    for kind in ("images", "labels"):
        for name, el in info[kind].items():
            levels = f", {len(el['levels'])} levels" if len(el["levels"]) > 1 else ""
            channels = el.get("channels")
            shown = f"; channels: {_listing(channels, 8)}" if channels and el["dtype"] != "uint8" else ""
            lines.append(
                f"{kind[:-1]} {name}: ({', '.join(el['dims'])}) {' × '.join(map(str, el['shape']))} {el['dtype']}, "
                f"chunks {' × '.join(map(str, el['chunks']))}{levels}{shown}"
            )
    lines += [f"shapes {name}: {s['n']} {s['geometry']}" for name, s in info["shapes"].items()]
    lines += [f"points {name}: columns {', '.join(p['columns'])}" for name, p in info["points"].items()]
    for name, t in info["tables"].items():
        region = f", annotates {', '.join(t['region'])}" if t["region"] else ""
        norm = ", normalized" if t["normalized"] else ""
        lines.append(f"table {name}: {t['n_obs']} × {t['n_vars']}{region}{norm}")
    if info["genes"] is not None:
        genes = info["genes"]
        lines.append(f"genes ({len(genes)}, table {info['genes_table']}): {_listing(genes, SHOW_GENES)}")
    return "\n".join(lines)


def _model_text(info: dict) -> str:
    lines = [f"model directory: {info['path']}"]
    for key, value in info.items():
        if key in ("kind", "path", *CARD_APART):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={_short(v)}" for k, v in value.items()) or "-"
        lines.append(f"{key}: {_short(value)}")
    history = info.get("history", [])
    if history:
        last = ", ".join(f"{k}={_short(v)}" for k, v in history[-1].items())
        lines.append(f"history: {len(history)} epochs; last: {last}")
    genes = info.get("genes", [])
    lines.append(f"genes ({len(genes)}): {_listing(genes, SHOW_GENES)}")
    return "\n".join(lines)


def _listing(items: list, limit: int) -> str:
    more = f" … (+{len(items) - limit} more; --json lists all)" if len(items) > limit else ""
    return ", ".join(map(str, items[:limit])) + more


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
