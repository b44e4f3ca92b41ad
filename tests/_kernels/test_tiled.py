import dask.array as da
import numpy as np
import pytest
import zarr

from histo2st._kernels import aggregate_circles, aggregate_labels, aggregate_squares
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


def _zarr(image):
    z = zarr.create_array(store=zarr.storage.MemoryStore(), shape=image.shape, chunks=(4, 16, 32), dtype=image.dtype)
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
