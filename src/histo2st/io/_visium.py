"""10x Visium and Visium HD: spatialdata-io readers converted to the histo2st conventions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._constants import ARRAY_COL, ARRAY_ROW, IMAGE_KEY, SHAPES_KEY, TABLE_KEY, VISIUM_PITCH_UM, VISIUM_SPOT_UM
from .._core import SpatialScale, build_sample
from .._logging import logger


def read_visium(
    path: str | Path,
    *,
    fullres_image_file: str | Path | None = None,
    counts_file: str = "filtered_feature_bc_matrix.h5",
    sample: str | None = None,
    scale_factors: Sequence[int] | None = (2, 2, 2),
    image_key: str = IMAGE_KEY,
    shapes_key: str = SHAPES_KEY,
    table_key: str = TABLE_KEY,
):
    """Read a Space Ranger Visium output folder with :func:`spatialdata_io.visium` into the histo2st conventions.

    Microns per pixel come from the spot diameter: 55 µm / ``spot_diameter_fullres`` (``spatial/
    scalefactors_json.json``). With ``fullres_image_file`` the H&E is the full-resolution microscope image; without it
    the ``tissue_hires_image.png`` becomes the H&E and spot centers are rescaled to its pixels (``attrs`` record
    ``image_source`` and ``fullres_px_per_px``).

    Parameters
    ----------
    path
        Space Ranger output folder (``filtered_feature_bc_matrix.h5``, ``spatial/tissue_positions.csv`` or
        ``tissue_positions_list.csv``, ``spatial/scalefactors_json.json``, ``spatial/tissue_hires_image.png``).
    fullres_image_file
        Full-resolution H&E (TIFF, JPEG or PNG), relative to ``path`` or absolute.
    counts_file
        Count matrix file name inside ``path``.
    sample
        Sample name; default the folder name.
    scale_factors
        Downscale factors of the multiscale H&E.
    image_key, shapes_key, table_key
        Element names.

    Returns
    -------
    :class:`spatialdata.SpatialData` in the histo2st conventions. ``var["gene_ids"]`` holds the Ensembl ids;
    spatialdata-io makes duplicate gene symbols unique. ``obs`` keeps ``in_tissue``, ``array_row``, ``array_col``.
    """
    from spatialdata_io import visium

    path = _folder(path)
    scalefactors = _scalefactors(path / "spatial" / "scalefactors_json.json")
    sample = str(sample or path.name)
    dataset_id = "visium"
    sdata = visium(path, dataset_id=dataset_id, counts_file=counts_file, fullres_image_file=fullres_image_file)
    table = sdata.tables["table"]
    full_key, hires_key = f"{dataset_id}_full_image", f"{dataset_id}_hires_image"
    image, to_image, source = _pick_image(sdata, full_key, hires_key, scalefactors["tissue_hires_scalef"], path)
    mpp = VISIUM_SPOT_UM / (scalefactors["spot_diameter_fullres"] * to_image)
    scale = SpatialScale(
        microns_per_pixel=float(mpp),
        spot_diameter_um=VISIUM_SPOT_UM,
        spot_pitch_um=VISIUM_PITCH_UM,
        mpp_source="spot diameter",
        sample=sample,
        image_key=image_key,
        shapes_key=shapes_key,
        table_key=table_key,
    )
    return _build(table, image, to_image, scale, scale_factors, {"platform": "visium", "image_source": source})


def read_visium_hd(
    path: str | Path,
    *,
    bin_size: int = 8,
    fullres_image_file: str | Path | None = None,
    sample: str | None = None,
    scale_factors: Sequence[int] | None = (2, 2, 2),
    image_key: str = IMAGE_KEY,
    shapes_key: str = SHAPES_KEY,
    table_key: str = TABLE_KEY,
):
    """Read one bin size of a Space Ranger Visium HD output with :func:`spatialdata_io.visium_hd`.

    The bins become the measured "spots" of the sample: circles inscribed in the square bins (radius half the bin
    edge), with ``attrs["histo2st"]["spot_shape"] == "square"`` so aggregations can use the square. Microns per pixel
    come from the bin edge: ``bin_size`` µm / the edge in full-resolution pixels (``spot_diameter_fullres`` of the
    bin's ``scalefactors_json.json``).

    Parameters
    ----------
    path
        Space Ranger Visium HD output folder (``feature_slice.h5``, ``binned_outputs/square_XXXum/...``).
    bin_size
        Bin edge in µm (2, 8 or 16 on 10x outputs).
    fullres_image_file
        Full-resolution H&E; default the file in ``microscope_image/`` when present, else the hires PNG.
    sample
        Sample name; default the folder name.
    scale_factors
        Downscale factors of the multiscale H&E.
    image_key, shapes_key, table_key
        Element names.

    Returns
    -------
    :class:`spatialdata.SpatialData` in the histo2st conventions, with ``attrs["histo2st"]`` holding ``platform``
    ``"visium_hd"``, ``bin_size_um`` and ``spot_shape``.
    """
    import warnings

    from spatialdata_io import visium_hd

    path = _folder(path)
    bin_name = f"square_{int(bin_size):03d}um"
    bin_dir = path / "binned_outputs" / bin_name
    if not bin_dir.is_dir():
        found = (
            sorted(p.name for p in (path / "binned_outputs").glob("square_*"))
            if (path / "binned_outputs").is_dir()
            else []
        )
        raise FileNotFoundError(
            f"No {bin_size} µm bins in '{path}': '{bin_dir}' does not exist (bin folders found: {found or 'none'}). "
            "Pass one of the available `bin_size` values."
        )
    scalefactors = _scalefactors(bin_dir / "spatial" / "scalefactors_json.json")
    dataset_id = "visium_hd"
    with warnings.catch_warnings():
        # spatialdata-io warns about absent optional images (lowres, CytAssist); the image used is checked below
        warnings.simplefilter("ignore", UserWarning)
        sdata = visium_hd(
            path,
            dataset_id=dataset_id,
            bin_size=int(bin_size),
            bins_as_squares=False,
            load_segmentations_only=False,
            fullres_image_file=fullres_image_file,
        )
    table = sdata.tables[bin_name]
    full_key, hires_key = f"{dataset_id}_full_image", f"{dataset_id}_hires_image"
    image, to_image, source = _pick_image(sdata, full_key, hires_key, scalefactors["tissue_hires_scalef"], path)
    edge_px = scalefactors["spot_diameter_fullres"] * to_image
    scale = SpatialScale(
        microns_per_pixel=float(bin_size) / edge_px,
        spot_diameter_um=float(bin_size),
        spot_pitch_um=float(bin_size),
        mpp_source="bin edge",
        sample=str(sample or path.name),
        image_key=image_key,
        shapes_key=shapes_key,
        table_key=table_key,
    )
    attrs = {"platform": "visium_hd", "image_source": source, "bin_size_um": int(bin_size), "spot_shape": "square"}
    return _build(table, image, to_image, scale, scale_factors, attrs)


def _build(table, image, to_image: float, scale: SpatialScale, scale_factors, attrs: dict):
    xy = np.asarray(table.obsm["spatial"], dtype=float) * to_image
    if np.isnan(xy).any():
        raise ValueError(
            f"{int(np.isnan(xy).any(axis=1).sum())} barcodes of the count matrix have no position in the tissue "
            "positions file; check that both come from the same Space Ranger run."
        )
    array = table.obs[[ARRAY_ROW, ARRAY_COL]].to_numpy() if {ARRAY_ROW, ARRAY_COL} <= set(table.obs) else None
    sdata = build_sample(
        image,
        xy,
        table.X,
        list(table.var_names),
        scale=scale,
        spot_names=table.obs_names,
        array_coords=array,
        gene_ids=table.var["gene_ids"].tolist() if "gene_ids" in table.var else None,
        scale_factors=scale_factors,
        extra_attrs={**attrs, "fullres_px_per_px": 1.0 / to_image},
    )
    if "in_tissue" in table.obs:
        sdata.tables[scale.table_key].obs["in_tissue"] = table.obs["in_tissue"].to_numpy()
    return sdata


def _pick_image(sdata, full_key: str, hires_key: str, hires_scalef: float, path: Path):
    if full_key in sdata.images:
        element = sdata.images[full_key]
        return (element["scale0"].ds["image"] if hasattr(element, "children") else element), 1.0, "fullres"
    if hires_key in sdata.images:
        logger.info("No full-resolution image given; using the hires image as the H&E (coordinates rescaled to it).")
        return sdata.images[hires_key], float(hires_scalef), "hires"
    raise FileNotFoundError(
        f"No H&E image in '{path}': pass `fullres_image_file=` or add spatial/tissue_hires_image.png to the folder."
    )


def _scalefactors(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(
            f"Scale factors file not found: '{path}'. It is written by Space Ranger and gives the spot or bin size in "
            "pixels, which histo2st needs to derive microns per pixel."
        )
    return json.loads(path.read_text())


def _folder(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"Space Ranger output folder not found: '{path}'.")
    return path
