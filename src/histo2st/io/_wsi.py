"""Whole-slide images, read lazily: pyramidal (OME-)TIFF, large JPEG/PNG and, with openslide, vendor formats."""

from __future__ import annotations

import contextlib
import functools
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np

from .._constants import ATTRS_KEY, IMAGE_CHANNELS, IMAGE_KEY
from .._core import SpatialScale, as_rgb_uint8, microns_transformations
from .._core._image import IMAGE_CHUNKS
from .._core._resample import closest_level
from .._logging import logger

TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".tf2", ".tf8")
PIL_SUFFIXES = (".jpg", ".jpeg", ".png")
OPENSLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
#: Pixel sizes outside this range (µm) are not a microscope's: such resolution tags are a scanner's or editor's
#: default (72 dpi is 353 µm/px) and are ignored.
PLAUSIBLE_MPP = (0.01, 50.0)
#: JPEG decodes directly at 1/2, 1/4 and 1/8 scale (DCT scaling), which acts as a pyramid.
JPEG_SCALES = (1, 2, 4, 8)
_UNIT_UM = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "Å": 1e-4, "mm": 1e3, "cm": 1e4, "m": 1e6}
_OPENSLIDE_HELP = (
    "Reading '{suffix}' slides needs openslide, an optional dependency: `pip install 'histo2st[openslide]'` "
    "(openslide-python with the openslide-bin library). Or convert the slide to a pyramidal OME-TIFF, which histo2st "
    "reads with tifffile alone."
)


@dataclass(frozen=True)
class _Level:
    """One resolution level of a slide: ``(height, width)`` and µm per pixel (``None`` until the scale is known)."""

    shape: tuple[int, int]
    downsample: float


def read_wsi(
    path: str | Path,
    *,
    microns_per_pixel: float | None = None,
    level: int | None = None,
    target_microns_per_pixel: float | None = None,
    series: int = 0,
    sample: str | None = None,
    image_key: str = IMAGE_KEY,
):
    """Read a whole-slide H&E image lazily, at the pyramid level a model needs.

    Pyramidal TIFF and OME-TIFF are read with tifffile, chunk by chunk, so only the pixels that are used are decoded;
    OME-TIFF sub-resolutions (SubIFDs), SVS-style and generic TIFF pyramids are all levels. JPEG and PNG cannot be
    read by region: the whole image is decoded once, when first used (JPEG at 1/2, 1/4 or 1/8 scale when a coarser
    level is asked for); convert large ones to a tiled pyramidal OME-TIFF (e.g. ``vips tiffsave in.jpg out.ome.tif
    --tile --pyramid --compression jpeg``). Vendor formats (``.svs``, ``.ndpi``, ``.mrxs``, ...) need the optional
    ``openslide`` extra.

    Parameters
    ----------
    path
        The slide file.
    microns_per_pixel
        µm per pixel of the full-resolution level. Default: from the OME metadata (``PhysicalSizeX``), the TIFF
        resolution tags or openslide's ``openslide.mpp-x``; required when the file has none (JPEG, PNG, plain TIFF).
        When given it overrides the file's value (a warning is logged when they differ by more than 5%).
    level
        Pyramid level to read (0 = full resolution). Give at most one of ``level`` and ``target_microns_per_pixel``;
        neither reads level 0.
    target_microns_per_pixel
        Read the coarsest level that is at most 10% coarser than this (e.g. a model's ``microns_per_pixel``), instead
        of resampling the full resolution: a model at 2 µm/px reads a 0.25 µm/px slide's 1/8 level, 64 times fewer
        pixels. When every level is coarser, level 0 is read.
    series
        Image series of a multi-image TIFF.
    sample
        Sample name (default: the file name without suffixes).
    image_key
        Name of the image element.

    Returns
    -------
    :class:`spatialdata.SpatialData` holding only ``images[image_key]``: the chosen level as ``scale0`` and the
    file's coarser levels as ``scale1``, ... (a single-scale image when there are none), ``(c=3, y, x)`` uint8 lazy
    dask arrays, with an Identity to ``"global"`` (the chosen level's pixels) and a Scale to ``"microns"``.
    ``attrs["histo2st"]`` holds the scale (``microns_per_pixel`` of the chosen level, ``spot_diameter_um=None``: a
    slide has no measured spots) and, under ``"slide"``, the file, format, level read and every level's µm per pixel.
    The sample passes :func:`histo2st.io.validate` with ``require_counts=False`` and can be predicted on.
    """
    import spatialdata as sd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Slide not found: '{path}'.")
    if level is not None and target_microns_per_pixel is not None:
        raise ValueError("Give `level` or `target_microns_per_pixel`, not both.")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        reader = _TiffSlide(path, series)
    elif suffix in PIL_SUFFIXES:
        reader = _PilSlide(path)
    elif suffix in OPENSLIDE_SUFFIXES:
        reader = _OpenSlide(path)
    else:
        known = ", ".join(TIFF_SUFFIXES + PIL_SUFFIXES + OPENSLIDE_SUFFIXES)
        raise ValueError(f"Unsupported slide format '{path.suffix}' for '{path}'. Known suffixes: {known}.")

    mpp0, source = _resolve_mpp(path, reader.microns_per_pixel(), microns_per_pixel)
    mpps = [mpp0 * lvl.downsample for lvl in reader.levels]
    if level is None:
        level = 0 if target_microns_per_pixel is None else closest_level(mpps, target_microns_per_pixel)
    if not 0 <= level < len(reader.levels):
        raise ValueError(f"`level={level}` does not exist: '{path.name}' has {len(reader.levels)} levels (0-based).")
    if isinstance(reader, _PilSlide):
        reader.note(level)
    arrays = [as_rgb_uint8(reader.read(k), name=path.name) for k in range(level, len(reader.levels))]
    element = _image_element(arrays, mpps[level])
    name = sample or path.name.split(".")[0]
    scale = SpatialScale(
        microns_per_pixel=mpps[level], spot_diameter_um=None, mpp_source=source, sample=name, image_key=image_key
    )
    sdata = sd.SpatialData(images={image_key: element})
    sdata.attrs[ATTRS_KEY] = {
        **scale.to_dict(),
        "slide": {
            "path": str(path),
            "format": reader.kind,
            "level": level,
            "level_microns_per_pixel": [round(m, 6) for m in mpps],
        },
    }
    height, width = arrays[0].shape[1:]
    logger.info(f"Slide '{path.name}': level {level} of {len(mpps)}, {width} x {height} px at {mpps[level]:.4g} µm/px.")
    return sdata


