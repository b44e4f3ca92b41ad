"""Tools (``st.tl``): aggregation, model fitting and prediction."""

from ..model._base import load_model
from ._aggregate import aggregate
from ._aggregate_arrays import Aggregated, aggregate_array
from ._fit import fit
from ._predict import predict

__all__ = ["Aggregated", "aggregate", "aggregate_array", "fit", "load_model", "predict"]
