"""``st.tl.predict``: a dense predicted gene image and spot-level tables at any scale."""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
import pandas as pd

from .._constants import ATTRS_KEY, INSTANCE_KEY, MICRONS_CS, PIXEL_CS, PRED_KEY, SPATIAL_KEY, TRAINING_MEAN
from .._core import quiet_zarr
from .._core._maps import tissue_key, tissue_pixels, tissue_pixels_block
from .._core._tissue import regions_on_tissue, sample_tissue_mask
from .._core._zarr import write_to_store
from .._logging import log_added, logger
from ..train import MAX_HALO_PX
from ._mixed import has_point_and_map_members, mixed_at_centers, share_aggregates
from ._stream import CHANNEL_CHUNK, stream_map

if TYPE_CHECKING:
    from spatialdata import SpatialData

#: A slide coarser than the model's µm per pixel by more than this factor gets a warning (it is upsampled).
UPSAMPLE_WARN = 1.25
#: Dense maps up to this many bytes are kept in memory between aggregations of a sample that is not zarr-backed.
PERSIST_BYTES = 2 * 2**30
#: Spatial chunk of a map kept in memory.
MEMORY_CHUNK = 1024


def predict(
    sdata: SpatialData,
    model=None,
    *,
    model_key: str | None = None,
    spot_um: float | Sequence[float] | None = None,
    shape: str = "square",
    shapes_key: str | None = None,
    genes=None,
    dense: bool = True,
    dtype: str = "float32",
    tissue_mask: np.ndarray | bool | None = None,
    batch_size: int | None = None,
    tta: int = 1,
    key_added: str = PRED_KEY,
    overwrite: bool = False,
    device: str | None = None,
    spill_dir: str | Path | None = None,
) -> None:
    """Predict gene expression from the H&E of a sample, as a dense image and as spot tables.

    On a zarr-backed sample (``sdata.write(path)`` or :func:`histo2st.io.write_zarr` first) the dense map is streamed
    into the store block by block and never held in memory, so whole slides work on a laptop; the blocks run on the
    active dask scheduler, a ``dask.distributed`` client included. An interrupted run resumes: calling ``predict``
    again with the same model and settings computes only the blocks not yet written, and the store holds no
    ``images[key_added]`` until every block is written. See the "Whole slides" docs page.

    Parameters
    ----------
    sdata
        A histo2st sample, with or without measured spots (e.g. from :func:`histo2st.io.read_wsi`). The pyramid level
        of its H&E closest to the model's µm per pixel is read and resampled to it (a warning is logged when the
        slide is coarser than the model by more than 1.25x, and when none of the model's genes is in its table).
    model
        ``None`` (default): the model recorded on ``sdata`` by :func:`histo2st.tl.fit` (in memory, or saved in its
        zarr store). Or a trained model (e.g. from :func:`histo2st.tl.load_model`), another SpatialData (the model
        fit on it: ``st.tl.predict(sdata_b, model=sdata_a)``), the key of a model recorded on ``sdata``, a directory
        written by ``model.save``, or a zarr store with recorded models. A seed ensemble
        (:class:`histo2st.model.Ensemble`, from ``st.tl.fit(..., n_seeds=5)``) gives the members' mean, and their
        standard deviation is written beside it (see Returns). The sample needs no measured table.
    model_key
        Which recorded model, when ``sdata`` (or the SpatialData or store passed as ``model``) has several.
    spot_um
        Also aggregate the dense map over a grid of bins of this size in µm covering the tissue; several sizes (e.g.
        ``(2, 8, 16)``) give one table each.
    shape
        ``"square"`` bins (Visium HD style) or ``"circle"`` spots of diameter ``spot_um`` for the grid.
    shapes_key
        Also aggregate over these shapes of the sample (circles, e.g. your own spots).
    genes
        Predict only these genes (default all the model's); a gene the model does not predict raises a ``KeyError``.
    dense
        Keep the dense map (and an ensemble's standard deviation map) as image elements. With ``False`` the maps are
        only used to fill the tables.
    dtype
        Dtype of the stored dense map. ``"float16"`` halves its size, but spatialdata-plot (scipy's affine
        transform) and napari do not render float16 images.
    tissue_mask
        Where to predict: ``None`` finds the tissue on a low-resolution level of the H&E (Otsu on saturation) and
        adds every measured spot (a measured spot lies on tissue, however pale);
        ``False`` predicts everywhere; or a bool array over the H&E extent at any resolution. The map holds a
        prediction at every pixel that covers tissue of the mask, and the bin grids follow the same mask, so the
        image and the bin tables agree on where tissue is; tiles far from tissue are not computed (in a zarr
        store they take no disk space).
    batch_size
        Tiles per forward pass (models that tile, e.g. PixNet); default from the device (a GPU's free memory).
    tta
        Test-time augmentation: every input of the network (PixNet's tiles, THItoGene's patches) is predicted in 1,
        2 (with its mirror image), 4 (its quarter turns) or 8 (both) orientations and the predictions, turned back,
        averaged. Costs as many forward passes. Recorded in every table's ``uns["histo2st"]["tta"]``.
    key_added
        Prefix of every element written.
    overwrite
        Replace elements with the same names, and discard an unfinished prediction made with other settings.
    device
        Torch device; default :attr:`histo2st.settings.device`.
    spill_dir
        For a sample that is not zarr-backed: where a dense map too large for memory (over 2 GB) is written, as a
        zarr store that the image elements then read from, so the network runs once and every later plot or
        ``sdata.write`` reads the stored map. Default a new temporary directory, said in the log and removed when
        the Python process ends (write the sample to keep the map).

    Returns
    -------
    ``None``; adds to ``sdata``:

    ``sdata.images[key_added]``
        ``(genes, y, x)`` dense prediction at the model's map resolution (PixNet: its pixels; THItoGene: one patch
        every ``dense_um``), 0 off tissue, aligned to the H&E by a scale to ``"global"`` and to ``"microns"`` (only
        if ``dense``). It has no NaN, so spatialdata-plot and napari render it as it is. In a zarr-backed sample it
        is written to the store with chunks of 8 genes, as a multiscale image (``scale0`` the map, then halved levels
        for viewing); its zarr attributes record the model and the write under ``"histo2st"``. Otherwise it is
        kept in memory (up to 2 GB), or written the same way to a zarr store in ``spill_dir``.
    ``sdata.labels[f"{key_added}_tissue"]``
        ``(y, x)`` uint8 on the map's pixel grid: 1 where the map holds a prediction, 0 off tissue (only if ``dense``
        and with a tissue mask). histo2st's aggregation, evaluation and plots leave its 0 pixels out; in
        spatialdata-plot, ``render_labels`` draws it over the map.
    ``sdata.tables[f"{key_added}_spots"]``
        Mean predicted expression over each measured spot, annotating the measured spots' shapes; its rows carry the
        measured table's spot names (only when the sample has measured spots).
    ``sdata.tables[...]`` and ``sdata.shapes[...]`` named ``f"{key_added}_{shape}_{spot_um}um"``
        Bins of each ``spot_um`` (if given), see :func:`histo2st.tl.aggregate`.
    ``sdata.tables[f"{key_added}_{shapes_key}"]``
        Mean over ``shapes_key`` (if given).

    Each table has ``uns["histo2st"]["model"]`` with the model's card summary (and ``"model_key"``, the key it is
    recorded under on ``sdata``, when it is) and ``uns["histo2st"]["values"]``:
    ``"map aggregate"`` (the dense map averaged over the spot), ``"prediction at the centers"`` (models that predict
    from a patch at each spot or bin center, THItoGene, up to its ``max_direct_spots``) or, for an ensemble of both
    kinds (``model=["pixnet", "thitogene"]``), ``"mean of the members' own values"`` (each member's value as it
    would give it alone; see :class:`~histo2st.model.Ensemble`). Each table's ``var["training_mean"]`` is the gene's
    mean over the model's training spots (the trivial predictor :func:`histo2st.tl.evaluate` compares with; absent for
    models trained before it was recorded).

    With an :class:`~histo2st.model.Ensemble` the values above are the mean over its members, and also:

    ``sdata.images[f"{key_added}_std"]``
        ``(genes, y, x)`` standard deviation over the members (``ddof=0``) at each pixel: same shape, genes, dtype,
        transformations, storage and tissue labels as ``images[key_added]`` (only if ``dense``). Both maps come from
        one pass of each member over each block.
    ``layers["std"]`` of every table
        Per spot and gene: for ``"map aggregate"`` tables the mean of the per-pixel standard deviation over the spot,
        an upper bound of the standard deviation of the members' spot means (the spread of a mean is at most the mean
        of the spreads); for ``"prediction at the centers"`` the exact standard deviation of the members' predictions;
        for ``"mean of the members' own values"`` the standard deviation of those values (exact with one map member;
        several map members count at their mean).
    ``var["std"]`` of every table
        Per gene: the mean of ``layers["std"]`` over the table's spots (NaN spots skipped), a per-gene uncertainty.
    ``uns["histo2st"]["ensemble"]`` of every table
        ``{"n_members": ..., "seeds": [...]}``.
    ``var["std_scale"]`` and ``var["trust"]`` of every table, for a calibrated ensemble (:func:`histo2st.tl.calibrate`)
        The factor per gene already applied to every standard deviation above, and the gene's PCC on the held-out
        spots it was calibrated on (how far to believe the gene's map: near 0, not at all).
    """
    from .._core import as_gene_list, validate
    from ._registry import resolve_model

    start = time.perf_counter()
    _check_tta(tta)
    scale = validate(sdata, require_counts=False)
    model, recorded_key = resolve_model(sdata, model, model_key=model_key)
    gene_idx = model.check_genes(model.genes if genes is None else as_gene_list(genes))
    spread = model.n_maps > 1
    # an ensemble's map holds each gene's mean, then each gene's std: one channel run per image element
    maps = [key_added, f"{key_added}_std"] if spread else [key_added]
    spot_ums = [] if spot_um is None else list(np.atleast_1d(spot_um).astype(float))
    _check_free(sdata, key_added, overwrite)
    # replaced elements are dropped from memory first, so every element this call writes counts as new below
    # (their copies on disk are replaced one by one as the new ones are written)
    taken = _taken(sdata, key_added)
    for name in taken:
        del sdata[name]
    he_element = sdata.images[scale.image_key]
    he_full = he_element["scale0"].ds["image"] if hasattr(he_element, "children") else he_element
    he, he_mpp = _level_for(he_element, scale.microns_per_pixel, model.microns_per_pixel)
    _check_transfer(sdata, scale, model, he_mpp)
    mask = _mask(sdata, scale, he_full.shape, tissue_mask)
    # a model that predicts at points (THItoGene) fills its tables from a patch at each center: with dense=False its
    # map only gives the tables their rows, so a lazy placeholder of the right shape replaces the costly dense map
    placeholder = not dense and model.predicts_at_points
    dense_map, share = _dense_map(model, he, he_mpp, mask, scale.microns_per_pixel, gene_idx, len(maps), placeholder,
                                  batch_size=batch_size, tta=tta, device=device)  # fmt: skip
    channels = [model.genes[i] for i in gene_idx]
    card = _card_summary(model, recorded_key)
    _store_map(sdata, dict.fromkeys(maps, channels), dense_map, model, mask, scale.microns_per_pixel,
               source=(he.shape, he_mpp), dtype=dtype, card=card, overwrite=overwrite, placeholder=placeholder,
               dense=dense, spill_dir=spill_dir, tta=tta)  # fmt: skip
    written = [f"images['{name}']" for name in maps]

    before = _element_names(sdata)
    if not placeholder and mask is not None:
        _add_tissue_labels(sdata, key_added, dense_map, mask, model.map_microns_per_pixel, scale.microns_per_pixel)
    tables = _table_requests(sdata, scale, key_added, spot_ums, shape, shapes_key, tissue_mask, mask)
    _fill_tables(sdata, tables, key_added, spread)
    transformations = _map_transformations(model.map_microns_per_pixel, scale.microns_per_pixel)
    shares = {} if share is None else share_aggregates(sdata, share, tables, key_added, transformations)
    if scale.shapes_key in sdata.shapes:
        _name_like_measured(sdata.tables[f"{key_added}_spots"], sdata.tables[scale.table_key])
    new = sorted(_element_names(sdata) - before)
    for name in new:
        if name in sdata.tables:
            _describe_table(sdata.tables[name], name, model, card, he_full.data, scale.microns_per_pixel, device,
                            gene_idx, placeholder=placeholder, tta=tta, share=shares.get(name))  # fmt: skip
    written += [f"{_kind(sdata, n)}['{n}']" for n in new]
    if not dense:
        for name in maps:
            del sdata.images[name]
            written.remove(f"images['{name}']")
        if tissue_key(key_added) in sdata.labels:
            del sdata.labels[tissue_key(key_added)]
            new.remove(tissue_key(key_added))
    if sdata.is_backed():
        _write_new(sdata, new, maps, taken, key_added)
    log_added("sdata", written, start)


