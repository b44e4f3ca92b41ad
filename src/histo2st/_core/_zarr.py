"""Writing zarr without notices a user cannot act on."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: anndata (0.12) announces on every table written to a zarr v3 store that sharding will become its default, unless
#: ``anndata.settings.auto_shard_zarr_v3`` is set; zarr says the same of automatic shard shapes.
ZARR_NOTICES = (r".*autosharding.*", r".*[Aa]utomatic shard shape inference.*")


@contextmanager
def quiet_zarr() -> Iterator[None]:
    """Write stores as today's releases do (no sharding), chosen explicitly, so no write announces the default.

    Tables are written unsharded: their arrays are small, and a sharded store needs zarr >= 3 to read. The setting is
    restored on exit; a user's own writes outside histo2st keep anndata's setting.
    """
    import anndata as ad

    with warnings.catch_warnings():
        for message in ZARR_NOTICES:
            warnings.filterwarnings("ignore", message=message, category=UserWarning)
        if "auto_shard_zarr_v3" in dir(ad.settings):
            with ad.settings.override(auto_shard_zarr_v3=False):
                yield
        else:
            yield


def write_to_store(sdata, names) -> None:
    """Write the elements ``names`` of a zarr-backed sample to its store, replacing those of the same name on disk.

    Every histo2st function that adds or changes elements of a backed sample ends with this, so the store holds what
    the sample in memory holds (as ``predict`` has always done); nothing happens for a sample that is not backed.
    """
    if not sdata.is_backed() or sdata.path is None or not Path(sdata.path).is_dir():
        return
    on_disk = {path.split("/")[-1] for path in sdata.elements_paths_on_disk()}
    with quiet_zarr():
        for name in names:
            if name in on_disk:
                sdata.delete_element_from_disk(name)
            sdata.write_element(name)
