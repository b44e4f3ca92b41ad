"""Reading one section of the her2st repository (Andersson et al., Nat Commun 2021)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._constants import IMAGE_KEY, LEGACY_ST_PITCH_UM, LEGACY_ST_SPOT_UM, SHAPES_KEY, TABLE_KEY
from ._st import read_st

_LAYOUT = (
    "data/ST-cnts/<section>.tsv.gz, data/ST-spotfiles/<section>_selection.tsv, data/ST-imgs/<patient>/<section>/*.jpg"
)


def her2st_files(root: str | Path, section: str) -> dict[str, Path]:
    """Locate the count table, spot table and H&E image of a her2st section.

    ``root`` is the her2st repository (the folder holding ``data/``) or a folder holding ``her2st/``.
    """
    data = _data_dir(Path(root))
    section = str(section)
    counts = data / "ST-cnts" / f"{section}.tsv.gz"
    if not counts.is_file():
        available = sorted(p.name.removesuffix(".tsv.gz") for p in (data / "ST-cnts").glob("*.tsv.gz"))
        raise FileNotFoundError(
            f"Unknown her2st section '{section}': '{counts}' does not exist. Sections found under '{data}': "
            f"{available or 'none'}. Section names are a patient letter and a number, e.g. 'C3'."
        )
    spots = data / "ST-spotfiles" / f"{section}_selection.tsv"
    if not spots.is_file():
        raise FileNotFoundError(f"Spot table of section '{section}' not found: '{spots}'. Expected layout: {_LAYOUT}.")
    image_dir = data / "ST-imgs" / section[0] / section
    images = sorted(image_dir.glob("*.jpg")) if image_dir.is_dir() else []
    if len(images) != 1:
        found = "no JPEG" if not images else f"{len(images)} JPEGs ({[p.name for p in images]})"
        raise FileNotFoundError(
            f"Expected one H&E JPEG for section '{section}' in '{image_dir}', found {found}. "
            f"Expected layout: {_LAYOUT}."
        )
    return {"counts": counts, "spots": spots, "image": images[0]}


def read_her2st(
    root: str | Path,
    section: str,
    *,
    microns_per_pixel: float | None = None,
    spot_diameter_um: float = LEGACY_ST_SPOT_UM,
    spot_pitch_um: float = LEGACY_ST_PITCH_UM,
    selected_only: bool = True,
    scale_factors: Sequence[int] | None = None,
    image_key: str = IMAGE_KEY,
    shapes_key: str = SHAPES_KEY,
    table_key: str = TABLE_KEY,
):
    """Read one section of the her2st HER2-positive breast cancer data set (legacy ST 1k array).

    Counts (``data/ST-cnts/<section>.tsv.gz``) and spot table (``data/ST-spotfiles/<section>_selection.tsv``) are
    joined on ``"{x}x{y}"``; spots found in only one of them, or not selected, are dropped and counted in the log.
    The H&E (``data/ST-imgs/<patient>/<section>/*.jpg``, about 9300 x 9900 px) stays lazy.

    Parameters
    ----------
    root
        The her2st repository (the folder holding ``data/``), or a folder holding ``her2st/``.
    section
        Section name, e.g. ``"C3"``; also the sample name.
    microns_per_pixel
        Size of an image pixel in µm. ``None`` derives it from the fit of pixel positions to array coordinates
        (``spot_pitch_um`` per array unit); about 0.69 on this data set.
    spot_diameter_um, spot_pitch_um
        Spot diameter (100 µm) and center-to-center distance (200 µm) of the ST 1k array.
    selected_only
        Keep only spots marked ``selected == 1`` (under the tissue).
    scale_factors
        Downscale factors for a multiscale H&E, e.g. ``(2, 2, 2)``; default single scale (see
        :func:`histo2st.io.read_st`).
    image_key, shapes_key, table_key
        Element names.

    Returns
    -------
    :class:`spatialdata.SpatialData` in the histo2st conventions (see :func:`histo2st.io.read_st`), sample name
    ``section``.
    """
    files = her2st_files(root, section)
    return read_st(
        files["counts"],
        files["spots"],
        files["image"],
        spot_diameter_um=spot_diameter_um,
        spot_pitch_um=spot_pitch_um,
        microns_per_pixel=microns_per_pixel,
        selected_only=selected_only,
        sample=str(section),
        scale_factors=scale_factors,
        image_key=image_key,
        shapes_key=shapes_key,
        table_key=table_key,
    )


def _data_dir(root: Path) -> Path:
    for candidate in (root / "data", root / "her2st" / "data"):
        if (candidate / "ST-cnts").is_dir():
            return candidate
    raise FileNotFoundError(
        f"No her2st data under '{root}': expected '{root / 'data' / 'ST-cnts'}'. Pass the her2st repository folder "
        f"(layout {_LAYOUT}), or use `histo2st.datasets.her2st(section)` to locate or download it."
    )