def _check_tta(tta) -> None:
    from ..nn import TTA_COUNTS

    if isinstance(tta, bool) or tta not in TTA_COUNTS:
        raise ValueError(f"`tta` is the number of orientations averaged, one of {list(TTA_COUNTS)}; got {tta!r}.")


def _dense_map(model, he, he_mpp: float, mask, slide_mpp: float, gene_idx: list[int], n_maps: int,
               placeholder: bool, *, batch_size, tta, device):  # fmt: skip
    """The lazy ``(n_maps * genes, y, x)`` map at the model's map resolution, 0 off the tissue mask, and a share.

    The share is the point members' ``(genes, y, x)`` part of the mean map for an ensemble of point and map members
    (see ``_mixed``), else ``None``. Models that tile (PixNet) run ``batch_size`` tiles a pass; every model may skip
    what lies away from the mask.
    """
    map_um = model.map_microns_per_pixel
    if placeholder:
        height, width = (math.ceil(n * he_mpp / map_um) for n in he.shape[1:])
        shape = (n_maps * len(gene_idx), height, width)
        return da.zeros(shape, dtype=np.float32, chunks=(CHANNEL_CHUNK, 2048, 2048)), None
    on_image = None if mask is None else (mask[0], mask[1] * slide_mpp / he_mpp)
    channel_idx = [k * model.n_genes + i for k in range(n_maps) for i in gene_idx]
    tiling = {"device": device, "tissue_mask": on_image, "batch_size": batch_size, "tta": tta}
    share = None
    if has_point_and_map_members(model):
        # one set of member maps for both, so a point member's coarse map is computed once
        member_maps = model.member_maps(he.data, he_mpp, **tiling)
        dense_map, share = model.combine_maps(member_maps), model.point_share(member_maps)[gene_idx]
    else:
        dense_map = model.predict_image(he.data, he_mpp, **tiling)
    dense_map = dense_map[channel_idx]
    if mask is None:
        return dense_map, share
    mask_px = mask[1] / (map_um / slide_mpp)
    if share is not None:
        share = off_tissue_zero(share, mask[0], mask_px)
    return off_tissue_zero(dense_map, mask[0], mask_px), share


