import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


@pytest.fixture(scope="module")
def predicted():
    """A 400 µm synthetic tissue with a fabricated 4 µm/px prediction, as `st.tl.predict` lays it out.

    The "prediction" is the log-normalized truth of 2 x 2 pixel blocks, NaN in the top-left 40 µm (off tissue), with
    the measured-spot table `pred_spots` and the 8 µm bins table `pred_square_8um` aggregated from it.
    """
    from spatialdata.models import Image2DModel
    from spatialdata.transformations import Scale

    import histo2st as st

    sdata = st.datasets.synthetic_tissue(size_um=400, microns_per_pixel=2.0, n_genes=6, seed=3)
    st.pp.normalize(sdata)
    genes = list(sdata["table"].var_names)
    truth = np.asarray(sdata["truth"].data.compute(), dtype=np.float64)
    blocks = truth.reshape(len(genes), 100, 2, 100, 2).sum((2, 4))
    totals = blocks.sum(0)
    pred = np.log1p(np.divide(blocks, totals, out=np.zeros_like(blocks), where=totals > 0) * 1e4)
    pred[:, :10, :10] = np.nan
    sdata.images["pred"] = Image2DModel.parse(
        pred.astype(np.float16),
        dims=("c", "y", "x"),
        c_coords=genes,
        transformations={"global": Scale([2.0, 2.0], axes=("y", "x")), "microns": Scale([4.0, 4.0], axes=("y", "x"))},
    )
    st.tl.aggregate(sdata, "pred", shapes_key="spots", key_added="pred_spots")
    st.tl.aggregate(sdata, "pred", spot_um=8, tissue_mask=False, key_added="pred_square_8um")
    return sdata
