"""The model benchmarks run end to end at tiny settings on synthetic data (their numbers are not checked, only sane)."""

import json
import math

import numpy as np
import pytest
from _smoke_args import TINY_PIXNET

import histo2st as st

TINY_THITOGENE = (
    '{"patch_px": 48, "caps": 4, "route_dim": 8, "depth": 1, "heads": 2, "mlp_dim": 32, "gat_heads": 2, '
    '"gat_hidden": 16, "gat_out": 8, "head_hidden": 16, "n_pos": 16, "max_direct_spots": 500}'
)
TINY_MODELS = [
    "--epochs", "1", "--max-time", "1", "--validation", "0.2", "--microns-per-pixel", "4",
    "--pixnet-params", TINY_PIXNET, "--thitogene-microns-per-pixel", "2", "--thitogene-params", TINY_THITOGENE,
]  # fmt: skip
HER2ST_SYNTHETIC = ["--synthetic", "400", "--train", "S1", "--test", "S2", "--n-clusters", "3"]
SMALL_TISSUE = ["--height-um", "300", "--width-um", "600", "--tissue-microns-per-pixel", "2", "--n-genes", "8"]


def test_her2st_ridge_writes_protocol_and_results(script, tmp_path, capsys):
    out = tmp_path / "run"
    result = script("her2st").main([*HER2ST_SYNTHETIC, "--models", "ridge", "--out", str(out)])

    assert json.loads(capsys.readouterr().out) == result
    (fold,) = result["folds"]
    assert (fold["train"], fold["test"], fold["n_genes"]) == (["S1"], ["S2"], 250)
    ridge = fold["models"]["ridge"]
    section, pooled = ridge["rows"]
    assert (section["section"], section["scope"], pooled["scope"]) == ("S2", "section", "pooled")
    assert section["n_genes"] == 250
    assert section["n_spots"] > 3
    assert all(math.isfinite(section[m]) for m in ("MSE", "MAE", "PCC@M", "PCC@S", "PCC@F", "ARI", "spread"))
    assert section["PCC@F"] <= section["PCC@S"]
    assert section["spread"] > 0
    assert 0 < section["PCC@M ceiling"] <= 1  # how far a model could go on the test spots
    assert section["PCC@M / ceiling"] == pytest.approx(section["PCC@M"] / section["PCC@M ceiling"])
    assert 0 < ridge["rss_after_load_gb"] <= ridge["peak_rss_gb"]
    assert ridge["alpha"] > 0
    assert ridge["patch_um"] == 55.0
    assert len(ridge["top_genes"]["S2"]) == 10
    ranks = [g["neg_log10_pvalue"] for g in ridge["top_genes"]["S2"]]
    assert ranks == sorted(ranks, reverse=True)
    assert result["summary"]["ridge"]["PCC@M_mean"] == section["PCC@M"]

    protocol = st.tl.Protocol.read(out)
    assert protocol.name == "pixnet_top250"
    assert protocol.folds == [(["S1"], ["S2"])]
    assert len(protocol.genes) == 250
    assert json.loads((out / "results.json").read_text()) == result
    table = (out / "results.md").read_text()
    assert "| ridge | 1 |" in table
    assert "Top 10 genes" in table
    assert (out / "results.csv").read_text().count("\n") == 3  # header, section, pooled
    with pytest.raises(SystemExit, match="already exists"):
        script("her2st").main([*HER2ST_SYNTHETIC, "--models", "ridge", "--out", str(out)])


