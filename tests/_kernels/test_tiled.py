import dask.array as da
import numpy as np
import pytest
import zarr
from aggregation_reference import circles as circles_reference
from aggregation_reference import labels as labels_reference
from aggregation_reference import nan_blobs
from aggregation_reference import squares as squares_reference
from hypothesis import given, settings
from hypothesis import strategies as st

from histo2st._kernels import aggregate_circles, aggregate_labels, aggregate_squares, square_spans
from histo2st.tl import aggregate_array


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(3)
    image = rng.random((11, 90, 70)).astype(np.float16)
    centers = np.column_stack([rng.uniform(-2, 72, 60), rng.uniform(-2, 92, 60)])  # some cut by the edge
    radii = rng.uniform(3, 25, 60)
    origins = rng.uniform(-3, 65, (40, 2))
    labels = rng.integers(0, 9, (90, 70))
    return image, centers, radii, origins, labels


def _zarr(image, chunks=(4, 16, 32)):
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=chunks, dtype=image.dtype)
    z[:] = image
    return z


@pytest.mark.parametrize("kind", ["numpy", "zarr", "dask"])
def test_tile_by_tile_equals_in_memory(case, kind):
    image, centers, radii, origins, labels = case
    data = {"numpy": image, "zarr": _zarr(image), "dask": da.from_array(image, chunks=(4, 25, 30))}[kind]
    circles = aggregate_array(data, centers=centers, radii=radii, agg="sum", tile_bytes=4000)
    np.testing.assert_allclose(circles.values, aggregate_circles(image, centers, radii)[0], rtol=1e-12, atol=1e-12)
    squares = aggregate_array(data, origins=origins, size=6.5, agg="mean", tile_bytes=4000)
    expected = aggregate_squares(image, origins, 6.5, agg="mean")[0]
    np.testing.assert_allclose(squares.values, expected, rtol=1e-12, atol=1e-12)
    regions = aggregate_array(data, labels=labels, agg="mean", tile_bytes=4000)
    ids, means, _ = aggregate_labels(image, labels, agg="mean")
    np.testing.assert_array_equal(regions.ids, ids)
    np.testing.assert_allclose(regions.values, means, rtol=1e-12)


