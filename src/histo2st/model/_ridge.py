"""The HEST-benchmark baseline as a model: a frozen encoder's features of each spot's patch, PCA, ridge regression."""

from __future__ import annotations

import functools

import numpy as np

from .._settings import settings
from ._base import BaseModel, init_params
from ._color_ridge import ALPHAS
from ._encoder_model import EncoderReference
from ._patch_grid import model_image, patch_grid_map


class RidgeProbe(EncoderReference, BaseModel):
    """Linear probe of an image encoder (the HEST-benchmark protocol): what an encoder knows, without fine-tuning.

    Each spot is seen as a square patch of ``patch_px`` pixels at ``microns_per_pixel`` centered on it; the frozen
    encoder's pooled representation (a ResNet: global averages of its last three stages; a ViT: class token and mean
    patch token) goes through scikit-learn's ``StandardScaler``, ``PCA(n_components)`` and ``RidgeCV``, fitted in
    closed form on the training spots. The three are linear, so they are folded into one affine map, the network's
    ``head`` (:class:`~histo2st.module.LinearProbeModule`): the probe saves, loads and predicts like the other
    models. Compare any encoder's probe with PixNet on the same data: ``st.tl.fit(sdata, model="ridge",
    encoder="hf-hub:MahmoodLab/UNI")``.

    HEST-Benchmark (Jaume et al., 2024) takes 224 px patches at 0.5 µm/px (112 µm) and 256 principal components;
    the defaults keep the 112 µm field of view at 1 µm/px (a quarter of the pixels, for a CPU) and the 256 components.
    The ridge penalty is chosen by leave-one-out over ``ALPHAS`` instead of HEST's fixed formula, as the benchmarks'
    color/texture ridge does.

    Parameters
    ----------
    genes
        Genes to predict.
    microns_per_pixel
        Resolution patches are read at.
    patch_px
        Patch side in pixels.
    encoder, encoder_weights, encoder_args
        The encoder, as :class:`~histo2st.model.PixNet`'s (a name, a timm hub directory or an ``hf-hub:`` id); it is
        always frozen.
    n_components
        Principal components kept (at most the number of training spots and of features).
    dense_um
        Spacing in µm of the patch centers of the dense map :func:`histo2st.tl.predict` draws; default a quarter of
        the patch.
    batch_size
        Patches per forward pass of the encoder.
    max_direct_spots
        Spots or bins up to this number are predicted from a patch at each; more are aggregated from the dense map.
    stain_normalization
        As :class:`~histo2st.model.PixNet`'s.
    input_mean, input_std
        RGB statistics of the encoder's input; default those its weights' configuration gives, else the
        architecture's (:func:`~histo2st.nn.encoder_input_stats`).
    """

    model_name = "ridge"
    predicts_at_points = True

    def __init__(
        self,
        genes,
        *,
        microns_per_pixel: float = 1.0,
        patch_px: int = 112,
        encoder: str = "resnet18",
        encoder_weights=None,
        encoder_args: dict | None = None,
        n_components: int = 256,
        dense_um: float | None = None,
        batch_size: int = 64,
        max_direct_spots: int = 50_000,
        stain_normalization: str | None = None,
        input_mean: tuple[float, float, float] | None = None,
        input_std: tuple[float, float, float] | None = None,
    ) -> None:
        params = init_params(locals())
        if patch_px < 16 or n_components < 1:
            raise ValueError(f"`patch_px` must be >= 16 and `n_components` >= 1, got {patch_px}, {n_components}.")
        self._resolve_encoder(params)
        super().__init__(genes, microns_per_pixel=microns_per_pixel, init_params=params)
        self.card["encoder"] = self._encoder_card()

    def _build_module(self):
        from ..module import LinearProbeModule

        source, p = self._encoder_source, self.init_params
        stats = {"input_mean": p["input_mean"] or source.mean, "input_std": p["input_std"] or source.std}
        return LinearProbeModule(self.n_genes, encoder=source.architecture, encoder_args=source.model_args or None,
                                 encoder_weights=source.weights, **stats)  # fmt: skip

    def _output_bias(self):
        return self.module.head.bias

    @property
    def map_microns_per_pixel(self) -> float:
        """Spacing of the dense map's patch centers: ``dense_um``, default a quarter of the patch."""
        dense = self.init_params["dense_um"]
        return float(dense) if dense else self.init_params["patch_px"] * self.microns_per_pixel / 4

    def _features(self, image: np.ndarray, centers: np.ndarray, device: str, tta: int = 1) -> np.ndarray:
        """The encoder's features ``(n, pooled_dim)`` of the patches centered on ``centers`` (x, y pixels)."""
        import torch

        from ..nn import dihedral_mean
        from ..train import read_tile

        size, batch = self.init_params["patch_px"], self.init_params["batch_size"]
        half = size / 2
        module = self.module.to(device).eval()
        out = []
        with torch.no_grad():
            for start in range(0, len(centers), batch):
                patches = np.stack([read_tile(image, round(y - half), round(x - half), size)
                                    for x, y in centers[start : start + batch]])  # fmt: skip
                x = module.normalize(torch.from_numpy(patches).to(device))
                out.append(dihedral_mean(module.features, x, n=tta, dense=False).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, module.encoder.pooled_dim), dtype=np.float32)

    def _fit_sections(self, train: list, val: list, config) -> list[dict]:
        """Fit standardization, PCA and ridge on the training spots' features; fold them into the network's head."""
        import time

        from sklearn.decomposition import PCA
        from sklearn.linear_model import RidgeCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        start = time.perf_counter()
        features = np.concatenate([self._features(s.image, s.centers, config.device) for s in train if s.n_spots])
        targets = np.concatenate([s.targets for s in train if s.n_spots])
        k = min(self.init_params["n_components"], *features.shape)
        pipeline = make_pipeline(StandardScaler(), PCA(k, random_state=config.seed), RidgeCV(alphas=ALPHAS))
        pipeline.fit(features.astype(np.float64), targets)
        self._set_head(*_fold_affine(pipeline))
        record = {"epoch": 1, "alpha": float(pipeline[-1].alpha_), "n_components": k,
                  "train_spots": len(targets), "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
        if val:
            from ..metrics import pearson_per_gene

            pred = np.concatenate([self._predict_sections(s.image, s.centers, config.device) for s in val])
            record["val_pcc"] = float(np.nanmean(pearson_per_gene(pred, np.concatenate([s.targets for s in val]))))
        return [record]

    def _set_head(self, weight: np.ndarray, bias: np.ndarray) -> None:
        import torch

        with torch.no_grad():
            self.module.head.weight.copy_(torch.as_tensor(weight.T, dtype=torch.float32))
            self.module.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))

    def _predict_sections(self, image: np.ndarray, centers: np.ndarray, device: str, tta: int = 1) -> np.ndarray:
        import torch

        features = torch.from_numpy(self._features(image, centers, device, tta))
        with torch.no_grad():
            return self.module.head.to("cpu")(features).numpy()

    def _predict_at(self, image, image_mpp: float, xy_px: np.ndarray, *, device: str | None, tta: int) -> np.ndarray:
        device = settings.resolve_device(device)
        centers = np.asarray(xy_px, dtype=np.float64) * (image_mpp / self.microns_per_pixel)
        return self._predict_sections(model_image(self, image, image_mpp), centers, device, tta)

    def predict_points(self, image, image_mpp: float, xy_px, *, device: str | None = None, tta: int = 1):
        """Predicted expression ``(n, genes)`` at the centers ``xy_px`` (H&E pixels), from a patch at each.

        ``None`` (the caller aggregates the dense map) beyond ``max_direct_spots`` points. ``tta``: the encoder's
        features are the mean over 1, 2, 4 or 8 rotations and mirror images of each patch.
        """
        if len(xy_px) > self.init_params["max_direct_spots"]:
            return None
        return self._predict_at(image, image_mpp, xy_px, device=device, tta=tta)

    def predict_image(self, image, image_mpp: float, *, device=None, tissue_mask=None, batch_size=None, tta: int = 1):
        """Dense prediction ``(genes, y, x)``, one pixel per patch center every :attr:`map_microns_per_pixel` µm.

        See :func:`~histo2st.model._patch_grid.patch_grid_map`; ``batch_size`` is not used (``init_params``'s is).
        """
        predict_at = functools.partial(self._predict_at, image, image_mpp, device=device, tta=tta)
        return patch_grid_map(image, image_mpp, self.map_microns_per_pixel, self.n_genes, tissue_mask, predict_at)


def _fold_affine(pipeline) -> tuple[np.ndarray, np.ndarray]:
    """``(weight (features, genes), bias (genes,))`` of a fitted StandardScaler -> PCA -> Ridge pipeline.

    ``y = ((x - mu) / sd - m) @ C.T @ A.T + a`` is ``x @ W + b`` with ``W = (C / sd).T @ A.T`` and
    ``b = a - (mu / sd + m) @ C.T @ A.T``.
    """
    scaler, pca, ridge = pipeline
    components, coef = pca.components_, np.atleast_2d(ridge.coef_)
    weight = (components / scaler.scale_).T @ coef.T
    bias = ridge.intercept_ - (scaler.mean_ / scaler.scale_ + pca.mean_) @ components.T @ coef.T
    return weight, bias