def off_tissue_zero(dense_map: da.Array, mask: np.ndarray, mask_px: float) -> da.Array:
    """``dense_map`` ``(c, y, x)`` with 0 at the pixels :func:`tissue_pixels` leaves out.

    ``mask_px`` is the number of map pixels per mask pixel. One task per block of the map, so each block is predicted,
    masked and stored before the next is predicted (an interrupted streamed write keeps what it finished).
    """

    def block(values: np.ndarray, block_info=None) -> np.ndarray:
        (y0, y1), (x0, x1) = block_info[0]["array-location"][1:]
        on = tissue_pixels_block(mask, mask_px, (y0, y1), (x0, x1))
        return np.where(on[None], values, np.zeros((), dtype=values.dtype))

    return da.map_blocks(block, dense_map, dtype=dense_map.dtype, meta=np.empty((0, 0, 0), dtype=dense_map.dtype))


def _store_map(sdata, outputs: dict[str, list[str]], dense_map, model, mask, slide_mpp: float, *, source, dtype: str,
               card: dict, overwrite: bool, placeholder: bool, dense: bool, spill_dir, tta: int) -> None:  # fmt: skip
    """Add the map's image elements: streamed into the sample's store, kept in memory, or spilled to ``spill_dir``."""
    map_um = model.map_microns_per_pixel
    transformations = _map_transformations(map_um, slide_mpp)
    nbytes = int(np.prod(dense_map.shape)) * np.dtype(dtype).itemsize
    if placeholder or (not _streams(sdata) and nbytes <= PERSIST_BYTES):
        _keep_in_memory(sdata, outputs, dense_map.astype(dtype), transformations, persist=dense and not placeholder)
        return
    target = sdata if _streams(sdata) else _spill_store(sdata, spill_dir, nbytes)
    y_edges, x_edges = (np.concatenate([[0], np.cumsum(c)]) for c in dense_map.chunks[1:])
    blocks_on = np.ones((len(y_edges) - 1, len(x_edges) - 1), dtype=bool)
    if mask is not None:
        # as wide as the widest margin a model keeps around the tissue (PixNet: one tile halo)
        margin = math.ceil(MAX_HALO_PX * model.microns_per_pixel / map_um)
        blocks_on = regions_on_tissue(*mask, y_edges, x_edges, scale=map_um / slide_mpp, margin=margin)
    fingerprint = {
        "model": card,
        "init_params": model.init_params,
        "weights": _weights_digest(model),
        "genes": next(iter(outputs.values())),
        "dtype": dtype,
        "tta": tta,
        "shape": dense_map.shape,
        "chunks": [c[0] for c in dense_map.chunks[1:]],
        "image": source,
        "blocks_on": hashlib.sha256(np.packbits(blocks_on).tobytes()).hexdigest(),
    }
    with quiet_zarr():
        stats = stream_map(target, outputs, dense_map, transformations=transformations, blocks_on=blocks_on,
                           dtype=dtype, fingerprint=fingerprint, overwrite=overwrite,
                           attrs={"model": card})  # fmt: skip
    logger.info(
        f"Wrote {', '.join(map(repr, outputs))} to '{target.path}': {stats.blocks_computed} blocks computed, "
        f"{stats.blocks_resumed} resumed, {stats.blocks - stats.blocks_on_tissue} off tissue ({stats.seconds:.1f}s)."
    )
    if target is not sdata:
        for key in outputs:
            if key in sdata.images:
                del sdata.images[key]
            sdata.images[key] = target.images[key]


