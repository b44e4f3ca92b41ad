import pytest

import histo2st as st


def test_pixnet_trains_on_denoised_targets_and_keeps_the_setting(small_tissue, tiny_pixnet, tmp_path):
    genes = list(small_tissue["table"].var_names[:6])
    model = st.model.PixNet(genes, microns_per_pixel=4.0, target_components=2, **tiny_pixnet)
    model.train(small_tissue, epochs=1, validation=0.2, progress=False)
    record = model.card["target_denoising"]
    assert record["components"] == 2
    assert 0 < record["explained_variance"] <= 1
    loaded = st.model.load_model(model.save(tmp_path / "m"))
    assert loaded.init_params["target_components"] == 2
    assert loaded.card["target_denoising"] == record


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_target_components_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match="target_components"):
        st.model.THItoGene(["a", "b"], target_components=bad)
