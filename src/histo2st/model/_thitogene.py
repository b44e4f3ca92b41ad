"""THItoGene, the user-facing model: gene expression of spots from their H&E patches and their neighbors."""

from __future__ import annotations

import functools
import math

import dask.array as da
import numpy as np

from .._docs import TARGET_COMPONENTS_DOC, doc_params
from .._logging import logger
from .._settings import settings
from ..train import grid_coordinates, predict_windows
from ._base import BaseModel, init_params
from ._patch_grid import model_image, patch_grid_map

#: Patch side of the paper: 112 px of her2st at about 0.69 µm/px.
PAPER_PATCH_PX = 112
PAPER_PATCH_UM = 112 * 0.69


@doc_params(target_components=TARGET_COMPONENTS_DOC)
class THItoGene(BaseModel):
    """THItoGene (Jia et al., Brief Bioinform 2024): ODConv, Efficient-CapsNet, a ViT over spots and a GAT.

    Each spot is seen as a patch of ``patch_um`` µm of H&E around its center; the spots of a window attend to each
    other (with grid position embeddings) and to their 4 nearest neighbors in a graph. Train with :meth:`train` (or
    :func:`histo2st.tl.fit`), predict with :func:`histo2st.tl.predict`.

    Of ``microns_per_pixel``, ``patch_um`` and ``patch_px`` give at most two; the third follows from
    ``patch_um = patch_px * microns_per_pixel``. By default the patch is the paper's 112 px at 0.69 µm/px (77.3 µm);
    giving only ``microns_per_pixel`` keeps the 77.3 µm and changes the pixels (at least 44).

    Parameters
    ----------
    genes
        Genes to predict (the table's normalized expression of these genes is the target).
    microns_per_pixel
        Resolution the network works at; every slide is resampled to it.
    patch_um
        Side of a spot's patch in µm.
    patch_px
        Side of a spot's patch in pixels at ``microns_per_pixel`` (the module's input size).
    loss
        ``"mse"`` (the reference: MSE on log-normalized expression) or ``"pixnet"`` (MSE + ``lam`` (1 − PCC)).
    lam
        Weight of the PCC term of the ``"pixnet"`` loss.
    lr, weight_decay
        Adam settings. The paper uses 1e-5 (and no weight decay) for hundreds of epochs on a GPU. On a CPU budget of
        15 minutes (her2st, 3 training sections) ``lr=3e-4, loss="pixnet"`` reached test PCC@M
        0.18, where 1e-5 and 1e-4 with the MSE stayed near the per-gene mean (``docs/models.md``).
    encoder_lr
        Learning rate of the patch encoder (ODConv and capsules); ``None``: ``lr``. Adam moves every weight by about
        the learning rate per step, so a layer's output moves with its fan-in: the ViT, GAT and head (fan-in
        1408-8192) drift far faster than the small convolutions of the encoder.
    window_spots
        Most spots the network sees at once, in training and prediction (attention and the graph are quadratic in
        it). Sections with more spots are trained on windows of nearby spots and predicted window by window.
    windows_per_epoch
        Training windows per epoch; ``None``: one pass over the sections, as the reference (see
        :class:`~histo2st.train.THItoGenePlan`).
    batch_size
        Windows per training batch (the reference: one section).
    augment
        Random flips and 90° rotations of every patch and color jitter during training.
    augment_positions
        Random flips, transposes and shifts of each training window's grid positions (see
        :class:`~histo2st.train.THItoGenePlan`).
    stain_normalization
        ``"macenko"`` normalizes every slide's stains to a reference fitted on the training sections, in training
        and prediction (each slide's own stains are estimated on its tissue); ``None`` uses the H&E as it is.
    dense_um
        Stride in µm of the dense predicted image (a patch prediction on a regular grid); default half a patch.
    max_direct_spots
        Spot tables with up to this many spots or bins are predicted directly from a patch at each center; larger
        ones are aggregated from the dense image (see :meth:`predict_points`).
    grid_pitch_um
        Grid step in µm of the position embeddings at prediction; set by :meth:`train` (see Notes).
    {target_components}
    **module_kwargs
        Passed to :class:`~histo2st.module.THItoGeneModule` (``caps``, ``route_dim``, ``depth``, ``heads``, ...).

    Notes
    -----
    Grid coordinates are ``round(center_um / pitch_um)``: in training with each section's spot pitch (the median
    nearest-neighbor distance of its spots, so legacy ST arrays get their array coordinates), in prediction with the
    median pitch of the training sections (``card["grid_pitch_um"]``), so one position step is the same distance in
    µm as in training whatever is predicted (spots, bins or a dense grid). Each window's coordinates start at 0;
    positions past ``n_pos`` are clipped to the table's edge.
    """

    model_name = "thitogene"
    predicts_at_points = True
    #: Settings of ``st.tl.fit(..., preset=)``, training options included; explicit keywords override them.
    #: ``"paper"``: the reference training (Adam 1e-5, MSE, whole sections up to 1024 spots per step); the paper gives
    #: no number of epochs, so 100 with early stopping. ``"cpu"``: what made THItoGene learn within minutes on a
    #: CPU (docs/models.md: Adam 3e-4 with the PixNet loss, windows of 256 spots), under a time budget.
    presets = {
        "paper": {"lr": 1e-5, "loss": "mse", "window_spots": 1024, "epochs": 100, "patience": 10, "max_time": None},
        "cpu": {"lr": 3e-4, "loss": "pixnet", "window_spots": 256, "epochs": 100, "patience": 10, "max_time": 420.0},
    }
    _plan_args = ("window_spots", "windows_per_epoch", "batch_size", "loss", "lam", "lr", "weight_decay", "encoder_lr",
                  "augment", "augment_positions")  # fmt: skip

    def __init__(
        self,
        genes,
        *,
        microns_per_pixel: float | None = None,
        patch_um: float | None = None,
        patch_px: int | None = None,
        loss: str = "mse",
        lam: float = 0.5,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        encoder_lr: float | None = None,
        window_spots: int = 1024,
        windows_per_epoch: int | None = None,
        batch_size: int = 1,
        augment: bool = True,
        augment_positions: bool = False,
        dense_um: float | None = None,
        max_direct_spots: int = 100_000,
        grid_pitch_um: float | None = None,
        stain_normalization: str | None = None,
        target_components: int | None = None,
        **module_kwargs,
    ) -> None:
        params = init_params(locals())
        mpp, patch_um, patch_px = _patch_geometry(microns_per_pixel, patch_um, patch_px)
        dense_um = patch_um / 2 if dense_um is None else float(dense_um)
        params.update(patch_um=patch_um, patch_px=patch_px, dense_um=dense_um)
        super().__init__(genes, microns_per_pixel=mpp, init_params=params)

    def _build_module(self):
        from ..module import THItoGeneModule

        extra = {k: v for k, v in self.init_params.items() if k not in _MODEL_KEYS}
        return THItoGeneModule(self.n_genes, patch_px=self.init_params["patch_px"], **extra)

    @property
    def map_microns_per_pixel(self) -> float:
        """Pixel size in µm of the dense image written by :meth:`predict_image`."""
        return self.init_params["dense_um"]

    def _plan_class(self):
        from ..train import THItoGenePlan

        return THItoGenePlan

    def _output_bias(self):
        return self.module.head[-1].bias

    def _after_training(self, plan) -> None:
        self.init_params["grid_pitch_um"] = round(plan.pitch_um, 3)
        self.card["grid_pitch_um"] = self.init_params["grid_pitch_um"]

    def predict_points(self, image, image_mpp: float, xy_px: np.ndarray, *, device: str | None = None, tta: int = 1):
        """Predicted expression ``(n, genes)`` at the centers ``xy_px`` (H&E pixels), from a patch at each.

        Every point gets a ``patch_um`` patch and is predicted in windows of ``window_spots`` nearby points (see
        :func:`~histo2st.train._spot_windows.prediction_windows`). The cost is one patch encoding per point,
        whatever the spot size: 8 µm bins over a 5 mm section are ~400,000 patches (hours on a CPU). Returns ``None``
        when there are more than ``max_direct_spots`` points, so the caller aggregates the dense image instead.
        ``tta``: each patch's prediction is the mean over 1, 2, 4 or 8 of its rotations and mirror images.
        """
        xy_px = np.asarray(xy_px, dtype=np.float64)
        if len(xy_px) > self.init_params["max_direct_spots"]:
            logger.warning(
                f"{len(xy_px)} spots exceed `max_direct_spots={self.init_params['max_direct_spots']}`: their values "
                "are aggregated from the dense image instead of predicted from a patch at each."
            )
            return None
        return self._predict_at(image, image_mpp, xy_px, device, tta)

    def _predict_at(self, image, image_mpp: float, xy_px: np.ndarray, device: str | None, tta: int) -> np.ndarray:
        device = settings.resolve_device(device)
        centers = xy_px * (image_mpp / self.microns_per_pixel)
        grid = grid_coordinates(xy_px * image_mpp, self._grid_pitch())
        self.module.to(device).eval()
        return predict_windows(
            self.module,
            model_image(self, image, image_mpp),
            centers,
            grid,
            np.arange(len(xy_px)),
            window_spots=self.init_params["window_spots"],
            device=device,
            tta=tta,
        )

    def predict_image(
        self,
        image: da.Array,
        image_mpp: float,
        *,
        device: str | None = None,
        tissue_mask: tuple[np.ndarray, float] | None = None,
        batch_size: int | None = None,
        tta: int = 1,
    ) -> da.Array:
        """Dense prediction ``(genes, y, x)`` float32, one pixel per ``dense_um`` of tissue, for an H&E ``(3, y, x)``.

        Pixel ``(i, j)`` is the prediction for the patch centered on ``((j + 0.5), (i + 0.5)) * dense_um`` µm, so a
        scale of ``dense_um / image_mpp`` aligns it with the H&E. Only pixels that cover tissue (the Otsu mask of
        :func:`histo2st.tl.aggregate`) are predicted; the others are NaN. The image is computed in memory, window by
        window (``genes`` × the number of grid points floats). ``tissue_mask`` ``(mask, image pixels per mask
        pixel)`` replaces that mask; ``batch_size`` is not used (the model predicts windows of ``window_spots``).
        ``tta`` as in :meth:`predict_points`.
        """
        predict_at = functools.partial(self._predict_at, image, image_mpp, device=device, tta=tta)
        return patch_grid_map(image, image_mpp, self.map_microns_per_pixel, self.n_genes, tissue_mask, predict_at)

    def _grid_pitch(self) -> float:
        pitch = self.init_params["grid_pitch_um"]
        if pitch is None:
            raise RuntimeError("This THItoGene model is untrained (no grid pitch); train it first with `model.train`.")
        return pitch