def test_multiscale_ridge_scores_every_scale(script, tmp_path, capsys):
    result = script("multiscale").main(
        [*SMALL_TISSUE, "--context", "1", "--models", "ridge", "--out", str(tmp_path / "ms")]
    )

    capsys.readouterr()
    rows = {row["scale"]: row for row in result["results"] if row["model"] == "ridge"}
    assert list(rows) == ["55 µm spots", "2 µm bins", "8 µm bins", "16 µm bins"]
    assert rows["2 µm bins"]["n"] > rows["8 µm bins"]["n"] > rows["16 µm bins"]["n"] > 0
    for scale, row in rows.items():
        assert math.isfinite(row["PCC@M"])
        assert math.isfinite(row["MSE"])
        assert row["spread"] > 0
        assert (row["SSIM"] is None) == (scale == "55 µm spots")
        assert (row["ARI"] is None) == (scale != "55 µm spots")
    ridge = result["models"]["ridge"]
    assert ridge["n_train_spots"] > 3
    assert ridge["peak_rss_gb"] > 0
    assert result["dense_map"] == {}
    assert "| ridge | 2 µm bins |" in (tmp_path / "ms" / "results.md").read_text()
    references = {(row["model"], row["scale"]): row for row in result["results"] if row["model"] != "ridge"}
    kinds = {"truth over a spot", "cell type only", "cell type only, over a spot"}
    assert {model for model, _ in references} == {f"reference: {kind}" for kind in kinds}
    assert {scale for _, scale in references} == set(rows)
    # the spot table's truth is the sum over the spot's disc, nearly the square around it
    assert references[("reference: truth over a spot", "55 µm spots")]["PCC@M"] > 0.9
    # pointwise, the cell types alone beat any one value per spot at 2 µm
    assert (
        references[("reference: cell type only", "2 µm bins")]["PCC@M"]
        > references[("reference: cell type only, over a spot", "2 µm bins")]["PCC@M"]
    )


@pytest.mark.slow
def test_every_model_in_one_run(script, tmp_path, capsys):
    her2st = script("her2st").main(
        [*HER2ST_SYNTHETIC, *TINY_MODELS, "--tta", "1", "2", "--mix", "pixnet,thitogene+tta2"]
    )
    multiscale = script("multiscale").main([*SMALL_TISSUE, *TINY_MODELS, "--n-clusters", "3"])
    capsys.readouterr()

    models = her2st["folds"][0]["models"]
    mix = "mean(pixnet,thitogene+tta2)"
    assert list(models) == ["pixnet", "pixnet+tta2", "thitogene", "thitogene+tta2", "ridge", mix]
    for name in ("pixnet", "thitogene", "thitogene+tta2"):
        assert models[name]["epochs"] == [1]  # per member
        assert models[name]["rows"][0]["n_genes"] == 250
    assert [models[name]["tta"] for name in ("pixnet", "pixnet+tta2")] == [1, 2]
    assert models["pixnet+tta2"]["train_seconds"] == models["pixnet"]["train_seconds"]  # one model, two predictions
    assert models[mix]["members"] == ["pixnet", "thitogene+tta2"]
    assert models[mix]["rows"][0]["n_spots"] == models["pixnet"]["rows"][0]["n_spots"]
    assert math.isfinite(models[mix]["rows"][0]["PCC@M"])
    assert "predictions" not in models["pixnet"]
    assert models["pixnet"]["hyperparameters"]["hidden_dim"] == 8
    names = {row["model"] for row in multiscale["results"]}
    assert "reference: cell type only" in names  # the default tissue's expression depends on context
    assert {name for name in names if not name.startswith("reference:")} == {"pixnet", "thitogene", "ridge"}
    n = {(row["model"], row["scale"]): row["n"] for row in multiscale["results"]}
    assert n[("pixnet", "8 µm bins")] == n[("thitogene", "8 µm bins")] == n[("ridge", "8 µm bins")] > 0
    assert sorted(multiscale["dense_map"]) == ["pixnet", "thitogene"]
    assert [row["bin_um"] for row in multiscale["dense_map"]["pixnet"]] == [2, 8, 16]


@pytest.mark.slow
def test_her2st_mixed_ensemble_as_the_product_builds_it(script, capsys):
    mixed = ["--models", "pixnet+thitogene", "--preset", "cpu", "--mixed-params", '{"epochs": 1, "max_time": 2}']
    result = script("her2st").main([*HER2ST_SYNTHETIC, "--validation", "0.2", *mixed])
    capsys.readouterr()
    model = result["folds"][0]["models"]["pixnet+thitogene"]
    assert model["epochs"] == [1, 1]  # one per member
    assert [m["model"] for m in model["hyperparameters"]["members"]] == ["pixnet", "thitogene"]
    assert model["microns_per_pixel"] == pytest.approx(0.69)  # the finest member's: THItoGene's
    assert math.isfinite(model["rows"][0]["PCC@M"])
    with pytest.raises(SystemExit, match="--preset"):
        script("her2st").main([*HER2ST_SYNTHETIC, "--models", "pixnet+thitogene"])


