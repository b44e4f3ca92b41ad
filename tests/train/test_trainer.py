import numpy as np
import pytest

from histo2st.model import PixNet


def _model(sdata, tiny):
    return PixNet(list(sdata["table"].var_names), microns_per_pixel=4.0, **tiny)


def test_training_lowers_the_loss(small_tissue, tiny_pixnet):
    model = _model(small_tissue, tiny_pixnet)
    history = model.train(small_tissue, epochs=4, validation=0.2, progress=False, patience=None)
    losses = [h["loss"] for h in history]
    assert len(history) == 4
    assert losses[-1] < losses[0]
    assert all(np.isfinite(h["val_pcc"]) for h in history)
    assert model.card["training"]["validation"]["kind"] == "spots"


def test_resume_continues_from_checkpoint(small_tissue, tmp_path, tiny_pixnet):
    full = _model(small_tissue, tiny_pixnet)
    full.train(small_tissue, epochs=3, validation=0.2, progress=False, patience=None, checkpoint_dir=tmp_path / "a")

    first = _model(small_tissue, tiny_pixnet)
    first.train(small_tissue, epochs=2, validation=0.2, progress=False, patience=None, checkpoint_dir=tmp_path / "b")
    resumed = _model(small_tissue, tiny_pixnet)
    history = resumed.train(
        small_tissue, epochs=3, validation=0.2, progress=False, patience=None, checkpoint_dir=tmp_path / "b"
    )
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # batches depend only on (seed, epoch), so the resumed run retraces the uninterrupted one
    assert history[-1]["loss"] == pytest.approx(full.history[-1]["loss"], rel=1e-4)
