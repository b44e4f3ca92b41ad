"""Reading legacy Spatial Transcriptomics (ST 1k / 2k arrays) count and spot tables."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._constants import IMAGE_KEY, LEGACY_ST_SPOT_UM, SHAPES_KEY, TABLE_KEY
from .._core import SpatialScale, build_sample, read_image
from .._logging import logger

#: Center-to-center distance of nearest spots on the 1k array: a square grid, 200 µm per array unit.
ST_1K_PITCH_UM = 200.0
#: The 2k array keeps the 1k frame and adds a second grid offset by half a step: spots sit where ``x + y`` is even,
#: 100 µm per array unit, so the nearest neighbors are the diagonal ones, 100 µm * sqrt(2) apart.
ST_2K_PITCH_UM = 100.0 * np.sqrt(2.0)

_SPOT_COLUMNS = ("x", "y", "new_x", "new_y", "pixel_x", "pixel_y", "selected")
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d+(\.\d+)?$")


def read_st(
    counts,
    spots,
    image,
    *,
    spot_diameter_um: float = LEGACY_ST_SPOT_UM,
    spot_pitch_um: float | None = None,
    microns_per_pixel: float | None = None,
    selected_only: bool = True,
    sample: str | None = None,
    scale_factors: Sequence[int] | None = None,
    image_key: str = IMAGE_KEY,
    shapes_key: str = SHAPES_KEY,
    table_key: str = TABLE_KEY,
):
    """Read a legacy Spatial Transcriptomics section (ST 1k or 2k array) into the histo2st conventions.

    The tables are those of the ST pipeline and ST spot detector, as used by the her2st repository and STUtility:
    a count matrix of spots x genes whose index is ``"{x}x{y}"`` (array coordinates), and a spot table with columns
    ``x y new_x new_y pixel_x pixel_y [selected]`` (headerless STUtility files are accepted). They are joined on
    ``"{x}x{y}"``; how many spots were dropped, and why, is logged.

    Parameters
    ----------
    counts
        Path to the count table (``.tsv`` or ``.tsv.gz``, spots x genes, first column the spot id) or a DataFrame.
    spots
        Path to the spot table (``.tsv``) or a DataFrame. ``pixel_x``/``pixel_y`` are spot centers in ``image``'s
        pixels.
    image
        Path to the H&E image (JPEG, PNG or TIFF; read lazily) or an array. Grayscale, RGBA and uint16 images are
        converted to RGB uint8 with a warning.
    spot_diameter_um
        Spot diameter in µm (100 on the 1k and 2k arrays).
    spot_pitch_um
        Center-to-center distance of nearest spots in µm. ``None`` picks it from the layout of the array
        coordinates: 200 on the square 1k array, 141.4 (100 * sqrt(2)) on the 2k array, whose spots sit where
        ``x + y`` is even.
    microns_per_pixel
        Size of an image pixel in µm. ``None`` derives it by fitting the pixel positions to the array coordinates
        (see :func:`fit_array_to_pixels`); pass a value to override.
    selected_only
        Keep only spots with ``selected == 1`` (under the tissue) when the spot table has that column.
    sample
        Sample name; default the counts file name without extension.
    scale_factors
        Downscale factors for a multiscale H&E, e.g. ``(2, 2, 2)``. Default single scale: a JPEG is decoded whole
        anyway, and building the pyramid costs more than it saves on images of this size.
    image_key, shapes_key, table_key
        Element names.

    Returns
    -------
    :class:`spatialdata.SpatialData` with image ``image_key``, circles ``shapes_key`` and table ``table_key``
    (``obs`` holds ``array_row`` = y and ``array_col`` = x; Ensembl gene ids stay the ``var_names`` and
    ``var["gene_ids"]`` holds them without version suffix). ``attrs["histo2st"]`` records the scale, ``platform``
    (``"st_1k"`` or ``"st_2k"``) and the array fit.
    """
    if sample is None:
        sample = _stem(counts) if isinstance(counts, str | Path) else "sample"
    table = read_count_table(counts) if isinstance(counts, str | Path) else _check_count_frame(counts)
    spot_table = read_spot_table(spots) if isinstance(spots, str | Path) else _normalize_spot_frame(spots)
    joined, matrix = _join(table, spot_table, selected_only=selected_only, sample=sample)

    img = read_image(image) if isinstance(image, str | Path) else image
    array_xy = joined[["x", "y"]].to_numpy(dtype=float)
    pixel_xy = joined[["pixel_x", "pixel_y"]].to_numpy(dtype=float)
    fit = fit_array_to_pixels(array_xy, pixel_xy)
    if spot_pitch_um is None:
        spot_pitch_um = ST_2K_PITCH_UM if fit["layout"] == "st_2k" else ST_1K_PITCH_UM
    if microns_per_pixel is None:
        microns_per_pixel = float(spot_pitch_um) / fit["pitch_px"]
        source = "array coordinate fit"
        logger.info(
            f"{sample}: {fit['px_per_unit']:.2f} px per array unit ({fit['layout']} layout, nearest spots "
            f"{fit['pitch_px']:.1f} px = {spot_pitch_um:.1f} µm apart) -> {microns_per_pixel:.4f} µm per pixel."
        )
    else:
        source = "given"
    scale = SpatialScale(
        microns_per_pixel=float(microns_per_pixel),
        spot_diameter_um=float(spot_diameter_um),
        spot_pitch_um=float(spot_pitch_um),
        mpp_source=source,
        sample=str(sample),
        image_key=image_key,
        shapes_key=shapes_key,
        table_key=table_key,
    )
    genes = list(table.columns)
    ensembl = all(_ENSEMBL.match(g) for g in genes)
    return build_sample(
        img,
        pixel_xy,
        matrix,
        genes,
        scale=scale,
        spot_names=joined.index,
        # histo2st array_row/array_col follow Visium: row = y, col = x of the ST array
        array_coords=joined[["y", "x"]].to_numpy(dtype=int),
        gene_ids=[g.split(".")[0] for g in genes] if ensembl else None,
        scale_factors=scale_factors,
        extra_attrs={
            "platform": fit["layout"],
            "px_per_array_unit": fit["px_per_unit"],
            "array_fit_rms_px": fit["rms_px"],
        },
    )


def read_count_table(path: str | Path) -> pd.DataFrame:
    """Read a legacy ST count table (spots x genes, tab-separated, optionally gzipped) and check it.

    Duplicate gene names are reported instead of being renamed (pandas would silently suffix them).
    """
    path = _existing(path, "count table")
    genes = _header(path)[1:]
    frame = pd.read_csv(path, sep="\t", header=None, skiprows=1, index_col=0)
    if frame.shape[1] != len(genes):
        raise ValueError(
            f"'{path}' has {len(genes)} gene names in its header but {frame.shape[1]} count columns. The count table "
            "must be spots x genes with the spot id ('{x}x{y}') in the first column and an empty first header cell."
        )
    frame.columns = genes
    frame.index = frame.index.astype(str)
    return _check_count_frame(frame, where=str(path))


def read_spot_table(path: str | Path) -> pd.DataFrame:
    """Read an ST spot detector table (``x y new_x new_y pixel_x pixel_y [selected]``), with or without header."""
    path = _existing(path, "spot table")
    frame = pd.read_csv(path, sep="\t")
    if "x" not in frame.columns:
        frame = pd.read_csv(path, sep="\t", header=None)
        if frame.shape[1] not in (6, 7):
            raise ValueError(
                f"'{path}' has no header and {frame.shape[1]} columns; a spot table needs the columns "
                f"{list(_SPOT_COLUMNS)} (selected optional)."
            )
        frame.columns = list(_SPOT_COLUMNS[: frame.shape[1]])
    return _normalize_spot_frame(frame, where=str(path))


def fit_array_to_pixels(array_xy: np.ndarray, pixel_xy: np.ndarray) -> dict:
    """Fit pixel positions to array coordinates by least squares and describe the array layout.

    A legacy ST array is a lattice, so ``pixel = A @ (x, y) + t``. The pixel length of one array unit is
    ``sqrt(|det A|)`` (the geometric mean of the two axes, independent of rotation), which uses every spot and is
    not biased by the jitter of single spot positions the way a nearest-neighbor distance is. The nearest-neighbor
    distance of the array coordinates themselves tells the layout: 1 unit on the square 1k array, sqrt(2) units on
    the 2k array.

    Returns
    -------
    Dict with ``px_per_unit``, ``layout`` (``"st_1k"`` or ``"st_2k"``), ``pitch_px`` (nearest spots, in pixels) and
    ``rms_px`` (residual of the fit).
    """
    from scipy.spatial import cKDTree

    array_xy = np.asarray(array_xy, dtype=float)
    pixel_xy = np.asarray(pixel_xy, dtype=float)
    if len(array_xy) < 3:
        raise ValueError(
            f"Only {len(array_xy)} spots; at least 3 are needed to fit the array to the image. "
            "Pass `microns_per_pixel=` to skip the fit."
        )
    design = np.column_stack([array_xy, np.ones(len(array_xy))])
    coef, *_ = np.linalg.lstsq(design, pixel_xy, rcond=None)
    px_per_unit = float(np.sqrt(abs(np.linalg.det(coef[:2]))))
    if not np.isfinite(px_per_unit) or px_per_unit == 0:
        raise ValueError(
            "The array coordinates of the spots are degenerate (all on one line?), so the pixel size cannot be "
            "derived from them. Pass `microns_per_pixel=`."
        )
    rms = float(np.sqrt(np.mean(np.sum((design @ coef - pixel_xy) ** 2, axis=1))))
    dist, _ = cKDTree(array_xy).query(array_xy, k=2)
    nn_units = float(np.median(dist[:, 1]))
    layout = "st_2k" if abs(nn_units - np.sqrt(2.0)) < 0.1 else "st_1k"
    pitch_px = (np.sqrt(2.0) if layout == "st_2k" else 1.0) * px_per_unit
    if rms > 0.25 * pitch_px:
        logger.warning(
            f"Spot pixel positions deviate from the array lattice by {rms:.1f} px (RMS), a large part of the "
            f"{pitch_px:.1f} px spot pitch: check that the spot table belongs to this image."
        )
    return {"px_per_unit": px_per_unit, "layout": layout, "pitch_px": float(pitch_px), "rms_px": rms}


def _join(counts: pd.DataFrame, spots: pd.DataFrame, *, selected_only: bool, sample: str):
    spot_ids = spots["x"].astype(int).astype(str) + "x" + spots["y"].astype(int).astype(str)
    if spot_ids.duplicated().any():
        dup = spot_ids[spot_ids.duplicated()].unique()[:5].tolist()
        raise ValueError(f"The spot table lists some array positions twice, e.g. {dup}; each (x, y) must be unique.")
    spots = spots.set_index(pd.Index(spot_ids, name=None))
    if selected_only and "selected" in spots:
        selected = spots["selected"].to_numpy(dtype=int) == 1
    else:
        selected = np.ones(len(spots), dtype=bool)
    in_counts = spots.index.isin(counts.index)
    kept = spots.index[selected & in_counts]
    n_counts_only = int((~counts.index.isin(spots.index)).sum())
    n_not_selected = int((~selected).sum())
    n_spots_only = int((selected & ~in_counts).sum())
    if len(kept) == 0:
        raise ValueError(
            f"{sample}: no spot ids match between the count table ({len(counts)} spots, e.g. "
            f"{counts.index[:3].tolist()}) and the {int(selected.sum())} selected spots of the spot table (e.g. "
            f"{spots.index[selected][:3].tolist()}). The count table index must be '{{x}}x{{y}}' with the integer "
            "array coordinates of the spot table's x and y columns; check that both files are for the same section."
        )
    logger.info(
        f"{sample}: kept {len(kept)} spots; dropped {n_counts_only} in the counts but not in the spot table, "
        f"{n_spots_only} selected in the spot table but without counts, {n_not_selected} not selected (outside tissue)."
    )
    order = counts.index[counts.index.isin(kept)]
    matrix = _to_sparse(counts.loc[order])
    return spots.loc[order], matrix


def _to_sparse(frame: pd.DataFrame):
    import scipy.sparse as sp

    return sp.csr_matrix(frame.to_numpy(dtype=np.float32))


def _check_count_frame(frame: pd.DataFrame, where: str = "`counts`") -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"`counts` must be a path or a pandas DataFrame (spots x genes), got {type(frame).__name__}.")
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan)
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        raise ValueError(
            f"{where} contains {n_nan} missing (NaN) counts. Counts must be numbers; fill missing entries with 0 "
            "or drop the affected spots before reading."
        )
    n_neg = int((values < 0).sum())
    if n_neg:
        raise ValueError(f"{where} contains {n_neg} negative counts; pass raw UMI counts, not normalized values.")
    genes = pd.Index(frame.columns.astype(str))
    if genes.has_duplicates:
        dup = genes[genes.duplicated()].unique()
        raise ValueError(
            f"{where} has {len(dup)} duplicate gene names, e.g. {list(dup[:5])}. Make them unique "
            "(`anndata.utils.make_index_unique`) or sum the duplicated columns, then pass the DataFrame as `counts`."
        )
    if frame.index.has_duplicates:
        raise ValueError(
            f"{where} lists some spot ids twice, e.g. {frame.index[frame.index.duplicated()][:3].tolist()}."
        )
    return frame


def _normalize_spot_frame(frame: pd.DataFrame, where: str = "`spots`") -> pd.DataFrame:
    missing = [c for c in ("x", "y", "pixel_x", "pixel_y") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{where} lacks the columns {missing}; a spot table needs x, y (array coordinates) and pixel_x, pixel_y "
            "(spot centers in image pixels), as written by the ST spot detector."
        )
    bad = frame[["x", "y", "pixel_x", "pixel_y"]].isna().any(axis=1)
    if bad.any():
        raise ValueError(f"{where} has {int(bad.sum())} rows with missing coordinates; remove or fix them.")
    return frame


def _existing(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        gz = path.with_name(path.name + ".gz")
        if gz.is_file():
            return gz
        raise FileNotFoundError(f"{what.capitalize()} not found: '{path}'. Check the path (or the data root).")
    return path


def _header(path: Path) -> list[str]:
    # the header is read on its own because pandas would silently rename duplicate gene names
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return handle.readline().rstrip("\r\n").split("\t")


def _stem(path: str | Path) -> str:
    name = Path(path).name
    for suffix in (".gz", ".tsv", ".csv", ".txt"):
        name = name.removesuffix(suffix)
    return name
