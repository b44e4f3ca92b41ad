import dask.array as da
import numpy as np
import torch

from histo2st.model import PixNet
from histo2st.train._tiling import TileGrid, core_chunks, make_grid


def test_core_chunks_never_leave_a_chunk_shorter_than_the_halo():
    grid = TileGrid(core=64, halo=32)
    assert core_chunks(150, grid) == (64, 86)
    assert core_chunks(160, grid) == (64, 64, 32)
    assert core_chunks(40, grid) == (40,)
    assert sum(core_chunks(1000, make_grid(512, 128))) == 1000


def test_tiled_prediction_has_no_seams(small_tissue, tiny_pixnet):
    torch.manual_seed(0)
    he = small_tissue["he"].data  # 300 x 300 px at 2 µm/px
    small = PixNet(["a", "b"], microns_per_pixel=2.0, **{**tiny_pixnet, "tile_px": 128})
    whole = PixNet(["a", "b"], microns_per_pixel=2.0, **{**tiny_pixnet, "tile_px": 512})
    whole.module.load_state_dict(small.module.state_dict())
    tiled = small.predict_image(he, 2.0, device="cpu")
    assert len(tiled.chunks[1]) > 2  # several tiles
    tiled = tiled.compute()
    reference = whole.predict_image(da.asarray(he), 2.0, device="cpu").compute()
    assert tiled.shape == reference.shape == (2, 300, 300)
    # with a halo of context, each tile's core matches a prediction made from one tile holding the whole image
    assert np.abs(tiled - reference).max() < 0.05 * reference.std()
