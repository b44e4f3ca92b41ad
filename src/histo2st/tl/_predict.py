"""``st.tl.predict``: a dense predicted gene image and spot-level tables at any scale."""

from __future__ import annotations

import time

import numpy as np

from .._constants import ATTRS_KEY, INSTANCE_KEY, MICRONS_CS, PIXEL_CS, PRED_KEY, SPATIAL_KEY
from .._logging import log_added, logger

#: Dense maps up to this many bytes are kept in memory between aggregations of a sample that is not zarr-backed.
PERSIST_BYTES = 2 * 2**30
#: Channel chunk of stored maps: reading one gene touches 8 channels, not all of them (scverse-facts.md).
CHANNEL_CHUNK = 8


def predict(
    sdata,
    model,
    *,
    spot_um: float | None = None,
    shape: str = "square",
    shapes_key: str | None = None,
    genes=None,
    dense: bool = True,
    dtype: str = "float16",
    key_added: str = PRED_KEY,
    overwrite: bool = False,
    device: str | None = None,
) -> None:
    """Predict gene expression from the H&E of a sample, as a dense image and as spot tables.

    Parameters
    ----------
    sdata
        A histo2st sample. Its H&E is resampled to the model's µm per pixel (a warning is logged when they differ).
    model
        A trained model (e.g. from :func:`histo2st.tl.fit` or :func:`histo2st.tl.load_model`).
    spot_um
        Also aggregate the dense map over a grid of bins of this size in µm covering the tissue.
    shape
        ``"square"`` bins (Visium HD style) or ``"circle"`` spots of diameter ``spot_um`` for the grid.
    shapes_key
        Also aggregate over these shapes of the sample (circles, e.g. your own spots).
    genes
        Predict only these genes (default all the model's); a gene the model does not predict raises a ``KeyError``.
    dense
        Keep the dense map as an image element. With ``False`` the map is only used to fill the tables.
    dtype
        Dtype of the stored dense map.
    key_added
        Prefix of every element written.
    overwrite
        Replace elements with the same names.
    device
        Torch device; default :attr:`histo2st.settings.device`.

    Returns
    -------
    ``None``; adds to ``sdata``:

    ``sdata.images[key_added]``
        ``(genes, y, x)`` dense prediction at the model's map resolution (PixNet: its pixels; THItoGene: one patch
        every ``dense_um``, NaN off tissue), aligned to the H&E by a scale to ``"global"``
        and to ``"microns"`` (only if ``dense``). When the sample is zarr-backed it is written to the store.
    ``sdata.tables[f"{key_added}_spots"]``
        Mean predicted expression over each measured spot, annotating the measured spots' shapes; its rows carry the
        measured table's spot names.
    ``sdata.tables[...]`` and ``sdata.shapes[...]`` named ``f"{key_added}_{shape}_{spot_um}um"``
        Bins of ``spot_um`` (if given), see :func:`histo2st.tl.aggregate`.
    ``sdata.tables[f"{key_added}_{shapes_key}"]``
        Mean over ``shapes_key`` (if given).

    Each table has ``uns["histo2st"]["model"]`` with the model's card summary and ``uns["histo2st"]["values"]``:
    ``"map aggregate"`` (the dense map averaged over the spot) or ``"prediction at the centres"`` (models that predict
    from a patch at each spot or bin centre, THItoGene, up to its ``max_direct_spots``).
    """
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Scale

    from .._core import validate
    from ._aggregate import aggregate

    start = time.perf_counter()
    scale = validate(sdata, require_counts=False)
    gene_idx = model.check_genes(model.genes if genes is None else list(genes))
    _check_free(sdata, key_added, overwrite)
    he = sdata.images[scale.image_key]
    he = he["scale0"].ds["image"] if hasattr(he, "children") else he
    ratio = model.microns_per_pixel / scale.microns_per_pixel
    if not 0.5 < ratio < 2:
        logger.warning(
            f"The slide has {scale.microns_per_pixel:.3g} µm/px and the model works at {model.microns_per_pixel:.3g} "
            "µm/px; the H&E is resampled to the model's resolution."
        )
    # a model's dense map may be coarser than the pixels it works at (THItoGene: one patch every `dense_um`)
    map_um = getattr(model, "map_microns_per_pixel", model.microns_per_pixel)
    map_scale = map_um / scale.microns_per_pixel
    dense_map = model.predict_image(he.data, scale.microns_per_pixel, device=device).astype(dtype)
    dense_map = dense_map[gene_idx].rechunk((CHANNEL_CHUNK, *dense_map.chunks[1:]))
    element = Image2DModel.parse(
        dense_map,
        dims=("c", "y", "x"),
        c_coords=[model.genes[i] for i in gene_idx],
        transformations={
            PIXEL_CS: Scale([map_scale, map_scale], axes=("y", "x")),
            MICRONS_CS: Scale([map_um, map_um], axes=("y", "x")),
        },
    )
    if key_added in sdata.images:
        del sdata.images[key_added]
    sdata.images[key_added] = element
    written = [f"images['{key_added}']"]
    _materialise(sdata, key_added, persist=dense)

    card = _card_summary(model)
    before = _element_names(sdata)
    tables = [(f"{key_added}_spots", {"shapes_key": scale.shapes_key})]
    if spot_um is not None:
        tables.append((None, {"spot_um": spot_um, "shape": shape}))
    if shapes_key is not None:
        tables.append((f"{key_added}_{shapes_key}", {"shapes_key": shapes_key}))
    for key, kwargs in tables:
        aggregate(sdata, key_added, key_added=key, overwrite=overwrite, **kwargs)
    _name_like_measured(sdata.tables[f"{key_added}_spots"], sdata.tables[scale.table_key])
    new = sorted(_element_names(sdata) - before)
    for name in new:
        if name in sdata.tables:
            sdata.tables[name].uns[ATTRS_KEY]["model"] = card
            _predict_at_centres(sdata.tables[name], model, he.data, scale.microns_per_pixel, device, gene_idx)
    written += [f"{'tables' if n in sdata.tables else 'shapes'}['{n}']" for n in new]
    if not dense:
        del sdata.images[key_added]
        if sdata.is_backed() and key_added in _on_disk(sdata):
            sdata.delete_element_from_disk(key_added)
        written.remove(f"images['{key_added}']")
    if sdata.is_backed():
        on_disk = _on_disk(sdata)
        for name in new:
            if name in on_disk:
                sdata.delete_element_from_disk(name)
            sdata.write_element(name)
    log_added("sdata", written, start)


