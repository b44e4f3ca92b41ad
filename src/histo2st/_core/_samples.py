"""Several samples: a dict (or list) of SpatialData, one per section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .._constants import ATTRS_KEY


def as_samples(data) -> dict:
    """Normalize one or several samples to ``{sample_name: SpatialData}``.

    histo2st handles several sections as a ``dict`` of SpatialData keyed by sample name, or a ``list`` of them (keyed
    by each one's ``attrs["histo2st"]["sample"]``). One SpatialData is a dict of one. Every function that accepts
    several samples goes through here, so the three forms are interchangeable.
    """
    import spatialdata as sd

    if isinstance(data, sd.SpatialData):
        return {_sample_name(data, 0): data}
    if isinstance(data, Mapping):
        items = dict(data)
    elif isinstance(data, Sequence) and not isinstance(data, str):
        items = {}
        for i, sdata in enumerate(data):
            name = _sample_name(sdata, i)
            if name in items:
                raise ValueError(
                    f"Two samples are both named '{name}'. Pass a dict {{name: sdata}} to name them, or set "
                    "`sdata.attrs['histo2st']['sample']`."
                )
            items[name] = sdata
    else:
        raise TypeError(f"Expected a SpatialData, or a list or dict of them, got {type(data).__name__}.")
    if not items:
        raise ValueError("No samples were given.")
    for name, sdata in items.items():
        if not isinstance(sdata, sd.SpatialData):
            raise TypeError(f"Sample '{name}' is a {type(sdata).__name__}, not a SpatialData.")
    return items


def _sample_name(sdata, index: int) -> str:
    meta = sdata.attrs.get(ATTRS_KEY) or {}
    return str(meta.get("sample", f"sample_{index}"))
