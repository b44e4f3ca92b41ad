"""Turning user images into the (c=3, y, x) uint8 H&E convention, lazily."""

from __future__ import annotations

import warnings
from pathlib import Path

import dask.array as da
import numpy as np

#: Chunk shape of H&E images: all three channels together, square spatial tiles.
IMAGE_CHUNKS = (3, 2048, 2048)


def read_image(path: str | Path) -> da.Array:
    """Read an H&E image file as a lazy ``(y, x, c)`` dask array.

    TIFF files are opened through tifffile's zarr interface, so only the chunks that are used are read.
    JPEG and PNG cannot be decoded partially; they are decoded once, on first use, by a single dask task.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: '{path}'. Check the path, or pass the image as an array.")
    suffix = path.suffix.lower()
    if suffix in {".tif", ".tiff"}:
        import tifffile
        import zarr

        store = tifffile.imread(path, aszarr=True)
        group = zarr.open(store, mode="r")
        array = group if isinstance(group, zarr.Array) else group[next(iter(sorted(group.array_keys())))]
        return da.from_zarr(array)
    if suffix in {".jpg", ".jpeg", ".png"}:
        import imageio.v3 as iio
        from PIL import Image

        # legacy ST images are ~100 Mpx, above PIL's decompression-bomb guard; they are trusted local files
        Image.MAX_IMAGE_PIXELS = None
        props = iio.improps(path)
        delayed = da.from_delayed(
            _delayed_imread(path),
            shape=props.shape,
            dtype=props.dtype,
            name=f"read-{path.name}-{path.stat().st_mtime_ns}",
        )
        return delayed
    raise ValueError(f"Unsupported image format '{path.suffix}' for '{path}'. Use TIFF, JPEG or PNG.")


def _delayed_imread(path: Path):
    import dask
    import imageio.v3 as iio

    return dask.delayed(iio.imread)(path)


def as_rgb_uint8(image, *, name: str = "image") -> da.Array:
    """Return ``image`` as a ``(3, y, x)`` uint8 dask array.

    Accepted layouts are ``(y, x)``, ``(y, x, c)`` and ``(c, y, x)`` with ``c`` in 1, 3 or 4 (the channel axis is the
    one of size <= 4). Conversions, each with a warning:

    - grayscale (1 channel) is replicated to RGB;
    - RGBA keeps RGB and drops alpha (H&E has no transparency; fully transparent pixels are set to white);
    - uint16 is scaled to 0-255 by ``x // 257``; floats in [0, 1] are scaled by 255, floats in [0, 255] are rounded.

    Anything else (other dtypes, negative values, more than 4 channels) raises.
    """
    if isinstance(image, str | Path):
        image = read_image(image)
    arr = image.data if hasattr(image, "dims") else image
    arr = arr if isinstance(arr, da.Array) else da.asarray(np.asarray(arr))
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"`{name}` must be 2-D or 3-D (y, x[, c]), got shape {arr.shape}.")
    if arr.shape[-1] <= 4 and arr.shape[0] > 4:
        arr = da.moveaxis(arr, -1, 0)
    n_channels = arr.shape[0]
    if n_channels not in (1, 3, 4):
        raise ValueError(
            f"`{name}` has {n_channels} channels in shape {arr.shape}; an H&E image needs 3 (RGB). "
            "Pass (y, x, 3) or (3, y, x)."
        )
    arr = _to_uint8(arr, name=name)
    if n_channels == 1:
        warnings.warn(f"`{name}` is grayscale; replicating it to 3 channels.", UserWarning, stacklevel=3)
        arr = da.concatenate([arr] * 3, axis=0)
    elif n_channels == 4:
        warnings.warn(f"`{name}` is RGBA; dropping the alpha channel.", UserWarning, stacklevel=3)
        alpha = arr[3:4]
        arr = da.where(alpha == 0, np.uint8(255), arr[:3])
    return arr.rechunk(IMAGE_CHUNKS).astype(np.uint8, copy=False)


def _to_uint8(arr: da.Array, *, name: str) -> da.Array:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        warnings.warn(f"`{name}` is uint16; scaling to uint8 (x // 257).", UserWarning, stacklevel=4)
        return (arr // 257).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        with warnings.catch_warnings():  # nanmin/nanmax of an all-NaN image warn; the NaN error below says more
            warnings.simplefilter("ignore", RuntimeWarning)
            n_nan, lo, hi = (
                float(v) for v in da.compute(da.isnan(arr).any(axis=0).sum(), da.nanmin(arr), da.nanmax(arr))
            )
        if n_nan:
            raise ValueError(
                f"`{name}` has NaN at {int(n_nan)} of its {arr.shape[1] * arr.shape[2]} pixels; an H&E image needs a "
                "value at every pixel. Fill them before loading, with white where they are background "
                "(`np.nan_to_num(image, nan=1.0)` for values in [0, 1], `nan=255` for [0, 255]): the tissue "
                "detection of `st.tl.predict` leaves white out, and its `tissue_mask=` masks any other region."
            )
        if lo < 0 or hi > 255 or not np.isfinite(lo + hi):
            raise ValueError(f"`{name}` is float with values in [{lo}, {hi}]; expected [0, 1] or [0, 255].")
        factor = 255.0 if hi <= 1.0 else 1.0
        warnings.warn(f"`{name}` is {arr.dtype}; converting to uint8.", UserWarning, stacklevel=4)
        return da.round(arr * factor).astype(np.uint8)
    raise ValueError(f"`{name}` has dtype {arr.dtype}; an H&E image must be uint8 (uint16 and float are converted).")
