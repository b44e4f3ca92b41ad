"""st.tl.predict into a zarr-backed whole slide: streamed blocks, background skipped, resumable, on a cluster."""

from pathlib import Path

import dask
import numpy as np
import pytest
import spatialdata as sd
import tifffile
import torch
from forward_counter import count_forwards

import histo2st as st
from histo2st._core._tissue import tissue_mask
from histo2st.model import PixNet
from histo2st.tl._predict import off_tissue_zero
from histo2st.tl._stream import PARTIAL_DIR

GENES = [f"g{i}" for i in range(10)]  # two channel chunks of 8


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> Path:
    """A 640 px OME-TIFF at 2 µm/px (and two coarser levels): a tissue disc in the middle of white glass."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:640, :640]
    tissue = (yy - 320) ** 2 + (xx - 320) ** 2 < 150**2
    image = np.full((640, 640, 3), 242, dtype=np.uint8)
    image[tissue] = np.array([200, 110, 180]) - rng.integers(0, 70, (tissue.sum(), 3))
    path = tmp_path_factory.mktemp("slide") / "slide.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tif:
        meta = {"axes": "YXS", "PhysicalSizeX": 2.0, "PhysicalSizeY": 2.0}
        tif.write(image, subifds=2, tile=(128, 128), photometric="rgb", metadata=meta)
        tif.write(image[::2, ::2], subfiletype=1, tile=(128, 128), photometric="rgb")
        tif.write(image[::4, ::4], subfiletype=1, tile=(128, 128), photometric="rgb")
    return path


def _model(seed=0) -> PixNet:
    torch.manual_seed(seed)
    return PixNet(GENES, microns_per_pixel=2.0, hidden_dim=8, pyramid_levels=3, tile_px=128)


def _backed(slide_path, store):
    sdata = st.io.read_wsi(slide_path)
    st.io.write_zarr(sdata, store)
    return sdata


def _chunk_files(store: Path, key: str, level: str = "s0") -> set[tuple[int, ...]]:
    root = store / "images" / key / level / "c"
    return {tuple(int(p) for p in f.relative_to(root).parts) for f in root.rglob("*") if f.is_file()}


def _valued_chunks(values: np.ndarray, chunk: int) -> set[tuple[int, int, int]]:
    """Chunks ``(c, y, x)`` of a ``(10, h, w)`` map (8 channels per chunk) that hold any value but the 0 off tissue."""
    out = set()
    for y in range(0, values.shape[1], chunk):
        for x in range(0, values.shape[2], chunk):
            if (values[0, y : y + chunk, x : x + chunk] != 0).any():
                out |= {(0, y // chunk, x // chunk), (1, y // chunk, x // chunk)}
    return out


def test_streams_blocks_and_writes_nothing_for_background(slide_path, tmp_path):
    store = tmp_path / "s.zarr"
    sdata = _backed(slide_path, store)
    model = _model()
    calls = count_forwards(model)
    with dask.config.set(scheduler="threads"):
        st.tl.predict(sdata, model, spot_um=(8, 16), batch_size=4)
    pred = sdata.images["pred"]
    data = pred.data
    assert data.chunks[0] == (8, 2)
    assert data.chunks[1][0] == 128
    assert list(pred.coords["c"].values) == GENES
    values = data.compute()
    assert not np.isnan(values).any()  # renders in spatialdata-plot as it is
    tissue = sdata.labels["pred_tissue"].data.compute()
    assert tissue.shape == values.shape[1:]
    assert (values[:, :64, :64] == 0).all()  # glass: never predicted
    assert (tissue[:64, :64] == 0).all()
    assert (tissue[230:410, 230:410] == 1).all()  # tissue (a square inside the disc)
    assert (values[:, tissue == 0] == 0).all()

    # only blocks with predicted tissue have chunk files; the glass around takes no disk space
    files = _chunk_files(store, "pred")
    assert files == _valued_chunks(values, 128)
    assert 8 < len(files) < 50
    assert (0, 0, 0) not in files
    assert (0, 2, 2) in files
    tiles_on_tissue = sum(calls)
    assert 0 < tiles_on_tissue < 10 * 10  # some tiles of the blocks on tissue are glass too
    assert max(calls) <= 4

    # what was streamed is what the model predicts, lazily, for the same tiles
    he = sdata["he"]["scale0"].ds["image"].data
    mask = tissue_mask(sdata["he"])
    direct = off_tissue_zero(model.predict_image(he, 2.0, tissue_mask=mask, batch_size=4), *mask).compute()
    np.testing.assert_allclose(values, direct)

    back = sd.read_zarr(store)
    assert "pred" in back.images
    assert not (store / PARTIAL_DIR).exists()
    for key in ("pred_square_8um", "pred_square_16um"):
        table = back.tables[key]
        assert table.n_obs > 0
        assert np.isfinite(table.X).all()
        np.testing.assert_allclose(table.X, sdata.tables[key].X)
    assert "pred_spots" not in back.tables  # a slide has no measured spots


def test_pyramid_levels_are_2x2_means(slide_path, tmp_path, monkeypatch):
    monkeypatch.setattr("histo2st.tl._stream.pyramid_shapes",
                        lambda shape: st.tl._pyramid.pyramid_shapes(shape, min_side=200))  # fmt: skip
    store = tmp_path / "p.zarr"
    sdata = _backed(slide_path, store)
    st.tl.predict(sdata, _model(), batch_size=4, key_added="viz")
    tree = sdata.images["viz"]
    assert [tree[k].ds["image"].shape[1:] for k in tree.children] == [(640, 640), (320, 320), (160, 160)]
    full = tree["scale0"].ds["image"].data.compute().astype(np.float32)
    half = tree["scale1"].ds["image"].data.compute().astype(np.float32)
    windows = full.reshape(len(GENES), 320, 2, 320, 2)
    np.testing.assert_allclose(half, windows.mean(axis=(2, 4)), rtol=1e-6, atol=1e-7)
    assert _chunk_files(store, "viz", "s1") == _valued_chunks(half, 128)  # background: no file
    assert len(_chunk_files(store, "viz", "s2")) == 2  # one 160 px chunk in each of the 2 channel chunks


def test_interrupted_prediction_resumes_without_recomputing(slide_path, tmp_path):
    reference = _backed(slide_path, tmp_path / "ref.zarr")
    full_calls = count_forwards(model := _model())
    st.tl.predict(reference, model, batch_size=4)

    store = tmp_path / "r.zarr"
    sdata = _backed(slide_path, store)
    model = _model()
    first = count_forwards(model, fail_after=len(full_calls) // 2)
    with dask.config.set(scheduler="synchronous"), pytest.raises(RuntimeError, match="interrupted"):
        st.tl.predict(sdata, model, batch_size=4)
    assert "pred" not in sd.read_zarr(store).images  # a half-written map never looks like a result
    assert (store / PARTIAL_DIR / "pred").is_dir()
    with pytest.raises(ValueError, match="another model"):
        st.tl.predict(sdata, _model(seed=1), batch_size=4)  # other weights cannot resume this write

    model = _model()
    second = count_forwards(model)
    with dask.config.set(scheduler="synchronous"):
        st.tl.predict(sdata, model, batch_size=4)
    # the blocks finished before the failure are not run again; only the interrupted block is run twice
    assert len(second) < len(full_calls)
    assert len(first) + len(second) - len(full_calls) < 4  # a block has at most 4 forward passes of one tile
    np.testing.assert_array_equal(sdata["pred"].data.compute(), reference["pred"].data.compute())
    assert not (store / PARTIAL_DIR).exists()


def test_same_call_on_a_distributed_cluster(slide_path, tmp_path):
    from distributed import Client, LocalCluster, get_task_stream

    sdata = _backed(slide_path, tmp_path / "cluster.zarr")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        st.tl.predict(sdata, _model(), spot_um=16, batch_size=4)
    ran = {str(task["key"]) for task in stream.data}
    assert any("predict_block" in key for key in ran)
    assert any("_store_block" in key for key in ran)
    he = sdata["he"]["scale0"].ds["image"].data
    mask = tissue_mask(sdata["he"])
    direct = off_tissue_zero(_model().predict_image(he, 2.0, tissue_mask=mask, batch_size=4), *mask)
    np.testing.assert_array_equal(sdata["pred"].data.compute(), direct.compute())
    assert np.isfinite(sdata.tables["pred_square_16um"].X).all()


@pytest.mark.slow
def test_cluster_of_processes_gets_everything_by_pickle(slide_path, tmp_path):
    from distributed import Client, LocalCluster

    sdata = _backed(slide_path, tmp_path / "proc.zarr")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        st.tl.predict(sdata, _model(), spot_um=16, batch_size=4)
    assert np.isfinite(sdata.tables["pred_square_16um"].X).all()
    assert 4 < len({(y, x) for _, y, x in _chunk_files(tmp_path / "proc.zarr", "pred")}) < 25