def _predict_at_centres(table, model, he, microns_per_pixel: float, device, gene_idx: list[int]) -> None:
    """Replace a table's map aggregates by the model's predictions at its centres, for models that predict at points.

    ``model.predict_points`` returns ``None`` when there are too many points; the aggregates then stay.
    """
    predict_points = getattr(model, "predict_points", None)
    xy = table.obsm[SPATIAL_KEY]
    values = None if predict_points is None else predict_points(he, microns_per_pixel, xy, device=device)
    table.uns[ATTRS_KEY]["values"] = "map aggregate" if values is None else "prediction at the centres"
    if values is not None:
        table.X = np.asarray(values, dtype=np.float32)[:, gene_idx]


def _check_free(sdata, key: str, overwrite: bool) -> None:
    taken = sorted(name for name in _element_names(sdata) if name == key or name.startswith(f"{key}_"))
    if taken and not overwrite:
        raise ValueError(
            f"Elements {taken} already exist; pass `overwrite=True` to replace them or choose another `key_added`."
        )


def _materialise(sdata, key: str, *, persist: bool) -> None:
    """Compute the dense map once: into the zarr store of a backed sample, or in memory when small enough."""
    import spatialdata as sd

    element = sdata.images[key]
    if sdata.is_backed():
        if key in _on_disk(sdata):
            sdata.delete_element_from_disk(key)
        sdata.write_element(key)
        sdata.images[key] = sd.read_zarr(sdata.path, selection=("images",)).images[key]
        return
    nbytes = int(np.prod(element.shape)) * element.dtype.itemsize
    if nbytes <= PERSIST_BYTES:
        sdata.images[key] = element.persist()
    elif persist:
        logger.warning(
            f"The dense map ({nbytes / 2**30:.1f} GB) is too large to keep in memory and the sample is not backed by a "
            "zarr store, so it stays lazy and is recomputed when read. Write the sample first (`sdata.write(path)`) "
            "to stream the map to disk."
        )


def _name_like_measured(pred, measured) -> None:
    """Give the rows of the measured-spot predictions the measured table's spot names (matched by instance id)."""
    names = dict(zip(measured.obs[INSTANCE_KEY].to_numpy(), measured.obs_names, strict=True))
    pred.obs_names = [names.get(i, f"spot_id_{i}") for i in pred.obs[INSTANCE_KEY].to_numpy()]


def _element_names(sdata) -> set[str]:
    return set(sdata.images) | set(sdata.tables) | set(sdata.shapes) | set(sdata.labels) | set(sdata.points)


def _on_disk(sdata) -> set[str]:
    return {p.split("/")[-1] for p in sdata.elements_paths_on_disk()}


def _card_summary(model) -> dict:
    card = model.card
    keep = ("model", "microns_per_pixel", "encoder", "normalization", "training", "validation_metrics")
    return {k: card[k] for k in keep if k in card}