def _map_transformations(map_um: float, slide_mpp: float) -> dict:
    from spatialdata.transformations import Scale

    return {
        PIXEL_CS: Scale([map_um / slide_mpp] * 2, axes=("y", "x")),
        MICRONS_CS: Scale([map_um, map_um], axes=("y", "x")),
    }


def _add_tissue_labels(sdata, key_added: str, dense_map, mask, map_um: float, slide_mpp: float) -> None:
    """``labels[f"{key_added}_tissue"]``: 1 at the map's pixels that hold a prediction (see ``_core._maps``)."""
    from spatialdata.models import Labels2DModel

    chunks = da.core.normalize_chunks(MEMORY_CHUNK, dense_map.shape[1:])
    on = tissue_pixels(mask[0], mask[1] * slide_mpp / map_um, dense_map.shape[1:], chunks)
    labels = Labels2DModel.parse(on, dims=("y", "x"), transformations=_map_transformations(map_um, slide_mpp))
    sdata.labels[tissue_key(key_added)] = labels.persist()


def _spill_store(sdata, spill_dir, nbytes: int):
    """An empty SpatialData written to a zarr store in ``spill_dir`` (default a temporary one, removed at exit)."""
    import shutil
    import tempfile
    import uuid
    import weakref

    import spatialdata as sd

    if spill_dir is None:
        root = Path(tempfile.mkdtemp(prefix="histo2st-"))
        weakref.finalize(sdata, shutil.rmtree, root, ignore_errors=True)
    else:
        root = Path(spill_dir)
        root.mkdir(parents=True, exist_ok=True)
    path = root / f"prediction-{uuid.uuid4().hex[:8]}.zarr"
    logger.info(
        f"The dense map ({nbytes / 2**30:.1f} GB) is too large to keep in memory and the sample is not backed by a "
        f"zarr store: it is written once to '{path}' and read from there (pass `spill_dir=` to choose the place, or "
        "write the sample first with `sdata.write(path)` to stream it into the sample's own store)."
    )
    target = sd.SpatialData()
    with quiet_zarr():
        target.write(path)
    return target