def _resolve_mpp(path: Path, found: tuple[float, str] | None, given: float | None) -> tuple[float, str]:
    if given is not None:
        if not given > 0:
            raise ValueError(f"`microns_per_pixel` must be positive, got {given!r}.")
        if found is not None and not math.isclose(found[0], given, rel_tol=0.05):
            logger.warning(
                f"'{path.name}' says {found[0]:.4g} µm/px ({found[1]}); using the given {given:.4g} µm/px instead."
            )
        return float(given), "given"
    if found is None:
        raise ValueError(
            f"'{path.name}' does not say its pixel size (no OME PhysicalSizeX, TIFF resolution tags or vendor "
            "metadata). Pass `microns_per_pixel=` (about 0.25 for a 40x scan, 0.5 for 20x)."
        )
    return found


def _plausible(mpp: float, where: str) -> float | None:
    if PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        return mpp
    logger.warning(f"Ignoring the {where} ({mpp:.4g} µm/px): not a microscope's pixel size.")
    return None


def _image_element(arrays: list[da.Array], microns_per_pixel: float):
    """A single-scale image or, with coarser levels, a multiscale one whose levels are the file's own."""
    from spatialdata.models import Image2DModel
    from spatialdata.models.pyramids_utils import dask_arrays_to_datatree
    from spatialdata.transformations import set_transformation

    transformations = microns_transformations(microns_per_pixel)
    if len(arrays) == 1:
        return Image2DModel.parse(arrays[0], dims=("c", "y", "x"), c_coords=list(IMAGE_CHANNELS),
                                  transformations=transformations)  # fmt: skip
    tree = dask_arrays_to_datatree(arrays, dims=("c", "y", "x"), channels=list(IMAGE_CHANNELS))
    set_transformation(tree, transformations, set_all=True)
    Image2DModel().validate(tree)
    return tree


