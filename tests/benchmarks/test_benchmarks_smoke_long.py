"""The longest benchmark smoke tests, in a file of their own so that ``pytest -n 2 --dist loadfile`` runs them beside
the others instead of after them."""

import json
import math

import numpy as np
import pytest
from _smoke_args import TINY_PIXNET


@pytest.mark.realdata
def test_cross_resolution_check_on_mouse_olfactory_bulb(script, shared_data, monkeypatch, capsys):
    """A her2st model predicts the bulb (4.4 µm/px) upsampled to its 3 µm/px: it runs, aligns and warns."""
    monkeypatch.setenv("HISTO2ST_DATA", str(shared_data))
    argv = ["--sections", "C2", "--microns-per-pixel", "3", "--n-top", "20", "--pixnet-params", TINY_PIXNET]
    result = script("cross_resolution").main(argv)
    capsys.readouterr()

    assert sorted(result["sections"]) == ["MOB1", "MOB2"]
    for mob in result["sections"].values():
        assert 4 < mob["slide_microns_per_pixel"] < 5  # from the array's spot pitch, not from her2st
        assert any("upsampled" in w for w in mob["warnings"]), mob["warnings"]
        assert any("None of the model's 20 genes" in w for w in mob["warnings"]), mob["warnings"]
        np.testing.assert_allclose(mob["map_extent_um"], mob["he_extent_um"], atol=3.0)
        assert mob["spots_predicted"] == 1.0
        assert mob["spot_vs_map_difference"] < mob["spot_vs_shifted_map_difference"] / 5
        assert mob["shared_genes"] == 0
        assert "gene" in mob["evaluate_error"]


@pytest.mark.slow
def test_trust_calibrates_on_one_section_and_scores_another(script, capsys):
    params = json.dumps({**json.loads(TINY_PIXNET), "epochs": 1})
    argv = ["--synthetic", "500", "--sections", "S1", "S2", "S3", "--n-seeds", "2", "--max-time", "3",
            "--pixnet-params", params]  # fmt: skip
    result = script("trust").main(argv)
    capsys.readouterr()
    folds = result["folds"]
    assert [(f["test"], f["calibrated on"]) for f in folds] == [("S1", "S2"), ("S2", "S3"), ("S3", "S1")]
    for fold in folds:
        assert 0 <= fold["raw cov@80"] <= 1
        assert 0 <= fold["cal cov@80"] <= 1
        assert math.isfinite(fold["Moran's I PCC"])
        assert len(fold["std_scale"]) == 250


@pytest.mark.slow
def test_trust_multiscale_scores_coverage_at_every_scale(script, capsys):
    params = json.dumps({**json.loads(TINY_PIXNET), "crop_px": 64, "epochs": 1})
    argv = ["--height-um", "400", "--width-um", "1600", "--guard-um", "40", "--tissue-microns-per-pixel", "2",
            "--n-genes", "12", "--n-seeds", "2", "--max-time", "3", "--pixnet-params", params]  # fmt: skip
    result = script("trust_multiscale").main(argv)
    capsys.readouterr()
    scales = [(row["scale"], row["against"]) for row in result["rows"]]
    assert scales == [("55 µm spots", "truth"), ("55 µm spots", "measured"), ("2 µm bins", "truth"),
                      ("8 µm bins", "truth"), ("16 µm bins", "truth")]  # fmt: skip
    assert all(0 <= row["cal cov@80"] <= 1 and row["n"] > 0 for row in result["rows"])
    assert result["downstream"]["bin_um"] == 8


@pytest.mark.slow
def test_cohort_runs_both_cluster_sizes_and_a_kill(script, tmp_path, capsys):
    argv = ["--slides", "2", "--size", "3000", "--hidden-dim", "8", "--tile-px", "128", "--genes", "6"]
    result = script("cohort").main([*argv, "--workdir", str(tmp_path), "--out", str(tmp_path / "out")])
    capsys.readouterr()
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == result
    for workers in (1, 2):
        run = result[f"workers_{workers}"]
        assert run["slides_done"] == 2
        assert len(run["peak_rss_gb_per_worker"]) == workers
    assert result["scaling_efficiency"] > 0
    kill = result["kill_and_resume"]
    # a small slide may finish before the kill lands; otherwise nothing recorded is lost
    assert "error" in kill or kill["blocks_found_done_on_resume"] >= kill["blocks_recorded_at_kill"]


@pytest.mark.slow
@pytest.mark.realdata
def test_training_memory_reports_each_count(script, shared_data, capsys):
    argv = ["--root", str(shared_data), "--sections", "1", "2", "--max-time", "2", "--batches", "2"]
    result = script("training_memory").main(argv)
    capsys.readouterr()
    first, second = result["rows"]
    assert (first["sections"], second["sections"]) == (1, 2)
    assert 0 < first["data_share"] < 1
    assert first["peak_rss_gb"] >= first["rss_after_loading_gb"] > 0
    assert second["peak_ratio_to_first"] == pytest.approx(second["peak_rss_gb"] / first["peak_rss_gb"])
