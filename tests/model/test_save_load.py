import json

import numpy as np
import pytest

import histo2st as st
from histo2st.model import PixNet


def test_save_load_round_trip(small_tissue, tmp_path, tiny_pixnet):
    model = PixNet(list(small_tissue["table"].var_names), microns_per_pixel=4.0, **tiny_pixnet)
    model.train(small_tissue, epochs=1, validation=0.2, progress=False)
    path = model.save(tmp_path / "m")
    card = json.loads((path / "card.json").read_text())
    assert card["genes"] == model.genes
    assert card["normalization"]["target_sum"] == 1e4
    assert card["encoder"]["weights"]["source"] == "random initialisation"
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