# --- TIFF ------------------------------------------------------------------------------------------------------------
class _TiffSlide:
    kind = "tiff"

    def __init__(self, path: Path, series: int) -> None:
        import tifffile

        self.path, self.series = path, series
        with tifffile.TiffFile(path) as tif:
            if not 0 <= series < len(tif.series):
                raise ValueError(f"`series={series}` does not exist: '{path.name}' has {len(tif.series)} series.")
            levels = tif.series[series].levels
            self.axes = [lvl.axes for lvl in levels]
            self.shapes = [lvl.shape for lvl in levels]
            self.dtype = levels[0].dtype
            self._mpp = _tiff_mpp(tif, series)
        spatial = [_spatial_shape(shape, axes, path) for shape, axes in zip(self.shapes, self.axes, strict=True)]
        self.levels = [_Level(s, spatial[0][1] / s[1]) for s in spatial]

    def microns_per_pixel(self) -> tuple[float, str] | None:
        return self._mpp

    def read(self, level: int) -> da.Array:
        n_channels = math.prod(self.shapes[level]) // math.prod(self.levels[level].shape)
        return _lazy(
            _read_tiff_block,
            (n_channels, *self.levels[level].shape),
            self.dtype,
            path=str(self.path),
            stamp=self.path.stat().st_mtime_ns,
            series=self.series,
            level=level,
            axes=self.axes[level],
        )


def _spatial_shape(shape: tuple[int, ...], axes: str, path: Path) -> tuple[int, int]:
    extra = {a: n for a, n in zip(axes, shape, strict=True) if a not in "YXSC" and n > 1}
    if extra or "Y" not in axes or "X" not in axes:
        raise ValueError(
            f"'{path.name}' has axes {axes} with shape {shape}; an H&E slide needs Y, X and RGB samples (axes such as "
            "YXS or CYX) and no other axis longer than 1. Pass `series=` to pick another image of the file."
        )
    return shape[axes.index("Y")], shape[axes.index("X")]


def _tiff_mpp(tif, series: int) -> tuple[float, str] | None:
    """µm per pixel of the full-resolution level: OME ``PhysicalSizeX``, Aperio ``MPP``, then the resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        mpp = _ome_mpp(tif.ome_metadata, series)
        if mpp is not None:
            return mpp, "OME metadata"
    page = tif.series[series].levels[0].keyframe
    match = re.search(r"\bMPP\s*=\s*([0-9.eE+-]+)", page.description or "") if tif.is_svs else None
    if match:
        mpp = _plausible(float(match.group(1)), "Aperio MPP")
        if mpp is not None:
            return mpp, "Aperio MPP"
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    resolution = tags.get("XResolution")
    um_per_unit = {2: 25400.0, 3: 10000.0}.get(int(unit.value) if unit is not None else 2)
    if resolution is None or um_per_unit is None:
        return None
    num, den = resolution.value
    if num <= 0 or den <= 0:
        return None
    mpp = _plausible(um_per_unit * den / num, "TIFF resolution tags")
    return None if mpp is None else (mpp, "TIFF resolution tags")


def _ome_mpp(xml: str, series: int) -> float | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    images = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Image"]
    if series >= len(images):
        return None
    pixels = next((el for el in images[series] if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or pixels.get("PhysicalSizeX") is None:
        return None
    factor = _UNIT_UM.get(pixels.get("PhysicalSizeXUnit", "µm"))
    if factor is None:
        return None
    return _plausible(float(pixels.get("PhysicalSizeX")) * factor, "OME PhysicalSizeX")


@functools.lru_cache(maxsize=16)
def _tiff_array(path: str, stamp: int, series: int, level: int):
    """The zarr view of one TIFF level, opened once per process (``stamp`` renews it when the file changes)."""
    import tifffile
    import zarr

    return zarr.open(tifffile.imread(path, aszarr=True, series=series, level=level), mode="r")


def _read_tiff_block(path, stamp, series, level, axes, block_info=None) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
    index = tuple(slice(y0, y1) if a == "Y" else slice(x0, x1) if a == "X" else slice(None) if a in "SC" else 0
                  for a in axes)  # fmt: skip
    block = np.asarray(_tiff_array(path, stamp, series, level)[index])
    kept = [a for a in axes if a in "YXSC"]
    if "S" not in kept and "C" not in kept:
        return block[None]
    return np.moveaxis(block, kept.index("S" if "S" in kept else "C"), 0)


# --- JPEG / PNG ------------------------------------------------------------------------------------------------------
class _PilSlide:
    kind = "pil"

    def __init__(self, path: Path) -> None:
        from PIL import Image

        self.path = path
        with _no_bomb_limit(), Image.open(path) as img:
            self.format, self.mode = img.format, img.mode
            width, height = img.size
        sizes, self.drafts = [(width, height)], [None]
        for s in JPEG_SCALES[1:] if self.format == "JPEG" else ():
            with _no_bomb_limit(), Image.open(path) as img:  # a draft is set once per opened file
                img.draft("RGB", (width // s, height // s))
                if img.size != sizes[-1]:
                    sizes.append(img.size)
                    self.drafts.append((width // s, height // s))
        self.levels = [_Level((h, w), width / w) for w, h in sizes]

    def microns_per_pixel(self) -> None:
        return None  # JPEG/PNG DPI fields hold screen defaults (72 or 96), never a scan's pixel size

    def read(self, level: int) -> da.Array:
        h, w = self.levels[level].shape
        decoded = _delayed_decode(str(self.path), self.drafts[level], (w, h))
        return da.from_delayed(decoded, shape=(h, w, _pil_channels(self.mode)), dtype=np.uint8)

    def note(self, level: int) -> None:
        """Say once that reading decodes the whole file."""
        h, w = self.levels[level].shape
        logger.info(
            f"'{self.path.name}' is a {self.format}: it cannot be read by region, so the first use decodes all of "
            f"its {w} x {h} px ({3 * w * h / 2**30:.1f} GB). For slides larger than memory, convert it to a tiled "
            "pyramidal OME-TIFF."
        )


def _pil_channels(mode: str) -> int:
    return {"L": 1, "LA": 4, "RGBA": 4}.get(mode, 3)


def _delayed_decode(path: str, draft: tuple[int, int] | None, size: tuple[int, int]):
    import dask

    return dask.delayed(_decode_pil, pure=True)(path, draft, size)


def _decode_pil(path: str, draft: tuple[int, int] | None, size: tuple[int, int]) -> np.ndarray:
    """The whole image as ``(h, w, c)``; ``draft`` asks JPEG to decode at a reduced scale."""
    from PIL import Image

    with _no_bomb_limit(), Image.open(path) as img:
        if draft is not None:
            img.draft("RGB", draft)
        mode = {"L": "L", "LA": "RGBA", "RGBA": "RGBA"}.get(img.mode, "RGB")
        out = np.asarray(img.convert(mode))
    if out.shape[:2] != size[::-1]:
        raise RuntimeError(f"'{path}' decoded to {out.shape[1]} x {out.shape[0]} px, expected {size[0]} x {size[1]}.")
    return out


@contextlib.contextmanager
def _no_bomb_limit():
    """Lift PIL's decompression-bomb guard for one trusted local slide, and put it back."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = limit


