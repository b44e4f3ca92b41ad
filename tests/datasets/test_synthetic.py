import numpy as np
import pytest

import histo2st as st
from histo2st._constants import BINS_KEY, BINS_TABLE_KEY, CELLS_KEY, CELLS_TABLE_KEY, EXPECTED_LAYER
from histo2st._kernels import aggregate_circles

CAPTURE = 0.3


@pytest.fixture(scope="module")
def sample():
    """About 130 spots: enough for statistics over spots and a held-out half for the morphology model."""
    return st.datasets.synthetic_tissue(size_um=1200, seed=1, capture_efficiency=CAPTURE)


@pytest.fixture(scope="module")
def binned():
    return st.datasets.synthetic_tissue(size_um=(320, 480), n_genes=8, bins_um=(16, 2, 8), seed=2)


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


def test_follows_conventions(sample):
    from spatialdata.transformations import Identity, Scale, get_transformation

    scale = st.io.validate(sample)
    assert scale.microns_per_pixel == 1.0
    assert scale.mpp_source == "given"
    assert (scale.spot_diameter_um, scale.spot_pitch_um) == (55.0, 100.0)
    he, truth = sample["he"], sample["truth"]
    assert he.dtype == np.uint8
    assert he.shape == (3, 1200, 1200)
    assert truth.dtype == np.float32
    assert truth.shape == (32, 1200, 1200)
    table = sample["table"]
    assert list(truth.coords["c"].values) == list(table.var_names)
    for element in (truth, sample[CELLS_KEY], sample["spots"]):
        transforms = get_transformation(element, get_all=True)
        assert isinstance(transforms["global"], Identity)
        assert isinstance(transforms["microns"], Scale)
        np.testing.assert_allclose(transforms["microns"].scale, [1.0, 1.0])
    np.testing.assert_array_equal(_dense(table.X), _dense(table.layers["counts"]))
    assert table.layers[EXPECTED_LAYER].shape == table.shape
    assert {"array_row", "array_col"} <= set(table.obs.columns)
    assert set(table.var["role"]) == {"marker", "shared", "housekeeping"}
    assert sample.attrs["histo2st"]["synthetic"]["n_cell_types"] == 5
    fractions = table.obsm["cell_type_fraction"].to_numpy()
    assert fractions.shape == (table.n_obs, 5)
    assert np.all(fractions.sum(axis=1) <= 1 + 1e-6)
    # Visium layout: nearest neighbors one pitch (100 px at 1 µm per pixel) apart
    assert st.io.derive_microns_per_pixel(table.obsm["spatial"], 100.0) == pytest.approx(1.0)


def test_seeded_and_deterministic():
    a, b = (st.datasets.synthetic_tissue(size_um=300, seed=5) for _ in range(2))
    c = st.datasets.synthetic_tissue(size_um=300, seed=6)
    np.testing.assert_array_equal(a["he"].data.compute(), b["he"].data.compute())
    np.testing.assert_array_equal(a["truth"].data.compute(), b["truth"].data.compute())
    np.testing.assert_array_equal(_dense(a["table"].X), _dense(b["table"].X))
    assert not np.array_equal(a["he"].data.compute(), c["he"].data.compute())


def test_truth_is_expression_density_times_pixel_area():
    sdata = st.datasets.synthetic_tissue(size_um=400, microns_per_pixel=2.0, n_genes=6, seed=3)
    labels = sdata[CELLS_KEY].data.compute()
    cells = sdata[CELLS_TABLE_KEY]
    truth = sdata["truth"].data.compute()
    density = np.zeros((labels.max() + 1, 6), dtype=np.float32)
    density[cells.obs["cell_id"].to_numpy()] = _dense(cells.X)
    np.testing.assert_allclose(truth, np.moveaxis(density[labels], -1, 0) * 4.0, rtol=1e-6)
    assert np.all(truth[:, labels == 0] == 0)