def test_edge_rules(case):
    image = case[0]
    centers = np.array([[0.0, 0.0], [35.0, 45.0], [69.0, 89.0]])
    out = aggregate_array(image, centers=centers, radii=[6.0, 6.0, 6.0])
    assert out.clipped.tolist() == [True, False, True]
    sums, counts = aggregate_circles(image, centers, [6.0, 6.0, 6.0])
    np.testing.assert_allclose(out.values, sums / counts[:, None])  # clipped: mean over the covered pixels
    with pytest.raises(ValueError, match=r"2 spots lie entirely outside.*\[1, 2\]"):
        aggregate_array(image, centers=[[10.0, 10.0], [-50.0, 10.0], [10.0, 200.0]], radii=[3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="outside"):
        aggregate_array(image, origins=[[70.0, 0.0]], size=4.0)
    with pytest.raises(ValueError, match="exactly one"):
        aggregate_array(image, centers=centers, radii=[1.0] * 3, labels=case[4])


def test_dask_under_distributed_client(case):
    distributed = pytest.importorskip("distributed")
    image, centers, radii, origins, _ = case
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        out = aggregate_array(da.from_array(image, chunks=(6, 30, 35)), centers=centers, radii=radii, agg="sum")
    np.testing.assert_allclose(out.values, aggregate_circles(image, centers, radii)[0], rtol=1e-12)


@settings(max_examples=20, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    n_channels=st.sampled_from([1, 3, 10]),
    chunks=st.tuples(st.integers(1, 4), st.integers(4, 16), st.integers(4, 16)),
    size=st.sampled_from([0.3, 0.5, 1.0, 2.5, 7.0]),
    kind=st.sampled_from(["zarr", "dask"]),
    seed=st.integers(0, 2**16),
    n_blobs=st.integers(0, 3),
)
def test_tiled_and_dask_paths_with_nan_match_brute_force(height, width, n_channels, chunks, size, kind, seed, n_blobs):
    rng = np.random.default_rng(seed)
    image = nan_blobs(rng.normal(size=(n_channels, height, width)).astype(np.float32), seed, n_blobs)
    data = _zarr(image, chunks) if kind == "zarr" else da.from_array(image, chunks=chunks)
    tile_bytes = int(rng.integers(1, 4 * n_channels * width * height + 1))  # from one chunk's rows to the whole map
    centers = rng.uniform(0, 1, (8, 2)) * [width, height]
    radii = rng.uniform(0, 12, 8)
    circles = aggregate_array(data, centers=centers, radii=radii, agg="sum", tile_bytes=tile_bytes)
    ref_sums, ref_counts = circles_reference(image, centers, radii)
    np.testing.assert_array_equal(circles.area, ref_counts)
    np.testing.assert_allclose(circles.values, ref_sums, rtol=1e-9, atol=1e-9)
    origins = rng.uniform(0, 1, (8, 2)) * [width, height] - size / 2  # every square overlaps the map
    squares = aggregate_array(data, origins=origins, size=size, agg="mean", tile_bytes=tile_bytes)
    ref_sums, ref_areas = squares_reference(image, origins, np.full(8, size))
    np.testing.assert_allclose(squares.area, ref_areas, rtol=1e-12, atol=1e-12)
    assert (np.isnan(squares.values).all(axis=1) == (ref_areas == 0)).all()
    valued = ref_areas > 0
    np.testing.assert_allclose(squares.values[valued], ref_sums[valued] / ref_areas[valued, None], rtol=1e-9)
    labels = rng.integers(0, 6, (height, width))
    regions = aggregate_array(data, labels=labels, agg="sum", tile_bytes=tile_bytes)
    ref_ids, ref_sums, ref_counts = labels_reference(image, labels)
    np.testing.assert_array_equal(regions.ids, ref_ids)
    np.testing.assert_array_equal(regions.area, ref_counts)
    np.testing.assert_allclose(regions.values, ref_sums, rtol=1e-9, atol=1e-9)


def test_unwritten_zarr_chunks_are_pixels_without_a_value(case):
    # a whole-slide prediction leaves background chunks unwritten; with fill value NaN they read as NaN
    image, centers, radii, origins, labels = case
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(4, 16, 32), dtype=image.dtype,
                          fill_value=np.nan)  # fmt: skip
    z[:, :48, :32] = image[:, :48, :32]
    written = np.full_like(image, np.nan)
    written[:, :48, :32] = image[:, :48, :32]
    for data in (z, da.from_zarr(z)):
        out = aggregate_array(data, centers=centers, radii=radii, agg="mean", tile_bytes=4000)
        ref_sums, ref_counts = circles_reference(written, centers, radii)
        np.testing.assert_array_equal(out.area, ref_counts)
        assert (np.isnan(out.values).all(axis=1) == (ref_counts == 0)).all()
        assert 0 < (ref_counts == 0).sum() < len(ref_counts)
        valued = ref_counts > 0
        np.testing.assert_allclose(out.values[valued], ref_sums[valued] / ref_counts[valued, None], rtol=1e-9)


def test_map_without_nan_reports_the_spans_own_area(case):
    # no tile has a NaN: the area is the spans' own, bit for bit, on every path (not a sum over tiles)
    image, centers, radii, origins, _ = case
    spans = square_spans(origins, 6.3, image.shape[1], image.shape[2])
    for data in (image, _zarr(image), da.from_array(image, chunks=(4, 25, 30))):
        out = aggregate_array(data, origins=origins, size=6.3, tile_bytes=4000)
        np.testing.assert_array_equal(out.area, spans.area)