# --- openslide -------------------------------------------------------------------------------------------------------
class _OpenSlide:
    kind = "openslide"

    def __init__(self, path: Path) -> None:
        self.path = path
        slide = _openslide(str(path), path.stat().st_mtime_ns)
        sizes = zip(slide.level_dimensions, slide.level_downsamples, strict=True)
        self.levels = [_Level((h, w), float(downsample)) for (w, h), downsample in sizes]
        value = slide.properties.get("openslide.mpp-x")
        self._mpp = None if value is None else _plausible(float(value), "openslide.mpp-x")

    def microns_per_pixel(self) -> tuple[float, str] | None:
        return None if self._mpp is None else (self._mpp, "openslide.mpp-x")

    def read(self, level: int) -> da.Array:
        lvl = self.levels[level]
        stamp = self.path.stat().st_mtime_ns
        return _lazy(_read_openslide_block, (3, *lvl.shape), np.uint8, path=str(self.path), stamp=stamp, level=level,
                     downsample=lvl.downsample)  # fmt: skip


@functools.lru_cache(maxsize=16)
def _openslide(path: str, stamp: int):
    try:
        import openslide
    except ImportError:
        raise ImportError(_OPENSLIDE_HELP.format(suffix=Path(path).suffix)) from None
    return openslide.OpenSlide(path)


def _read_openslide_block(path, stamp, level, downsample, block_info=None) -> np.ndarray:
    (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
    # read_region takes the top-left corner in level-0 pixels and the size in this level's pixels
    origin = (round(x0 * downsample), round(y0 * downsample))
    rgba = np.asarray(_openslide(path, stamp).read_region(origin, level, (x1 - x0, y1 - y0)))
    rgb = np.where(rgba[..., 3:] == 0, np.uint8(255), rgba[..., :3])  # transparent (unscanned) is empty glass
    return np.moveaxis(rgb, -1, 0)


def _lazy(read_block, shape: tuple[int, int, int], dtype, **kwargs) -> da.Array:
    """A ``(c, y, x)`` dask array whose chunks ``read_block`` reads from the file by path (picklable for clusters)."""
    chunks = da.core.normalize_chunks((shape[0], *IMAGE_CHUNKS[1:]), shape)
    return da.map_blocks(read_block, dtype=dtype, chunks=chunks, meta=np.empty((0, 0, 0), dtype=dtype), **kwargs)