def test_spot_expected_is_truth_integrated_over_circle(sample):
    table = sample["table"]
    truth = sample["truth"].data.compute()
    radius = sample["spots"]["radius"].iloc[0]
    yy, xx = np.mgrid[0 : truth.shape[1], 0 : truth.shape[2]] + 0.5
    for i in (0, table.n_obs // 2, table.n_obs - 1):
        x, y = table.obsm["spatial"][i]
        inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
        np.testing.assert_allclose(
            table.layers[EXPECTED_LAYER][i], CAPTURE * truth[:, inside].sum(axis=1), rtol=1e-4, atol=1e-6
        )


def test_spot_counts_are_poisson_around_expected(sample):
    table = sample["table"]
    counts = _dense(table.layers["counts"]).astype(float)
    expected = table.layers[EXPECTED_LAYER].astype(float)
    assert np.all(counts == np.round(counts))
    mask = expected >= 5
    assert mask.sum() > 1000
    z = (counts[mask] - expected[mask]) / np.sqrt(expected[mask])
    # mean 0 within 4 standard errors; Poisson variance equals the mean, so var(z) is 1
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.var() == pytest.approx(1.0, abs=0.1)
    assert counts.sum() / expected.sum() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize(("fine", "coarse"), [(2, 8), (8, 16), (2, 16)])
def test_bins_sum_exactly_into_coarser_bins(binned, fine, coarse):
    small, big = binned[BINS_TABLE_KEY.format(fine)], binned[BINS_TABLE_KEY.format(coarse)]
    k = coarse // fine
    n_cols = big.obs["array_col"].max() + 1
    parent = (small.obs["array_row"].to_numpy() // k) * n_cols + small.obs["array_col"].to_numpy() // k
    order = big.obs["array_row"].to_numpy() * n_cols + big.obs["array_col"].to_numpy()
    for layer in ("counts", EXPECTED_LAYER):
        summed = np.zeros((big.n_obs, small.n_vars))
        np.add.at(summed, parent, _dense(small.layers[layer]))
        np.testing.assert_allclose(summed[order], _dense(big.layers[layer]), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_dense(small.layers["counts"]).sum(0), _dense(big.layers["counts"]).sum(0))


@pytest.mark.parametrize("bin_um", [2, 8, 16])
def test_bins_are_linked_squares_with_truth_expectation(binned, bin_um):
    shapes = binned[BINS_KEY.format(bin_um)]
    table = binned[BINS_TABLE_KEY.format(bin_um)]
    assert table.uns["spatialdata_attrs"]["region"] == BINS_KEY.format(bin_um)
    np.testing.assert_allclose(shapes.geometry.area, bin_um**2)
    assert len(shapes) == table.n_obs == (320 // bin_um) * (480 // bin_um)
    truth = binned["truth"].data.compute()
    rows, cols = table.obs["array_row"].to_numpy(), table.obs["array_col"].to_numpy()
    blocks = truth.reshape(truth.shape[0], 320 // bin_um, bin_um, 480 // bin_um, bin_um).sum(axis=(2, 4))
    np.testing.assert_allclose(table.layers[EXPECTED_LAYER], CAPTURE * blocks[:, rows, cols].T, rtol=1e-4, atol=1e-5)


def _spot_features(sdata) -> np.ndarray:
    """Color and texture of each spot: mean/std of RGB and hematoxylin, and the fraction of dark pixels."""
    from skimage.color import rgb2hed

    rgb = sdata["he"].data.compute().astype(np.float32) / 255
    hema = rgb2hed(np.moveaxis(rgb, 0, -1))[..., 0].astype(np.float32)[None]
    dark = (rgb.mean(axis=0, keepdims=True) < 0.45).astype(np.float32)
    channels = np.concatenate([rgb, hema, rgb**2, hema**2, dark])
    xy = sdata["table"].obsm["spatial"]
    mean, _ = aggregate_circles(channels, xy, np.full(len(xy), sdata["spots"]["radius"].iloc[0]), agg="mean")
    std = np.sqrt(np.clip(mean[:, 4:8] - mean[:, :4] ** 2, 0, None))
    return np.column_stack([mean[:, :4], std, mean[:, 8]])


def test_morphology_model_beats_mean_predictor(sample):
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    features = _spot_features(sample)
    target = np.log1p(_dense(sample["table"].layers["counts"]).astype(float))
    order = np.random.default_rng(0).permutation(len(target))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    scaler = StandardScaler().fit(features[train])
    model = Ridge(alpha=1.0).fit(scaler.transform(features[train]), target[train])
    predicted = model.predict(scaler.transform(features[test]))
    mse_model = np.mean((predicted - target[test]) ** 2)
    mse_mean = np.mean((target[train].mean(axis=0) - target[test]) ** 2)
    assert mse_model < 0.6 * mse_mean
    pcc = [np.corrcoef(predicted[:, g], target[test, g])[0, 1] for g in range(target.shape[1])]
    assert np.nanmean(pcc) > 0.5


def test_marker_genes_follow_their_cell_type(sample):
    cells = sample[CELLS_TABLE_KEY]
    var = sample["table"].var
    density = _dense(cells.X)
    for gene in var.index[var["role"] == "marker"]:
        own = cells.obs["cell_type"] == var.loc[gene, "marker_of"]
        column = density[:, var.index.get_loc(gene)]
        assert column[own.to_numpy()].mean() > 20 * column[~own.to_numpy()].mean()


def test_all_cell_types_and_small_gene_sets():
    sdata = st.datasets.synthetic_tissue(size_um=500, n_cell_types=8, n_genes=8, seed=4)
    st.io.validate(sdata)
    table = sdata["table"]
    assert (table.var["role"] == "marker").sum() == 8
    assert table.varm["cell_type_profile"].shape == (8, 8)
    assert set(sdata[CELLS_TABLE_KEY].obs["cell_type"].cat.categories) >= {"tumor", "fibroblast", "lymphocyte"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size_um": -5}, "size_um"),
        ({"size_um": (100, 200, 300)}, "size_um"),
        ({"size_um": 40}, "smaller than one spot"),
        ({"microns_per_pixel": 10.0}, "microns_per_pixel"),
        ({"spot_pitch_um": 50.0}, "overlap"),
        ({"n_cell_types": 1}, "n_cell_types"),
        ({"n_cell_types": 9}, "n_cell_types"),
        ({"n_genes": 3}, "every type has a marker"),
        ({"noise": -0.1}, "noise"),
        ({"context": -1.0}, "context"),
        ({"context": float("nan")}, "context"),
        ({"capture_efficiency": 1.5}, "capture_efficiency"),
        ({"bins_um": (2, 5)}, "multiple of the smallest"),
        ({"bins_um": (2.5,)}, "whole"),
        ({"bins_um": (8, 8)}, "repeated"),
        ({"seed": -1}, "seed"),
        ({"size_um": 100_000}, "GiB"),
    ],
)
def test_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        st.datasets.synthetic_tissue(**kwargs)


@pytest.fixture(scope="module")
def contextual():
    return st.datasets.synthetic_tissue(size_um=1200, seed=1, capture_efficiency=CAPTURE, context=1.0)


def _context_drive(sdata) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per tumor cell: log expression, and each gene's context drive ``w · z``, for genes with context weights."""
    cells = sdata.tables[CELLS_TABLE_KEY]
    weights = sdata.tables["table"].varm["context_weights"].to_numpy()
    drive = cells.obsm["context"].to_numpy() @ weights.T
    tumor = (cells.obs["cell_type"] == "tumor").to_numpy()
    driven = np.abs(weights).sum(1) > 0
    return np.log(_dense(cells.X)[tumor][:, driven]), drive[tumor][:, driven], weights


def test_context_changes_expression_at_a_fixed_cell_type(contextual, sample):
    # the same cell type, the same genes: with context the log expression follows each gene's context drive, and
    # without it (the default) it does not
    log_x, drive, weights = _context_drive(contextual)
    with_context = np.median([np.corrcoef(log_x[:, g], drive[:, g])[0, 1] for g in range(log_x.shape[1])])
    log_x, drive, _ = _context_drive(sample)
    without = np.median([np.corrcoef(log_x[:, g], drive[:, g])[0, 1] for g in range(log_x.shape[1])])
    assert with_context > 0.8  # the rest is the per-cell noise (0.3 in log units against 1.0 of context)
    assert abs(without) < 0.1
    roles = contextual.tables["table"].var["role"].to_numpy()
    assert (np.abs(weights[roles == "housekeeping"]).sum(1) == 0).all()
    np.testing.assert_allclose(np.linalg.norm(weights[roles != "housekeeping"], axis=1), 1.0)


def test_context_keeps_the_layout_and_each_types_mean(contextual, sample):
    np.testing.assert_array_equal(np.asarray(contextual.images["he"].data), np.asarray(sample.images["he"].data))
    plain, rich = (_dense(s.tables[CELLS_TABLE_KEY].X) for s in (sample, contextual))
    kind = sample.tables[CELLS_TABLE_KEY].obs["cell_type"].to_numpy()
    for name in np.unique(kind):
        # the factors average 1 over every cell of a type; the table leaves out the few cells hidden by others
        np.testing.assert_allclose(rich[kind == name].mean(0), plain[kind == name].mean(0), rtol=0.15)
    assert np.abs(np.log(rich / plain)).mean() > 0.3  # yet cell by cell it differs


def test_hypoxic_core_is_a_state_of_tumor_cells_deep_in_their_nest(contextual):
    from scipy.spatial import cKDTree

    cells = contextual.tables[CELLS_TABLE_KEY]
    hypoxic = cells.obsm["context"]["hypoxic_core"].to_numpy()
    is_hypoxic = hypoxic > hypoxic.min()
    is_tumor = cells.obs["cell_type"].to_numpy() == "tumor"
    assert is_hypoxic.any()
    assert (is_tumor & ~is_hypoxic).any()
    assert is_tumor[is_hypoxic].all()
    # more than 80 µm inside the nest (1 µm/px): other cells are far, though a few stray across the border
    xy = np.asarray(cells.obsm["spatial"])
    distance, _ = cKDTree(xy[~is_tumor]).query(xy[is_tumor])
    assert distance[is_hypoxic[is_tumor]].min() > 50
    assert not is_hypoxic[is_tumor][distance < 30].any()
