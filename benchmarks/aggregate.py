"""Aggregation engine benchmark: prints one JSON object (see issue 3).

    python benchmarks/aggregate.py           # full: 250 x 4096 x 4096 float16 map (8.4 GB RAM + 8.4 GB disk)
    python benchmarks/aggregate.py --small   # quick check of the same measurements on small arrays

Measured in one run: map GB read per second for 100k circles (radius 4-40 px) and a full grid of 8 µm squares at
0.5 µm/px; the machine's read bandwidth over the same array, twice: the numpy sum the issue names (float16 summed
into float32, which numpy does slowly) and a stronger reference, a parallel numba pass that adds up every uint16 of
the map (a pure memory stream); the speed-up over a naive per-spot numpy mask loop (timed on a subsample,
extrapolated); the speed-up over ``spatialdata.aggregate(image, by=labels)``; the peak memory of aggregating a
zarr-backed dask map larger than the address-space limit set for that child process; and the circles and squares
again on the same map made NaN outside a central disc of tissue (a prediction written only on tissue).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit, prange

FULL = {"channels": 250, "size": 4096, "n_circles": 100_000, "naive_n": 200, "naive_full_n": 5, "sd": (50, 2000, 10**4)}
SMALL = {"channels": 16, "size": 1024, "n_circles": 6_000, "naive_n": 100, "naive_full_n": 5, "sd": (5, 300, 200)}
MPP, BIN_UM = 0.5, 8.0


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def make_map(channels: int, size: int, rng) -> np.ndarray:
    image = np.empty((channels, size, size), dtype=np.float16)
    for c in range(channels):  # one channel at a time: a float32 copy of the whole map would not fit
        image[c] = rng.random((size, size), dtype=np.float32)
    return image


def random_circles(n: int, size: int, rng):
    return rng.uniform(0, size, (n, 2)), rng.uniform(4, 40, n)


@njit(parallel=True, nogil=True)
def stream_sum(bits):
    """Sum of every uint16 of the map as uint64, in parallel over contiguous pieces: the read bandwidth ceiling."""
    flat = bits.reshape(-1)
    pieces = 64
    partial = np.zeros(pieces, dtype=np.uint64)
    for p in prange(pieces):
        total = np.uint64(0)
        for i in range(p * flat.size // pieces, (p + 1) * flat.size // pieces):
            total += flat[i]
        partial[p] = total
    return partial.sum()


NAIVE_BOX = (
    "per spot: slice the circle's bounding box out of the map, build a boolean mask of the pixel centers inside "
    "(numpy mgrid), take map[:, box][:, mask] as float64 and sum; cropping to the bounding box makes this the faster "
    "and so the stricter of the two naive baselines"
)
NAIVE_FULL = (
    "per spot: a boolean mask over the whole map, (xx - cx)**2 + (yy - cy)**2 <= r**2 with the pixel-center grids "
    "built once outside the timing, then map[:, mask] as float64 summed: the literal per-spot mask loop (as in the "
    "tests' brute-force reference)"
)


def naive_full_mask(image, centers, radii, xx, yy) -> np.ndarray:
    """Per spot: a full-map boolean mask of the pixel centers inside, a masked sum."""
    out = np.zeros((len(radii), image.shape[0]))
    for k, ((cx, cy), r) in enumerate(zip(centers, radii, strict=True)):
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        out[k] = image[:, mask].astype(np.float64).sum(axis=1)
    return out


def naive_circles(image, centers, radii) -> np.ndarray:
    """Per spot: the bounding box, a boolean mask of the pixel centers inside, a masked sum."""
    out = np.zeros((len(radii), image.shape[0]))
    for k, ((cx, cy), r) in enumerate(zip(centers, radii, strict=True)):
        x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, image.shape[2])
        y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, image.shape[1])
        yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
        out[k] = image[:, y0:y1, x0:x1][:, mask].astype(np.float64).sum(axis=1)
    return out


def spatialdata_case(channels: int, size: int, n: int, rng) -> dict:
    import spatialdata as sd
    from spatialdata.models import Image2DModel, Labels2DModel

    from histo2st._kernels import aggregate_circles, aggregate_labels

    image = rng.random((channels, size, size), dtype=np.float32)
    centers, radii = random_circles(n, size, rng)
    labels = np.zeros((size, size), dtype=np.int32)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    for k, ((cx, cy), r) in enumerate(zip(centers, radii, strict=True)):  # later circles overwrite earlier ones
        y0, y1, x0, x1 = (max(int(cy - r), 0), int(cy + r) + 1, max(int(cx - r), 0), int(cx + r) + 1)
        sub = (xx[y0:y1, x0:x1] - cx) ** 2 + (yy[y0:y1, x0:x1] - cy) ** 2 <= r**2
        labels[y0:y1, x0:x1][sub] = k + 1
    aggregate_labels(image[:, :8, :8], labels[:8, :8])  # compile (or load the numba cache) before timing
    aggregate_circles(image[:, :8, :8], centers[:2], radii[:2])
    ours_labels, (ids, sums, _) = timed(aggregate_labels, image, labels)
    ours_circles, _ = timed(aggregate_circles, image, centers, radii)
    values = Image2DModel.parse(image, dims=("c", "y", "x"), c_coords=[f"g{i}" for i in range(channels)])
    by = Labels2DModel.parse(labels, dims=("y", "x"))
    theirs, result = timed(sd.aggregate, values=values, by=by, agg_func="sum")
    table = result.tables[next(iter(result.tables))]
    order = np.argsort(table.obs[table.uns["spatialdata_attrs"]["instance_key"]].to_numpy())
    x = table.X.toarray() if hasattr(table.X, "toarray") else np.asarray(table.X)
    theirs_ids = np.sort(table.obs[table.uns["spatialdata_attrs"]["instance_key"]].to_numpy())
    x = x[order][np.isin(theirs_ids, ids)]
    return {
        "shape": [channels, size, size],
        "n_circles": n,
        "spatialdata_aggregate_s": theirs,
        "histo2st_labels_s": ours_labels,
        "histo2st_circles_s": ours_circles,
        "speedup_labels": theirs / ours_labels,
        "speedup_circles": theirs / ours_circles,
        "max_abs_diff_sums": float(np.abs(x - sums).max()),
    }


def zarr_child(path: str, limit_bytes: int, n_circles: int, size: int) -> None:
    """Child process: aggregate the zarr map under an address-space limit; print peak RSS as JSON."""
    import dask
    import dask.array as da

    from histo2st._core._aggregate_arrays import aggregate_array

    resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    centers, radii = random_circles(n_circles, size, np.random.default_rng(1))
    image = da.from_zarr(path)
    with dask.config.set(scheduler="threads", num_workers=2):
        seconds, result = timed(aggregate_array, image, centers=centers, radii=radii, agg="sum")
    # VmHWM, not getrusage: ru_maxrss survives exec, so it would report the parent's peak
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": peak, "finite": bool(np.isfinite(result.values).all())}))


def zarr_case(image: np.ndarray, n_circles: int) -> dict:
    import zarr

    tmp = tempfile.mkdtemp(prefix="histo2st-bench-")
    path = os.path.join(tmp, "map.zarr")
    try:
        z = zarr.create_array(path, shape=image.shape, chunks=(8, 1024, 1024), dtype=image.dtype, compressors=None)
        for c0 in range(0, image.shape[0], 8):
            z[c0 : c0 + 8] = image[c0 : c0 + 8]
        probe = subprocess.run(
            [sys.executable, "-c", "import histo2st._core._aggregate_arrays, dask.array, zarr, resource;"
             "print(int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize())"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        baseline = int(probe.stdout.strip())
        # the data budget is a quarter of the map on top of what the interpreter and libraries reserve
        limit = baseline + image.nbytes // 4 + 512 * 2**20
        child = subprocess.run(
            [sys.executable, __file__, "--zarr-child", path, str(limit), str(n_circles), str(image.shape[1])],
            capture_output=True, text=True,
        )  # fmt: skip
        if child.returncode:
            return {"error": child.stderr[-2000:], "limit_bytes": limit}
        out = json.loads(child.stdout.strip().splitlines()[-1])
        out.update(
            map_bytes=image.nbytes,
            address_space_limit_bytes=limit,
            libraries_baseline_bytes=baseline,
            map_larger_than_limit=image.nbytes > limit,
            map_GBps=image.nbytes / 1e9 / out["seconds"],
        )
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small arrays, for a quick check")
    parser.add_argument("--zarr-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.zarr_child:
        path, limit, n, size = args.zarr_child
        zarr_child(path, int(limit), int(n), int(size))
        return

    from histo2st._kernels import aggregate_circles, aggregate_squares, square_grid

    cfg = SMALL if args.small else FULL
    load_start = os.getloadavg()
    rng = np.random.default_rng(0)
    size, channels = cfg["size"], cfg["channels"]
    image = make_map(channels, size, rng)
    gb = image.nbytes / 1e9
    centers, radii = random_circles(cfg["n_circles"], size, rng)
    edge = BIN_UM / MPP
    origins = square_grid((0, size), (0, size), edge)

    aggregate_circles(image[:, :64, :64], centers[:5], radii[:5])  # compile (or load the numba cache)
    aggregate_squares(image[:, :64, :64], origins[:5], edge)
    stream_sum(image[:1, :8].view(np.uint16))  # compile
    read_s, _ = timed(np.sum, image, dtype=np.float32)
    stream_s, _ = timed(stream_sum, image.view(np.uint16))
    circles_s, (circle_sums, _) = timed(aggregate_circles, image, centers, radii)
    squares_s, (square_sums, _) = timed(aggregate_squares, image, origins, edge)

    sub = rng.choice(len(radii), cfg["naive_n"], replace=False)
    naive_s, naive = timed(naive_circles, image, centers[sub], radii[sub])
    naive_full_s = naive_s * len(radii) / len(sub)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    sub_full = sub[: cfg["naive_full_n"]]
    mask_s, mask_sums = timed(naive_full_mask, image, centers[sub_full], radii[sub_full], xx, yy)
    del yy, xx
    mask_full_s = mask_s * len(radii) / len(sub_full)

    result = {
        "machine": machine(load_start),
        "map": {"shape": list(image.shape), "dtype": "float16", "GB": gb, "microns_per_pixel": MPP},
        "read_bandwidth": {"method": "numpy.sum(map, dtype=float32)", "seconds": read_s, "GBps": gb / read_s},
        "read_bandwidth_stream": {
            "method": "numba prange sum of the map's uint16 bits as uint64 (every byte read once)",
            "seconds": stream_s,
            "GBps": gb / stream_s,
        },
        "circles": {
            "n": len(radii),
            "radius_px": [4, 40],
            "seconds": circles_s,
            "GBps": gb / circles_s,
            "fraction_of_read_bandwidth": read_s / circles_s,
            "fraction_of_stream_bandwidth": stream_s / circles_s,
        },
        "squares": {
            "n": len(origins),
            "edge_um": BIN_UM,
            "edge_px": edge,
            "seconds": squares_s,
            "GBps": gb / squares_s,
            "fraction_of_read_bandwidth": read_s / squares_s,
            "fraction_of_stream_bandwidth": stream_s / squares_s,
        },
        "naive_full_mask_loop": {
            "method": NAIVE_FULL,
            "subsample": len(sub_full),
            "seconds_subsample": mask_s,
            "seconds_extrapolated": mask_full_s,
            "speedup": mask_full_s / circles_s,
            "max_rel_diff": float(np.abs(mask_sums - circle_sums[sub_full]).max() / np.abs(mask_sums).max()),
        },
        "naive_loop": {
            "method": NAIVE_BOX,
            "subsample": len(sub),
            "seconds_subsample": naive_s,
            "seconds_extrapolated": naive_full_s,
            "speedup": naive_full_s / circles_s,
            "max_rel_diff": float(np.abs(naive - circle_sums[sub]).max() / np.abs(naive).max()),
        },
    }
    del circle_sums, square_sums
    result["zarr_out_of_core"] = zarr_case(image, len(radii))
    result["nan_off_tissue"] = nan_case(image, centers, radii, origins, edge, circles_s, squares_s)
    del image
    result["spatialdata_aggregate"] = spatialdata_case(*cfg["sd"][:2], cfg["sd"][2], rng)
    zarr_out = result["zarr_out_of_core"]
    result["targets_met"] = {
        "circles_25pct_read": result["circles"]["fraction_of_read_bandwidth"] >= 0.25,
        "circles_25pct_stream": result["circles"]["fraction_of_stream_bandwidth"] >= 0.25,
        "squares_50pct_read": result["squares"]["fraction_of_read_bandwidth"] >= 0.5,
        "squares_50pct_stream": result["squares"]["fraction_of_stream_bandwidth"] >= 0.5,
        "naive_100x_full_mask": result["naive_full_mask_loop"]["speedup"] >= 100,
        "naive_100x_bounding_box_mask": result["naive_loop"]["speedup"] >= 100,
        "spatialdata_300x": result["spatialdata_aggregate"]["speedup_labels"] >= 300,
        "zarr_bounded_memory": "error" not in zarr_out and zarr_out["map_larger_than_limit"] and zarr_out["finite"],
    }
    result["machine"]["load_average_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


def nan_case(image, centers, radii, origins, edge, circles_s: float, squares_s: float) -> dict:
    """Circles and squares on the map made NaN (in place, every channel) outside a central disc of tissue."""
    from histo2st._kernels import aggregate_circles, aggregate_squares

    size = image.shape[1]
    yy, xx = np.ogrid[0:size, 0:size]
    off = (xx + 0.5 - size / 2) ** 2 + (yy + 0.5 - size / 2) ** 2 > (0.45 * size) ** 2
    for c in range(image.shape[0]):  # one channel at a time, as the map was made
        image[c][off] = np.nan
    gb = image.nbytes / 1e9
    circles_nan_s, (sums, _) = timed(aggregate_circles, image, centers, radii)
    squares_nan_s, _ = timed(aggregate_squares, image, origins, edge)
    return {
        "nan_fraction": float(off.mean()),
        "circles": {"seconds": circles_nan_s, "GBps": gb / circles_nan_s, "time_vs_no_nan": circles_nan_s / circles_s},
        "squares": {"seconds": squares_nan_s, "GBps": gb / squares_nan_s, "time_vs_no_nan": squares_nan_s / squares_s},
        "finite": bool(np.isfinite(sums).all()),
    }


def machine(load_start) -> dict:
    """Cores, CPU model and load: the development machine is shared, so the load says how busy it was."""
    import numba

    with open("/proc/cpuinfo") as info:
        model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "unknown")
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "load_average_start": load_start,
    }


if __name__ == "__main__":
    main()