def _table_requests(sdata, scale, key_added: str, spot_ums, shape: str, shapes_key, tissue_mask, mask) -> list:
    """``(table name, aggregate options)`` of every table ``predict`` writes."""
    tables = []
    if scale.shapes_key in sdata.shapes:
        tables.append((f"{key_added}_spots", {"shapes_key": scale.shapes_key}))
    agg_mask = False if tissue_mask is False else (tissue_mask if tissue_mask is not None else mask[0])
    tables += [(f"{key_added}_{shape}_{um:g}um", {"spot_um": um, "shape": shape, "tissue_mask": agg_mask})
               for um in spot_ums]  # fmt: skip
    if shapes_key is not None:
        tables.append((f"{key_added}_{shapes_key}", {"shapes_key": shapes_key}))
    return tables


def _fill_tables(sdata, tables: list, key_added: str, spread: bool) -> None:
    """Aggregate the map (and an ensemble's spread) over every requested table's shapes."""
    from ._aggregate import aggregate

    # not in place: a backed sample's store gets each table once, when predict has finished describing it
    for key, kwargs in tables:
        shapes, table = aggregate(sdata, key_added, key_added=key, inplace=False, **kwargs)
        if shapes is not None:
            sdata.shapes[f"{key}_shapes"] = shapes
        sdata.tables[key] = table
        if spread:
            _, spread_table = aggregate(sdata, f"{key_added}_std", key_added=key, inplace=False,
                                        tissue_labels=tissue_key(key_added), **kwargs)  # fmt: skip
            sdata.tables[key].layers["std"] = spread_table.X


