"""``st.tl.predict_cohort``: many slides in, one store per slide and one cohort table out, resumable."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._constants import ATTRS_KEY, PRED_KEY
from .._logging import logger

#: The cohort's record of every slide (status, error, seconds), rewritten atomically after each slide.
MANIFEST = "cohort.json"
#: The slides x genes table of per-slide summaries.
COHORT_TABLE = "cohort.h5ad"
ZARR_SUFFIXES = (".zarr",)


def predict_cohort(
    slides: Sequence[str | Path] | Mapping[str, str | Path],
    model,
    out_dir: str | Path,
    *,
    spot_um: float | Sequence[float] | None = None,
    microns_per_pixel: float | None = None,
    key_added: str = PRED_KEY,
    client=None,
    progress: bool = True,
    **predict_options,
):
    """Predict every slide of a cohort into its own store, then summarize the cohort in one AnnData.

    Each slide (a whole-slide image file that :func:`histo2st.io.read_wsi` reads, or a zarr store of a sample)
    becomes ``out_dir/<name>.zarr``, written once, into which :func:`histo2st.tl.predict` streams the dense map and
    writes its tables, block by block on the active dask scheduler (``client``: a ``dask.distributed.Client``, made
    current for the run; a cluster's address is all a user needs). The run is resumable at two levels: a slide marked
    done in ``out_dir/cohort.json`` is not touched again, and an unfinished slide's prediction resumes its blocks. A
    slide that fails (an unreadable file, ...) is recorded with its error and skipped; the others finish.

    Parameters
    ----------
    slides
        Paths of slide files or zarr stores, named by their file names without suffixes, or a dict ``{name: path}``.
    model
        A trained model, or a model directory (:func:`histo2st.tl.load_model`).
    out_dir
        Directory of the stores, ``cohort.json`` and ``cohort.h5ad``; created if needed.
    spot_um
        Bin sizes of the tables, as for :func:`histo2st.tl.predict`.
    microns_per_pixel
        µm per pixel of slide files whose metadata has none (JPEG, PNG, plain TIFF).
    key_added
        Prefix of the prediction elements in every store.
    client
        A ``dask.distributed.Client`` to run the blocks on; default the active scheduler (threads).
    progress
        Show a progress bar over the slides.
    **predict_options
        Passed to :func:`histo2st.tl.predict` (``tta``, ``batch_size``, ``device``, ``dtype``, ...).

    Returns
    -------
    anndata.AnnData
        Slides x genes: ``X`` the mean predicted expression over each slide's predicted tissue pixels; ``obs`` the
        slide's path, µm per pixel, H&E size in pixels, tissue pixels and seconds; ``uns["histo2st"]["predict_cohort"]``
        the options, the model card summary and the failed slides with their errors. Also written:
    ``out_dir/<name>.zarr``
        One SpatialData store per slide, with ``images[key_added]``, ``labels[f"{key_added}_tissue"]`` and the tables.
    ``out_dir/cohort.json``
        Every slide's status (``"done"`` or ``"failed"``), error and seconds.
    ``out_dir/cohort.h5ad``
        The returned table (written atomically).
    """
    from tqdm.auto import tqdm

    from ..model import Predictor
    from ._registry import load_model

    named = _named(slides)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not isinstance(model, str | Path | Predictor):
        raise TypeError(f"`model` must be a trained model or a model directory, got {type(model).__name__}.")
    model = load_model(model) if isinstance(model, str | Path) else model
    manifest = _read_manifest(out_dir)
    options = {"spot_um": spot_um, "key_added": key_added, **predict_options}
    scheduler = client.as_current() if client is not None else contextlib.nullcontext()
    with scheduler:
        for name, path in tqdm(named.items(), desc="slides", unit="slide", disable=not progress):
            if manifest.get(name, {}).get("status") == "done" and (out_dir / f"{name}.zarr").exists():
                continue
            manifest[name] = _predict_slide(name, path, model, out_dir, microns_per_pixel, options)
            _write_json(out_dir / MANIFEST, manifest)
    failed = {n: r["error"] for n, r in manifest.items() if n in named and r["status"] == "failed"}
    if failed:
        listed = "; ".join(f"{n}: {e}" for n, e in failed.items())
        logger.warning(f"{len(failed)} of {len(named)} slides failed: {listed}")
    cohort = _cohort_table(named, manifest, out_dir, key_added, model, options, failed)
    _write_table(cohort, out_dir / COHORT_TABLE)
    return cohort


def _named(slides) -> dict[str, Path]:
    if isinstance(slides, Mapping):
        named = {str(k): Path(v) for k, v in slides.items()}
    else:
        named = {}
        for path in map(Path, slides):
            name = path.name.split(".")[0]
            if name in named:
                raise ValueError(f"Two slides are named '{name}' ({named[name]} and {path}); pass a dict of names.")
            named[name] = path
    if not named:
        raise ValueError("No slides given.")
    return named


def _predict_slide(name: str, path: Path, model, out_dir: Path, mpp, options: dict) -> dict:
    """Write the slide's store once, stream the prediction into it; the slide's record (status, error, seconds)."""
    import spatialdata as sd

    from ..io import write_zarr
    from ._predict import predict

    start = time.perf_counter()
    store = out_dir / f"{name}.zarr"
    record = {"path": str(path), "store": str(store)}
    try:
        if not store.exists():
            write_zarr(_open_slide(path, name, model, mpp), store)
        sdata = sd.read_zarr(store)
        # the map appears only once complete: present, so only the tables were missing (an interruption after it)
        predict(sdata, model, overwrite=options["key_added"] in sdata.images, **options)
    except Exception as err:  # one slide's failure must not stop the cohort: it is recorded and reported
        logger.warning(f"Slide '{name}' ({path}) failed: {type(err).__name__}: {err}")
        return {**record, "status": "failed", "error": f"{type(err).__name__}: {err}",
                "seconds": time.perf_counter() - start}  # fmt: skip
    return {**record, "status": "done", "error": None, "seconds": time.perf_counter() - start}


def _open_slide(path: Path, name: str, model, mpp):
    import spatialdata as sd

    from ..io import read_wsi

    if path.suffix.lower() in ZARR_SUFFIXES or (path / "zarr.json").exists() or (path / ".zgroup").exists():
        return sd.read_zarr(path)
    return read_wsi(path, microns_per_pixel=mpp, target_microns_per_pixel=model.microns_per_pixel, sample=name)


def _cohort_table(named: dict, manifest: dict, out_dir: Path, key: str, model, options: dict, failed: dict):
    import anndata as ad
    import spatialdata as sd

    from .._core import get_scale
    from .._core._maps import full_resolution, valued_image

    done = [n for n in named if manifest.get(n, {}).get("status") == "done"]
    rows, means = [], []
    for name in done:
        sdata = sd.read_zarr(out_dir / f"{name}.zarr")
        values = valued_image(sdata, key)
        n_pixels = int(np.isfinite(values[0].data).sum().compute())
        mean = np.asarray(values.mean(dim=("y", "x"), skipna=True).values, dtype=np.float32)
        means.append(pd.Series(mean, index=values.coords["c"].values.astype(str)))
        he = full_resolution(sdata.images[get_scale(sdata).image_key])
        rows.append({"path": manifest[name]["path"], "microns_per_pixel": get_scale(sdata).microns_per_pixel,
                     "height_px": int(he.shape[1]), "width_px": int(he.shape[2]), "tissue_pixels": n_pixels,
                     "seconds": manifest[name]["seconds"]})  # fmt: skip
    x = pd.DataFrame(means, index=done, columns=means[0].index if means else model.genes, dtype=np.float32)
    table = ad.AnnData(x.to_numpy(), obs=pd.DataFrame(rows, index=pd.Index(done, name="slide")),
                       var=pd.DataFrame(index=[str(g) for g in x.columns]))  # fmt: skip
    params = {k: v for k, v in options.items() if isinstance(v, str | int | float | bool | list | type(None))}
    table.uns[ATTRS_KEY] = {"predict_cohort": {"params": params, "model": model.card.get("model"),
                                               "failed": failed, "n_slides": len(named)}}  # fmt: skip
    return table


def _read_manifest(out_dir: Path) -> dict:
    path = out_dir / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2))
    tmp.replace(path)


def _write_table(table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.h5ad")
    table.write_h5ad(tmp)
    tmp.replace(path)
