"""st.tl.predict_cohort: a store per slide, one cohort table, failures recorded, finished slides never redone."""

import json

import anndata
import numpy as np
import pytest
import spatialdata as sd
import tifffile
import torch
from forward_counter import count_forwards

import histo2st as st
from histo2st.model import PixNet

GENES = [f"g{i}" for i in range(5)]


def _slide(path, seed: int):
    """A 384 px OME-TIFF at 2 µm/px: a tissue disc on white glass."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:384, :384]
    tissue = (yy - 192) ** 2 + (xx - 192) ** 2 < (100 + 20 * seed) ** 2
    image = np.full((384, 384, 3), 242, dtype=np.uint8)
    image[tissue] = np.array([200, 110, 180]) - rng.integers(0, 70, (tissue.sum(), 3))
    tifffile.imwrite(path, image, ome=True, tile=(128, 128), photometric="rgb",
                     metadata={"axes": "YXS", "PhysicalSizeX": 2.0, "PhysicalSizeY": 2.0})  # fmt: skip
    return path


@pytest.fixture
def cohort(tmp_path):
    slides = [_slide(tmp_path / "a.ome.tif", 0), _slide(tmp_path / "b.ome.tif", 1), tmp_path / "broken.tif"]
    slides[-1].write_bytes(b"not a tiff")
    torch.manual_seed(0)
    return slides, PixNet(GENES, microns_per_pixel=4.0, hidden_dim=8, pyramid_levels=3, tile_px=64)


def test_each_slide_gets_a_store_and_a_row_and_a_failure_is_recorded(cohort, tmp_path):
    slides, model = cohort
    out = tmp_path / "out"
    table = st.tl.predict_cohort(slides, model, out, spot_um=16, progress=False)
    assert list(table.obs_names) == ["a", "b"]
    assert list(table.var_names) == GENES
    assert np.isfinite(table.X).all()
    assert table.obs.loc["b", "tissue_pixels"] > table.obs.loc["a", "tissue_pixels"]  # the larger disc
    assert "broken" in table.uns["histo2st"]["predict_cohort"]["failed"]
    manifest = json.loads((out / "cohort.json").read_text())
    assert {n: r["status"] for n, r in manifest.items()} == {"a": "done", "b": "done", "broken": "failed"}
    stored = sd.read_zarr(out / "a.zarr")
    assert {"pred", "pred_tissue", "pred_square_16um"} <= set(stored.images) | set(stored.labels) | set(stored.tables)
    mean = stored.tables["pred_square_16um"].X.mean(0)
    np.testing.assert_allclose(table["a"].X.ravel(), mean, rtol=0.1)  # a slide's mean is its bins' mean
    back = anndata.read_h5ad(out / "cohort.h5ad")
    np.testing.assert_array_equal(back.X, table.X)


def test_a_rerun_redoes_no_finished_slide(cohort, tmp_path):
    slides, model = cohort
    out = tmp_path / "out"
    st.tl.predict_cohort(slides, model, out, progress=False)
    calls = count_forwards(model)
    _slide(slides[-1], 2)  # the broken file is replaced by a readable slide
    table = st.tl.predict_cohort(slides, model, out, progress=False)
    assert list(table.obs_names) == ["a", "b", "broken"]
    assert table.uns["histo2st"]["predict_cohort"]["failed"] == {}
    done_before = len(calls)
    st.tl.predict_cohort(slides, model, out, progress=False)
    assert len(calls) == done_before > 0  # only the repaired slide ran; a third run runs nothing


def test_a_distributed_client_runs_the_blocks(cohort, tmp_path):
    distributed = pytest.importorskip("distributed")
    slides, model = cohort
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        table = st.tl.predict_cohort(slides[:1], model, tmp_path / "out", client=client, progress=False)
    assert table.n_obs == 1


def test_the_command_line_exits_1_naming_the_failed_slide(cohort, tmp_path, capsys):
    from histo2st.cli import main

    slides, model = cohort
    model.save(tmp_path / "model")
    code = main(["predict-cohort", *map(str, slides), "--model", str(tmp_path / "model"), "--out", str(tmp_path / "o")])
    assert code == 1
    captured = capsys.readouterr()
    assert "2 of 3 slides predicted" in captured.out
    assert "broken: TiffFileError" in captured.err