def _describe_table(table, name: str, model, card: dict, he, slide_mpp: float, device, gene_idx: list[int], *,
                    placeholder: bool, tta: int, share: np.ndarray | None) -> None:  # fmt: skip
    """The model in the table's ``uns``; predictions at the centers for models that make them; the spread."""
    table.uns[ATTRS_KEY]["model"] = card
    table.uns[ATTRS_KEY]["tta"] = tta
    if "target_mean" in model.card:
        table.var[TRAINING_MEAN] = np.asarray(model.card["target_mean"], dtype=np.float32)[gene_idx]
    if share is not None:
        direct = mixed_at_centers(table, model, share, he, slide_mpp, device, gene_idx, tta)
    else:
        direct = _predict_at_centers(table, model, he, slide_mpp, device, gene_idx, tta)
    if placeholder and not direct:
        raise ValueError(
            f"Table '{name}' has too many spots to predict each from its own patch (the model's "
            "`max_direct_spots`), and with `dense=False` there is no dense map to aggregate instead; pass "
            "`dense=True`, or raise `max_direct_spots` (one patch per spot)."
        )
    if model.n_maps > 1:
        _describe_spread(table, model)


def _write_new(sdata, new: list[str], maps: list[str], taken: list[str], key_added: str) -> None:
    """Write this call's new elements to the sample's store, and drop maps it no longer keeps."""
    # a map this call does not keep must not stay on disk either, e.g. the std map of an ensemble's earlier
    # prediction under this key, now replaced by a single model's
    on_disk = _on_disk(sdata)
    for name in sorted({*maps, *taken} & {key_added, f"{key_added}_std"}):
        if name not in sdata.images and name in on_disk:
            sdata.delete_element_from_disk(name)
    write_to_store(sdata, new)


