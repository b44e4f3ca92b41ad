"""What models with an image encoder share: its card entry, and saving it by reference to its published weights."""

from __future__ import annotations

from ._base import FILE_FIX, ModelFileError
from ._encoder_source import resolve_encoder


class EncoderReference:
    """Mixin of a :class:`~histo2st.model.BaseModel` whose ``module.encoder`` came from ``self._encoder_source``.

    A frozen, never-trained encoder loaded from a file or hub repository is not copied by ``save`` (unless
    ``include_encoder=True``): the card records its source and sha256, and ``load`` reads it from there again.
    """

    def _resolve_encoder(self, params: dict) -> None:
        """Record ``params``' encoder options as a card stores them and resolve them into ``self._encoder_source``."""
        from ..nn import jsonable_model_args

        weights = params["encoder_weights"]
        params.update(encoder_weights=None if weights is None else str(weights),
                      encoder_args=jsonable_model_args(params["encoder_args"]) or None)  # fmt: skip
        self._encoder_source = resolve_encoder(params["encoder"], weights, params["encoder_args"])

    def _encoder_card(self) -> dict:
        """The card's ``"encoder"`` entry: architecture, arguments, weights' identity, input statistics, frozen."""
        from ..nn import jsonable_model_args

        source = self._encoder_source
        return {
            "architecture": source.architecture,
            "model_args": jsonable_model_args(source.model_args),
            "weights": source.origin,
            "input_mean": list(self.module.input_mean),  # lists: tuples do not go into zarr attributes
            "input_std": list(self.module.input_std),
            "frozen": self.module.encoder_frozen,
        }

    def _references_encoder(self) -> bool:
        """Whether a saved model can point to the encoder's weights instead of copying them.

        So it can when the encoder is frozen, was never trained, and comes from a file or hub repository that
        :meth:`load` can find again.
        """
        trained = self.card["encoder"].get("fine_tuned", False)
        return self.module.encoder_frozen and not trained and self._encoder_source.weights is not None

    def _encoder_prefix(self) -> str:
        target = self.module.encoder.weights_module
        return next(f"{name}." for name, m in self.module.named_modules() if m is target)

    def _state_to_save(self, include_encoder: bool) -> tuple[dict, dict]:
        state = self.module.state_dict()
        included = include_encoder or not self._references_encoder()
        if not included:
            prefix = self._encoder_prefix()
            state = {k: v for k, v in state.items() if not k.startswith(prefix)}
        return state, {"encoder": {**self.card["encoder"], "included": included}}

    @classmethod
    def _from_card(cls, card: dict):
        """The model a saved card describes, untrained.

        Its encoder is rebuilt from the card or, when it was not saved, from its recorded source, checked against the
        recorded sha256.
        """
        params, encoder = dict(card["init_params"]), card.get("encoder", {})
        if encoder.get("included", True):  # the weights file holds the encoder: never re-read its original weights
            params.update(encoder=encoder.get("architecture", "resnet18"), encoder_weights=None,
                          encoder_args=encoder.get("model_args") or None)  # fmt: skip
            params.update({k: encoder[k] for k in ("input_mean", "input_std") if k in encoder})
        model = cls(card["genes"], microns_per_pixel=card["microns_per_pixel"], **params)
        expected = encoder.get("weights", {}).get("sha256")
        if not encoder.get("included", True) and model._encoder_source.origin.get("sha256") != expected:
            raise ModelFileError(
                f"The encoder weights at {model._encoder_source.origin['source']!r} are not those this model was "
                f"trained with (sha256 {expected}); restore them, or {FILE_FIX} with `include_encoder=True`."
            )
        return model

    def _complete_state(self, state: dict, card: dict) -> dict:
        if card.get("encoder", {}).get("included", True):
            return state
        prefix = self._encoder_prefix()
        return {**{prefix + k: v for k, v in self.module.encoder.weights_module.state_dict().items()}, **state}
