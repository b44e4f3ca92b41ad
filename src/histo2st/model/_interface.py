"""What :func:`histo2st.tl.predict` asks of a model: the interface every model class and the ensemble implement."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Predictor(Protocol):
    """A trained model as prediction sees it.

    :class:`~histo2st.model.PixNet`, :class:`~histo2st.model.THItoGene` and :class:`~histo2st.model.Ensemble`
    implement it. Prediction asks these, never a model's class: a new model is usable by ``st.tl.predict`` once it
    has them.

    Attributes
    ----------
    genes
        Genes predicted, in the order of the map's channels.
    microns_per_pixel
        Resolution the model reads the H&E at.
    map_microns_per_pixel
        Pixel size in µm of its dense map (PixNet: ``microns_per_pixel``; THItoGene: one patch every ``dense_um``).
    n_maps
        Maps per gene that :meth:`predict_image` returns, one after the other: 1, or 2 for a model whose predictions
        carry an uncertainty (an ensemble: the members' mean, then their standard deviation).
    members
        The trained models whose weights run (the model itself, or an ensemble's members).
    predicts_at_points
        Whether :meth:`predict_points` predicts spots from patches at their centers (THItoGene) rather than leaving
        them to the map's mean over each spot (``None``, PixNet).
    card
        The model card (JSON), summarized into every table ``predict`` writes.
    init_params
        The parameters the model was built with (part of a streamed prediction's fingerprint).
    calibration
        The post-hoc calibration of the spread of a model with ``n_maps == 2`` (:func:`histo2st.tl.calibrate`), or
        ``None``.
    """

    genes: list[str]
    microns_per_pixel: float
    predicts_at_points: bool
    card: dict
    init_params: dict
    calibration: dict | None

    @property
    def map_microns_per_pixel(self) -> float: ...

    @property
    def n_maps(self) -> int: ...

    @property
    def members(self) -> list: ...

    def check_genes(self, genes) -> list[int]:
        """Indices of ``genes`` among the model's, or a ``KeyError`` naming those it does not predict."""

    def predict_image(self, image, image_mpp: float, *, device=None, tissue_mask=None, batch_size=None, tta=1):
        """Lazy ``(n_maps * genes, y, x)`` float32 map of an H&E ``(3, y, x)`` at ``map_microns_per_pixel``.

        ``tissue_mask`` is ``(mask, image pixels per mask pixel)``: a model may skip what lies away from it.
        ``batch_size``: inputs per forward pass, for models that batch tiles (others ignore it). ``tta``: the mean
        over 1, 2, 4 or 8 rotations and mirror images of every input (:func:`histo2st.nn.dihedral_mean`).
        """

    def predict_points(self, image, image_mpp: float, xy_px, *, device=None, tta=1):
        """Predictions at points ``(n, 2)`` (x, y in ``image`` pixels), ``tta`` as in :meth:`predict_image`.

        ``None`` when the model's value at a spot is its map's mean over the spot (PixNet). With ``n_maps == 2``:
        ``(mean, std)``.
        """
