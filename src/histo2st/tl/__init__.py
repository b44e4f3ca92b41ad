"""Tools (``st.tl``): aggregation, model fitting, prediction and evaluation."""

from .._core._aggregate_arrays import Aggregated, aggregate_array
from ._aggregate import aggregate
from ._calibrate import calibrate
from ._cohort import predict_cohort
from ._downstream import compare_downstream
from ._evaluate import evaluate, gene_scores
from ._evaluate_dense import evaluate_dense
from ._fit import fit
from ._predict import predict
from ._pretrain import pretrain_encoder
from ._protocols import PROTOCOLS, Protocol, protocol
from ._registry import load_model

__all__ = [
    "PROTOCOLS",
    "Aggregated",
    "Protocol",
    "aggregate",
    "aggregate_array",
    "calibrate",
    "compare_downstream",
    "evaluate",
    "evaluate_dense",
    "fit",
    "gene_scores",
    "load_model",
    "predict",
    "predict_cohort",
    "pretrain_encoder",
    "protocol",
]