def test_her2st_seed_ensemble_records_every_member(script, capsys):
    ensemble = json.dumps({**json.loads(TINY_PIXNET), "n_seeds": 2})
    tiny = [*TINY_MODELS[: TINY_MODELS.index("--pixnet-params")], "--pixnet-params", ensemble]
    result = script("her2st").main([*HER2ST_SYNTHETIC, *tiny, "--models", "pixnet"])
    capsys.readouterr()
    pixnet = result["folds"][0]["models"]["pixnet"]
    assert pixnet["epochs"] == [1, 1]
    assert len(pixnet["val_pcc_per_epoch"]) == 2
    assert np.isfinite(pixnet["rows"][0]["PCC@M"])


@pytest.mark.slow
def test_her2st_pretraining_study_pretrains_once_per_slide_set(script, tmp_path, capsys):
    out = tmp_path / "study"
    tiny_ssl = ["--pretrain-epochs", "1", "--pretrain-tile-px", "32", "--pretrain-batch-size", "4"]
    argv = [*HER2ST_SYNTHETIC, *TINY_MODELS, "--models", "pixnet", *tiny_ssl, "--pretrain-steps-per-epoch", "2"]
    result = script("her2st").main([*argv, "--pretrain", "none", "train", "all", "--out", str(out)])
    capsys.readouterr()

    models = result["folds"][0]["models"]
    assert list(models) == ["pixnet", "pixnet+ssl_train", "pixnet+ssl_all"]
    train, every = models["pixnet+ssl_train"]["pretraining"], models["pixnet+ssl_all"]["pretraining"]
    assert (train["slides"], train["transductive"]) == (["S1"], False)
    assert (every["slides"], every["transductive"]) == (["S1", "S2"], True)
    assert models["pixnet+ssl_train"]["hyperparameters"]["encoder_weights"] == train["path"]
    assert models["pixnet"]["hyperparameters"].get("encoder_weights") is None
    assert train["seconds"] > 0
    assert train["peak_rss_gb"] > 0
    assert result["summary"]["pixnet+ssl_all"]["transductive"] is True
    assert "transductive" not in result["summary"]["pixnet"]
    partial = json.loads(out.with_name("study.partial.json").read_text())
    assert list(partial[0]["models"]) == list(models)

    # the encoders are reused, not pretrained again, by a second study over the same slides
    again = script("her2st").main(
        [
            *argv,
            "--pretrain",
            "train",
            "--out",
            str(tmp_path / "again"),
            "--pretrain-dir",
            str(tmp_path / "study_encoders"),
        ]
    )
    capsys.readouterr()
    assert again["folds"][0]["models"]["pixnet+ssl_train"]["pretraining"]["seconds"] == train["seconds"]


def test_encoder_probe_scores_a_frozen_encoder_per_fold(script, tmp_path, capsys):
    argv = ["--synthetic", "400", "--sections", "S1", "S2", "--patch-px", "32"]
    result = script("encoder_probe").main(argv)
    assert json.loads(capsys.readouterr().out) == result
    assert [(row["arm"], row["test"], row["train"]) for row in result["rows"]] == [
        ("random", "S1", ["S2"]),
        ("random", "S2", ["S1"]),
    ]
    assert all(-1 <= row["PCC@M"] <= 1 and row["alpha"] > 0 for row in result["rows"])
    assert result["summary"]["random"]["PCC@M_mean"] == pytest.approx(np.mean([r["PCC@M"] for r in result["rows"]]))
    with pytest.raises(SystemExit, match="pretrain it with benchmarks/her2st.py"):
        script("encoder_probe").main([*argv, "--arms", "train", "--pretrain-dir", str(tmp_path)])


def test_thitogene_layers_reports_every_layer(script, capsys):
    params = json.dumps({**json.loads(TINY_THITOGENE), "microns_per_pixel": 2.0, "windows_per_epoch": 2})
    argv = ["--synthetic", "400", "--train", "S1", "--test", "S2", "--max-time", "2", "--params", params]
    result = script("thitogene_layers").main(argv)
    assert json.loads(capsys.readouterr().out) == result
    layers = result["layers"]
    assert list(layers)[:4] == ["odconv", "capsules", "vit_input_norm", "vit_layer0"]
    assert list(layers)[-1] == "head_out"
    assert all(row["spread"] >= 0 and row["magnitude"] > 0 for row in layers.values())
    assert 0 <= layers["head_relu"]["dead_units"] <= 1
    assert result["steps"] >= 2
    assert result["prediction_spread_ratio"] >= 0