_MODEL_KEYS = (
    "patch_um", "patch_px", "loss", "lam", "lr", "weight_decay", "encoder_lr", "window_spots", "windows_per_epoch",
    "batch_size", "augment", "augment_positions", "dense_um", "max_direct_spots", "grid_pitch_um",
    "stain_normalization", "target_components",
)  # fmt: skip


def _patch_geometry(mpp: float | None, patch_um: float | None, patch_px: int | None) -> tuple[float, float, int]:
    """Complete ``(microns_per_pixel, patch_um, patch_px)`` from any two of them (see the class doc)."""
    given = sum(v is not None for v in (mpp, patch_um, patch_px))
    if given == 3 and not math.isclose(patch_px * mpp, patch_um, rel_tol=0.02):
        raise ValueError(
            f"`patch_px={patch_px}` at `microns_per_pixel={mpp}` is {patch_px * mpp:.1f} µm, not `patch_um={patch_um}`;"
            " give two of the three."
        )
    if patch_um is None:
        patch_um = patch_px * mpp if patch_px is not None and mpp is not None else PAPER_PATCH_UM
    if patch_px is None:
        patch_px = PAPER_PATCH_PX if mpp is None else round(patch_um / mpp)
    if mpp is None:
        mpp = patch_um / patch_px
    return float(mpp), float(patch_um), int(patch_px)
