import hashlib
import json
import logging

import numpy as np
import pytest

import histo2st as st
from histo2st.model import Ensemble, ModelFileError, PixNet


def test_save_load_round_trip(small_tissue, tmp_path, tiny_pixnet):
    model = PixNet(list(small_tissue["table"].var_names), microns_per_pixel=4.0, **tiny_pixnet)
    model.train(small_tissue, epochs=1, validation=0.2, progress=False)
    path = model.save(tmp_path / "m")
    card = json.loads((path / "card.json").read_text())
    assert card["genes"] == model.genes
    assert card["normalization"]["target_sum"] == 1e4
    assert card["encoder"]["weights"]["source"] == "random initialization"
    assert card["training"]["sections"] == ["synthetic"]
    assert "histo2st_version" in card

    loaded = st.tl.load_model(path)
    assert isinstance(loaded, PixNet)
    assert loaded.history == model.history
    for (k, a), b in zip(model.module.state_dict().items(), loaded.module.state_dict().values(), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)

    with pytest.raises(FileExistsError, match="overwrite=True"):
        model.save(path)
    model.save(path, overwrite=True)


def test_load_rejects_a_directory_without_card(tmp_path):
    with pytest.raises(FileNotFoundError, match="model card"):
        st.tl.load_model(tmp_path)


def test_check_genes_names_missing(tiny_pixnet):
    model = PixNet(["a", "b"], microns_per_pixel=4.0, **tiny_pixnet)
    assert model.check_genes(["b"]) == [1]
    with pytest.raises(KeyError, match="does not predict 1"):
        model.check_genes(["c"])


@pytest.fixture
def saved(tmp_path, tiny_pixnet):
    """An untrained tiny PixNet saved to ``tmp_path / "m"`` (the weights need no training to be checked)."""
    return PixNet(["GENE00", "GENE01"], microns_per_pixel=4.0, **tiny_pixnet).save(tmp_path / "m")


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_save_records_the_weights_sha256(saved):
    card = json.loads((saved / "card.json").read_text())
    assert card["weights_sha256"] == hashlib.sha256((saved / "weights.pt").read_bytes()).hexdigest()


def test_load_refuses_weights_that_do_not_match_their_sha256(saved):
    _flip_a_byte(saved / "weights.pt")
    with pytest.raises(ModelFileError, match=r"weights\.pt' does not match the sha256 .* save the model again"):
        st.tl.load_model(saved)


@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_an_unreadable_weights_file_of_an_older_model_is_named(saved, damage):
    # a card without sha256 (saved before it was recorded) leaves the file itself to be recognized as damaged
    card = json.loads((saved / "card.json").read_text())
    del card["weights_sha256"]
    (saved / "card.json").write_text(json.dumps(card))
    weights = saved / "weights.pt"
    weights.write_bytes(b"" if damage == "empty" else weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"weights\.pt' is not a PyTorch weights file \(empty or truncated\)"):
        st.tl.load_model(saved)


def test_a_model_saved_without_sha256_still_loads(saved, caplog):
    card = json.loads((saved / "card.json").read_text())
    del card["weights_sha256"]
    (saved / "card.json").write_text(json.dumps(card))
    with caplog.at_level(logging.DEBUG, logger="histo2st"):
        assert st.tl.load_model(saved).genes == ["GENE00", "GENE01"]
    assert "records no sha256" in caplog.text


def test_a_truncated_card_is_named(saved):
    card = saved / "card.json"
    card.write_text(card.read_text()[:100])
    with pytest.raises(ModelFileError, match=r"card\.json' is not valid JSON .* save the model again"):
        st.tl.load_model(saved)


def test_a_missing_weights_file_is_named(saved):
    (saved / "weights.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"weights\.pt' is missing: .* save the model again"):
        st.tl.load_model(saved)


def test_an_ensemble_refuses_a_damaged_member(tmp_path, tiny_pixnet):
    members = [PixNet(["GENE00"], microns_per_pixel=4.0, **tiny_pixnet) for _ in range(2)]
    path = Ensemble(members).save(tmp_path / "e")
    _flip_a_byte(path / "member_1" / "weights.pt")
    with pytest.raises(ModelFileError, match=r"member_1/weights\.pt' does not match the sha256"):
        st.tl.load_model(path)


def test_a_model_takes_one_gene_as_a_string(tiny_pixnet):
    assert PixNet("GENE00", microns_per_pixel=4.0, **tiny_pixnet).genes == ["GENE00"]


def test_check_genes_takes_one_gene_as_a_string(tiny_pixnet):
    model = PixNet(["GENE00", "GENE01"], microns_per_pixel=4.0, **tiny_pixnet)
    assert model.check_genes("GENE01") == [1]
    assert Ensemble([model]).check_genes("GENE01") == [1]