def test_encoder_probe_takes_a_vit_from_a_hub_directory(script, tmp_path, capsys):
    import timm
    import torch
    from safetensors.torch import save_file

    args = {"depth": 1, "embed_dim": 48, "num_heads": 2}
    torch.manual_seed(0)
    trunk = timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0, **args)
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text(
        json.dumps({"architecture": "vit_small_patch16_224", "model_args": args})
    )
    save_file(trunk.state_dict(), tmp_path / "vit" / "model.safetensors")
    argv = ["--synthetic", "400", "--sections", "S1", "S2", "--patch-px", "32", "--arms", "random", "given"]
    result = script("encoder_probe").main([*argv, "--encoder", str(tmp_path / "vit")])
    capsys.readouterr()
    given = [row for row in result["rows"] if row["arm"] == "given"]
    assert [row["encoder"]["source"] for row in given] == [str(tmp_path / "vit")] * 2
    assert {row["encoder"]["architecture"] for row in result["rows"]} == {"vit_small_patch16_224"}
    assert result["rows"][0]["encoder"]["source"] == "random initialization"
    assert all(-1 <= row["PCC@M"] <= 1 for row in result["rows"])


def test_feature_cache_times_both_plans(script, capsys):
    argv = ["--synthetic", "500", "--microns-per-pixel", "4", "--crop-px", "64", "--batch-size", "2"]
    model = ["--encoder-args", '{"depth": 1, "embed_dim": 32, "num_heads": 2}', "--hidden-dim", "8"]
    result = script("feature_cache").main([*argv, *model, "--steps", "1", "--warmup", "0"])
    capsys.readouterr()
    assert result["cache_seconds"] > 0
    assert result["speedup"] == pytest.approx(
        result["seconds_per_step_without_cache"] / result["seconds_per_step_with_cache"]
    )


def test_pretrain_speed_times_both_precisions(script, capsys):
    argv = ["--synthetic", "600", "--microns-per-pixel", "2", "--tile-px", "32", "--batch-size", "4"]
    result = script("pretrain_speed").main([*argv, "--steps", "1", "--warmup", "0"])
    capsys.readouterr()
    assert result["seconds_per_step_float32"] > 0
    assert result["seconds_per_step_bfloat16"] > 0
    assert result["speedup_bfloat16"] == pytest.approx(
        result["seconds_per_step_float32"] / result["seconds_per_step_bfloat16"]
    )


def test_her2st_limits_on_two_real_sections(script, shared_data, tmp_path, capsys):
    out = tmp_path / "limits.json"
    result = script("her2st_limits").main(["--root", str(shared_data), "--sections", "C2", "C3", "--out", str(out)])
    capsys.readouterr()
    assert json.loads(out.read_text()) == result
    assert [fold["test"] for fold in result["folds"]] == ["C2", "C3"]
    for fold in result["folds"]:
        # the measurement allows far more than either reference reaches
        assert 0.3 < fold["ceiling"] <= 1
        assert fold["neighbours"] < fold["ceiling"]
        assert -1 < fold["ridge, 1 sections"] < fold["ceiling"]
        assert len(fold["ridge, 1 sections, each set"]) == 1
        assert fold["training spots, 1 sections"] > 100


def test_thitogene_positions_scores_each_moved_grid(script, capsys):
    params = json.dumps({**json.loads(TINY_THITOGENE), "microns_per_pixel": 2.0, "augment_positions": True})
    argv = ["--synthetic", "400", "--train", "S1", "--test", "S2", "--max-time", "2", "--params", params]
    result = script("thitogene_positions").main(argv)
    assert json.loads(capsys.readouterr().out) == result
    scores = result["test_pcc_m"]
    assert list(scores) == ["as_is", "shifted_5", "mirrored_x", "transposed", "zeros", "permuted"]
    assert all(-1 <= v <= 1 for v in scores.values())
    assert result["epochs"] >= 1
    assert result["train_seconds"] > 0


def test_moved_grids_keep_the_spots_and_move_their_positions(script):
    grid = np.array([[0, 0], [1, 0], [3, 2]])
    moved = script("thitogene_positions").moved_grids(grid, seed=0)
    np.testing.assert_array_equal(moved["shifted_5"], grid + 5)
    np.testing.assert_array_equal(moved["mirrored_x"], [[3, 0], [2, 0], [0, 2]])
    np.testing.assert_array_equal(moved["transposed"], [[0, 0], [0, 1], [2, 3]])
    assert not moved["zeros"].any()
    assert sorted(map(tuple, moved["permuted"])) == sorted(map(tuple, grid))
