"""Private numba kernels: arrays in, arrays out."""

from ._arrays import aggregate_circles, aggregate_labels, aggregate_spans, aggregate_squares, square_grid
from ._spans import Spans, circle_spans, square_spans

__all__ = [
    "Spans",
    "aggregate_circles",
    "aggregate_labels",
    "aggregate_spans",
    "aggregate_squares",
    "circle_spans",
    "square_grid",
    "square_spans",
]
