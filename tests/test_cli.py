import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import histo2st as st
from histo2st._cli.config import ConfigError, check_keys, load_config, merge_options
from histo2st.cli import COMMANDS, build_parser, main, resolve


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A 600 µm synthetic tissue at 2 µm/px with 8 genes, raw counts, written with st.io.write_zarr."""
    sdata = st.datasets.synthetic_tissue(size_um=600, microns_per_pixel=2.0, n_genes=8)
    return st.io.write_zarr(sdata, tmp_path_factory.mktemp("cli") / "sample.zarr")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help_with_common_options(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"usage: histo2st {command}" in out
    for option in ("--config", "--quiet", "--verbose"):
        assert option in out


def test_entry_point_help_lists_the_subcommands():
    script = Path(sys.executable).with_name("histo2st")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_merge_options_flags_over_config_over_defaults():
    defaults = {"epochs": 30, "max_time": None, "seed": None, "model": "pixnet"}
    config = {"epochs": 5, "max-time": 60.0}
    flags = {"epochs": 1}
    assert merge_options(defaults, config, flags) == {"epochs": 1, "max_time": 60.0, "seed": None, "model": "pixnet"}


def test_check_keys_names_unknown_options():
    with pytest.raises(ConfigError, match="unknown option.*epoch\\b.*Valid keys: epochs"):
        check_keys({"epoch": 3}, {"epochs"}, "config file 'x.toml'")


def test_toml_and_yaml_configs_read_the_same(tmp_path, monkeypatch):
    (tmp_path / "c.toml").write_text('max-time = 60.0\nsections = ["C2", "C3"]\n[model]\nhidden-dim = 8\n')
    (tmp_path / "c.yaml").write_text("max_time: 60.0\nsections: [C2, C3]\nmodel:\n  hidden_dim: 8\n")
    expected = {"max_time": 60.0, "sections": ["C2", "C3"], "model": {"hidden_dim": 8}}
    assert load_config(tmp_path / "c.toml") == expected
    assert load_config(tmp_path / "c.yaml") == expected
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    with pytest.raises(ConfigError, match="pip install pyyaml"):
        load_config(tmp_path / "c.yaml")


def test_model_table_gives_hyperparameters_and_its_name_yields_to_the_flag(tmp_path):
    config = tmp_path / "fit.toml"
    config.write_text('epochs = 5\n[model]\nname = "thitogene"\nhidden-dim = 8\n')
    _, parsers = build_parser()
    opts = resolve(COMMANDS["fit"], parsers["fit"], {"config": config})
    assert (opts.model, opts.epochs, opts.hyperparameters, opts.n_top) == ("thitogene", 5, {"hidden_dim": 8}, 250)
    opts = resolve(COMMANDS["fit"], parsers["fit"], {"config": config, "model": "pixnet", "epochs": 1})
    assert (opts.model, opts.epochs) == ("pixnet", 1)


@pytest.mark.parametrize(
    "argv",
    [[], ["nope"], ["fit", "--epochs", "many"], ["predict", "--shape", "hexagon"], ["info"], ["evaluate"]],
)
def test_bad_usage_exits_2(argv, capsys):
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_bad_config_exits_2(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("epoch = 3\n")
    assert main(["fit", "--config", str(tmp_path / "c.toml")]) == 2
    assert "unknown option(s) epoch" in capsys.readouterr().err
    (tmp_path / "d.toml").write_text('epochs = "many"\n')
    assert main(["fit", "--config", str(tmp_path / "d.toml")]) == 2
    assert "invalid int value: 'many'" in capsys.readouterr().err
    assert main(["info", "--config", str(tmp_path / "missing.toml")]) == 2


def test_missing_store_exits_1_with_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.zarr"
    assert main(["info", str(missing)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == f"histo2st info: error: '{missing}' not found."
    assert main(["predict", str(missing), "--model", str(tmp_path), "--verbose"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("histo2st predict: error:")


def test_info_reports_a_damaged_model_and_exits_1_with_one_line(tmp_path, tiny_pixnet, capsys):
    from histo2st.model import PixNet

    path = PixNet(["GENE00"], microns_per_pixel=4.0, **tiny_pixnet).save(tmp_path / "m")
    assert main(["info", str(path)]) == 0
    assert "integrity: weights match their sha256 in the card" in capsys.readouterr().out

    weights = path / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-1] + b"x")
    assert main(["info", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "integrity: damaged: " in out
    assert "model: pixnet" in out  # the card is still described
    assert err.count("\n") == 1
    assert err.startswith(f"histo2st info: error: '{weights}' does not match the sha256 recorded in its card.json")

    (path / "card.json").write_text("{")
    assert main(["info", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"histo2st info: error: '{path / 'card.json'}' is not valid JSON")


def test_info_prints_genes_and_scale(store, capsys):
    assert main(["info", str(store)]) == 0
    out = capsys.readouterr().out
    genes = [f"GENE{i:02d}" for i in range(8)]
    assert f"genes (8, table table): {', '.join(genes)}" in out
    assert "scale: 2 µm per pixel" in out
    assert "image he: (c, y, x) 3 × 300 × 300 uint8" in out

    assert main(["info", str(store), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["genes"] == genes
    assert info["scale"]["microns_per_pixel"] == 2.0
    assert info["tables"]["table"]["n_obs"] == info["shapes"]["spots"]["n"]
    assert info["images"]["truth"]["channels"] == genes


def test_pretrain_then_fit_from_the_encoder(store, tmp_path, tiny_pixnet, capsys):
    encoder = tmp_path / "ssl" / "encoder.pt"
    flags = ["--microns-per-pixel", "4", "--tile-px", "32", "--batch-size", "4", "--steps-per-epoch", "2", "-q"]
    assert main(["pretrain", str(store), "--out", str(encoder), "--epochs", "1", *flags]) == 0
    card = json.loads(encoder.with_suffix(".json").read_text())
    assert (card["epochs_run"], card["steps_run"], card["microns_per_pixel"]) == (1, 2, 4.0)
    assert card["slides"] == ["synthetic"]
    assert main(["pretrain", str(store), "--out", str(encoder), *flags]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["pretrain", "--out", str(encoder)]) == 2

    config = tmp_path / "fit.toml"
    tiny = {**tiny_pixnet, "pyramid_levels": 5}  # the whole encoder, as pretrained
    model_table = "\n".join(f"{key} = {value}" for key, value in tiny.items())
    config.write_text(f'n-top = 4\nmicrons_per_pixel = 4.0\n[model]\nencoder_weights = "{encoder}"\n{model_table}\n')
    model_dir = tmp_path / "model"
    fit = ["fit", str(store), "--config", str(config), "--out", str(model_dir), "--epochs", "1"]
    fit += ["--key-added", "from_encoder"]
    assert main([*fit, "-q"]) == 0
    pretraining = json.loads((model_dir / "card.json").read_text())["encoder"]["weights"]["pretraining"]
    assert pretraining["slides"] == ["synthetic"]
    assert "transductive" in pretraining["transductive"]


def test_fit_predict_info_end_to_end(store, tmp_path, tiny_pixnet, capsys):
    config = tmp_path / "fit.toml"
    model_table = "\n".join(f"{key} = {value}" for key, value in tiny_pixnet.items())
    # config over defaults: 4 genes, not 250 (this tissue has 8); flags over config: 1 epoch, not 3
    config.write_text(f'epochs = 3\nn-top = 4\nmicrons_per_pixel = 4.0\nvalidation = "none"\n[model]\n{model_table}\n')
    model_dir = tmp_path / "model"
    assert main(["fit", str(store), "--config", str(config), "--out", str(model_dir), "--epochs", "1", "-q"]) == 0
    assert "epochs" not in capsys.readouterr().err  # --quiet: no training progress bar
    card = json.loads((model_dir / "card.json").read_text())
    assert len(card["history"]) == 1
    assert len(card["genes"]) == 4
    assert card["hyperparameters"]["hidden_dim"] == tiny_pixnet["hidden_dim"]
    assert card["microns_per_pixel"] == 4.0
    assert main(["fit", str(store), "--config", str(config), "--out", str(model_dir)]) == 1
    assert "--overwrite" in capsys.readouterr().err

    assert main(["predict", str(store), "--model", str(model_dir), "--spot-um", "16", "-q"]) == 0
    import spatialdata as sd

    back = sd.read_zarr(store)
    assert list(back.images["pred"].coords["c"].values) == card["genes"]
    assert back.tables["pred_spots"].n_obs == back.tables["table"].n_obs
    assert "pred_square_16um" in back.tables
    assert main(["predict", str(store), "--model", str(model_dir)]) == 1
    assert "overwrite" in capsys.readouterr().err
    # without --model: the model `fit` recorded in the store (named, since other tests record theirs there too)
    assert main(["predict", str(store), "--model-key", "pixnet", "--key-added", "own", "-q"]) == 0
    back = sd.read_zarr(store)
    np.testing.assert_allclose(back.tables["own_spots"].X, back.tables["pred_spots"].X, rtol=1e-5, atol=1e-5)

    assert main(["info", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "model: pixnet" in out
    assert f"genes (4): {', '.join(card['genes'])}" in out

    if not hasattr(st.tl, "evaluate"):
        pytest.skip("st.tl.evaluate is not in this tree yet")
    out_csv = tmp_path / "evaluation.csv"
    assert main(["evaluate", str(store), "--out", str(out_csv), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "pooled" in printed
    summary = pd.read_csv(out_csv, index_col="section")
    assert list(summary.index) == ["synthetic", "pooled"]
    assert summary.loc["pooled", "n_genes"] == 4
    assert -1 <= summary.loc["pooled", "PCC@M"] <= 1
    assert summary.loc["pooled", "MSE training mean"] > 0  # predict recorded the model's training mean
    # the color/texture ridge fitted on the training store, scored beside the model
    out_json = tmp_path / "evaluation.json"
    flags = ["--baseline", str(store), "--ceiling", "--out", str(out_json), "-q"]
    assert main(["evaluate", str(store), *flags]) == 0
    rows = {row["section"]: row for row in json.loads(out_json.read_text())}
    assert -1 <= rows["synthetic"]["PCC@M ridge"] <= 1
    assert rows["synthetic"]["MSE ridge"] > 0
    assert 0 < rows["synthetic"]["PCC@M ceiling"] <= 1


def test_fit_an_ensemble_and_predict_its_spread(tmp_path, tiny_pixnet, capsys):
    sdata = st.datasets.synthetic_tissue(size_um=400, microns_per_pixel=2.0, n_genes=5)
    store = st.io.write_zarr(sdata, tmp_path / "sample.zarr")
    config = tmp_path / "fit.toml"
    config.write_text("[model]\n" + "\n".join(f"{key} = {value}" for key, value in tiny_pixnet.items()) + "\n")
    model_dir = tmp_path / "ensemble"
    flags = ["--epochs", "1", "--n-top", "0", "--validation", "none", "--microns-per-pixel", "4", "-q"]
    assert main(["fit", str(store), "--config", str(config), "--out", str(model_dir), "--n-seeds", "2", *flags]) == 0
    card = json.loads((model_dir / "card.json").read_text())
    assert (card["model"], card["ensemble"]["seeds"]) == ("ensemble", [0, 1])

    assert main(["info", str(model_dir)]) == 0
    assert "model: ensemble" in capsys.readouterr().out
    assert main(["predict", str(store), "--model", str(model_dir), "-q"]) == 0
    import spatialdata as sd

    back = sd.read_zarr(store)
    mean, spread = (_finest(back.images[key]) for key in ("pred", "pred_std"))
    assert spread.shape == mean.shape
    assert np.nanmax(spread) > 0  # two seeds never agree everywhere
    assert back.tables["pred_spots"].var["std"].notna().all()


def _finest(element) -> np.ndarray:
    return (element["scale0"].ds["image"] if hasattr(element, "children") else element).values


def test_info_on_a_slide_without_spots(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(tmp_path / "slide.png")
    slide = st.io.read_wsi(tmp_path / "slide.png", microns_per_pixel=0.5)
    slide.write(tmp_path / "slide.zarr")
    assert main(["info", str(tmp_path / "slide.zarr")]) == 0
    out = capsys.readouterr().out
    assert "scale: 0.5 µm per pixel" in out
    assert "no spots" in out