def _check_transfer(sdata, scale, model, he_mpp: float) -> None:
    """Say when a slide is coarser than the model's training resolution, and when its genes are not the model's."""
    if he_mpp > UPSAMPLE_WARN * model.microns_per_pixel:
        logger.warning(
            f"The slide has {he_mpp:.3g} µm/px and the model works at {model.microns_per_pixel:.3g} µm/px: the H&E is "
            "resampled (upsampled) to the model's resolution, so the model sees less detail than in training; expect "
            "lower accuracy, or train a model at this slide's resolution (`microns_per_pixel=`)."
        )
    elif he_mpp * UPSAMPLE_WARN < model.microns_per_pixel:
        logger.info(f"The H&E ({he_mpp:.3g} µm/px) is resampled to the model's {model.microns_per_pixel:.3g} µm/px.")
    if scale.table_key in sdata.tables and not set(model.genes) & set(sdata.tables[scale.table_key].var_names):
        logger.warning(
            f"None of the model's {model.n_genes} genes (e.g. {model.genes[:3]}) is measured in this sample's table "
            f"'{scale.table_key}' (e.g. {list(sdata.tables[scale.table_key].var_names[:3])}): another species or gene "
            "naming, so the predictions cannot be compared with its measurements."
        )


def _level_for(element, microns_per_pixel: float, target: float):
    """The level of a (multiscale) H&E closest to ``target`` µm/px (see ``_core._resample.closest_level``)."""
    from .._core._resample import closest_level

    if not hasattr(element, "children"):
        return element, microns_per_pixel
    levels = [element[f"scale{k}"].ds["image"] for k in range(len(element.children))]
    mpps = [microns_per_pixel * levels[0].shape[2] / level.shape[2] for level in levels]
    k = closest_level(mpps, target)
    return levels[k], mpps[k]


def _mask(sdata, scale, he_shape, tissue_mask) -> tuple[np.ndarray, float] | None:
    """``(mask, full-resolution H&E pixels per mask pixel)`` or ``None`` to predict everywhere."""
    if tissue_mask is False:
        return None
    if tissue_mask is None:
        return sample_tissue_mask(sdata, scale.image_key, scale.shapes_key)
    mask = np.asarray(tissue_mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"`tissue_mask` must be a 2-D bool array over the H&E, got shape {mask.shape}.")
    return mask, he_shape[1] / mask.shape[0]


def _streams(sdata) -> bool:
    """Whether the map can be streamed into the sample's store (a local zarr directory)."""
    return sdata.is_backed() and sdata.path is not None and Path(sdata.path).is_dir()


def _weights_digest(model) -> str:
    digest = hashlib.sha256()
    for member in model.members:
        for name, tensor in member.module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _predict_at_centers(table, model, he, microns_per_pixel: float, device, gene_idx: list[int], tta: int) -> bool:
    """Replace a table's map aggregates by the model's predictions at its centers, for models that predict at points.

    ``model.predict_points`` returns ``None`` when there are too many points; the aggregates then stay. An ensemble's
    predictions also replace ``layers["std"]`` by the exact spread of its members. Returns whether the values were
    replaced.
    """
    xy = table.obsm[SPATIAL_KEY]
    values = (
        model.predict_points(he, microns_per_pixel, xy, device=device, tta=tta) if model.predicts_at_points else None
    )
    table.uns[ATTRS_KEY]["values"] = "map aggregate" if values is None else "prediction at the centers"
    if values is None:
        return False
    if model.n_maps > 1:
        values, spread = values
        table.layers["std"] = np.asarray(spread, dtype=np.float32)[:, gene_idx]
    table.X = np.asarray(values, dtype=np.float32)[:, gene_idx]
    return True


def _describe_spread(table, model) -> None:
    """Per-gene ``var["std"]`` from ``layers["std"]``, the ensemble in ``uns``, its calibration in ``var``."""
    with warnings.catch_warnings():
        # spots that cover no predicted pixel are NaN; a gene with only such spots has no spread (NaN)
        warnings.simplefilter("ignore", RuntimeWarning)
        table.var["std"] = np.nanmean(np.asarray(table.layers["std"], dtype=np.float64), axis=0)
    table.uns[ATTRS_KEY]["ensemble"] = _members(model)
    if model.calibration is not None:
        for column, fitted in (("std_scale", model.calibration["std_scale"]), ("trust", model.calibration["pcc"])):
            table.var[column] = pd.Series(fitted, dtype=np.float64).reindex(table.var_names).to_numpy()


def _members(model) -> dict:
    seeds = [member.card.get("training", {}).get("seed") for member in model.members]
    return {"n_members": len(model.members), "seeds": seeds}


def _taken(sdata, key: str) -> list[str]:
    return sorted(name for name in _element_names(sdata) if name == key or name.startswith(f"{key}_"))


def _check_free(sdata, key: str, overwrite: bool) -> None:
    taken = _taken(sdata, key)
    if taken and not overwrite:
        raise ValueError(
            f"Elements {taken} already exist; pass `overwrite=True` to replace them or choose another `key_added`."
        )


def _keep_in_memory(sdata, outputs: dict[str, list[str]], dense_map, transformations, *, persist: bool) -> None:
    """Add the map's elements (a run of its channels each) to the sample, computed once (``persist``) or lazy."""
    from spatialdata.models import Image2DModel

    if persist:
        dense_map = dense_map.persist()
    first = 0
    for key, channels in outputs.items():
        part = dense_map[first : first + len(channels)]
        first += len(channels)
        # regular chunks: a model's blocks (PixNet: whole tiles' cores) are uneven, and ome-zarr rechunks those with
        # a warning when the sample is written
        regular = (CHANNEL_CHUNK, *(min(n, MEMORY_CHUNK) for n in part.shape[1:]))
        element = Image2DModel.parse(part.rechunk(regular), dims=("c", "y", "x"),
                                     c_coords=channels, transformations=transformations)  # fmt: skip
        if key in sdata.images:
            del sdata.images[key]
        sdata.images[key] = element.persist() if persist else element


def _name_like_measured(pred, measured) -> None:
    """Give the rows of the measured-spot predictions the measured table's spot names (matched by instance id)."""
    names = dict(zip(measured.obs[INSTANCE_KEY].to_numpy(), measured.obs_names, strict=True))
    pred.obs_names = [names.get(i, f"spot_id_{i}") for i in pred.obs[INSTANCE_KEY].to_numpy()]


def _kind(sdata, name: str) -> str:
    return next(kind for kind in ("tables", "shapes", "labels", "images") if name in getattr(sdata, kind))


def _element_names(sdata) -> set[str]:
    return set(sdata.images) | set(sdata.tables) | set(sdata.shapes) | set(sdata.labels) | set(sdata.points)


def _on_disk(sdata) -> set[str]:
    return {p.split("/")[-1] for p in sdata.elements_paths_on_disk()}


def _card_summary(model, key: str | None) -> dict:
    card = model.card
    keep = ("model", "microns_per_pixel", "encoder", "normalization", "training", "validation_metrics", "preset")
    summary = {k: card[k] for k in keep if k in card}
    if key is not None:
        summary["model_key"] = key
    if model.n_maps > 1:
        # not the members' metrics: a table's uns cannot store a list of dicts
        summary["ensemble"] = _members(model)
    return summary
