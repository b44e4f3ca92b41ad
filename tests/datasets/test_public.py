"""Public data set loaders: local lookup, the pooch download path (on file:// copies) and its errors. No network."""

import hashlib

import numpy as np
import pandas as pd
import pytest

import histo2st as st
from histo2st._core import _paths
from histo2st.datasets import _public


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No data root anywhere: empty cwd, no $HISTO2ST_DATA, a fresh cache, and no source-tree shared/data."""
    monkeypatch.delenv(_paths.DATA_ENV, raising=False)
    monkeypatch.setenv(_paths.CACHE_ENV, str(tmp_path / "cache"))
    work = tmp_path / "work" / "project"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr(_paths, "_beside_project", list)
    return tmp_path


def _file_registry(monkeypatch, shared_data, names):
    registry = {name: (f"file://{shared_data / name}", _public.REGISTRY[name][1]) for name in names}
    monkeypatch.setattr(_public, "REGISTRY", registry)


def test_registry_hashes_match_local_copies(shared_data):
    import gzip

    for name, (url, sha256) in _public.REGISTRY.items():
        assert url.startswith("https://github.com/")
        path = shared_data / name
        data = path.read_bytes() if path.is_file() else gzip.decompress(path.with_name(path.name + ".gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == sha256, name


def test_her2st_from_data_root(shared_data, monkeypatch):
    monkeypatch.delenv(_paths.DATA_ENV, raising=False)
    sdata = st.datasets.her2st("C2", root=shared_data)
    assert sdata.attrs["histo2st"]["sample"] == "C2"
    assert sdata.tables["table"].n_obs == 187


def test_her2st_from_env(shared_data, monkeypatch, isolated):
    monkeypatch.setenv(_paths.DATA_ENV, str(shared_data))
    assert st.datasets.her2st("C3").tables["table"].n_obs == 180


def test_her2st_download_path(shared_data, monkeypatch, isolated):
    names = _public._her2st_names("C4")
    _file_registry(monkeypatch, shared_data, names)
    sdata = st.datasets.her2st("C4")
    assert sdata.tables["table"].n_obs == 184
    cache = isolated / "cache"
    assert all((cache / name).is_file() for name in names)
    # a second call finds the cached files and does not download again
    for name in names:
        monkeypatch.setitem(_public.REGISTRY, name, ("file:///nonexistent", _public.REGISTRY[name][1]))
    assert st.datasets.her2st("C4").tables["table"].n_obs == 184


def test_mouse_olfactory_bulb_download_path(shared_data, monkeypatch, isolated):
    import gzip

    # STUtility serves the count table uncompressed; the local copy is gzipped, so serve a decompressed copy
    mirror = isolated / "mirror" / "stutility_mob"
    mirror.mkdir(parents=True)
    (mirror / "MOB1.tsv").write_bytes(gzip.decompress((shared_data / "stutility_mob" / "MOB1.tsv.gz").read_bytes()))
    names = ["stutility_mob/MOB1.tsv", "stutility_mob/MOB1.jpg", "stutility_mob/alignment_table_MOB1.tsv"]
    registry = {n: (f"file://{shared_data / n}", _public.REGISTRY[n][1]) for n in names[1:]}
    registry[names[0]] = (f"file://{mirror / 'MOB1.tsv'}", _public.REGISTRY[names[0]][1])
    monkeypatch.setattr(_public, "REGISTRY", registry)
    sdata = st.datasets.mouse_olfactory_bulb(1)
    assert sdata.tables["table"].n_obs == 379
    assert sdata.attrs["histo2st"]["platform"] == "st_2k"


def test_sha256_mismatch(monkeypatch, isolated):
    source = isolated / "served.tsv"
    source.write_text("x\ty\n1\t1\n")
    monkeypatch.setattr(_public, "REGISTRY", {"demo/served.tsv": (f"file://{source}", "0" * 64)})
    with pytest.raises(ValueError, match="does not have the registered sha256"):
        _public.fetch("demo/served.tsv")


def test_no_data_no_network(monkeypatch, isolated):
    names = _public._her2st_names("C2")
    monkeypatch.setattr(_public, "REGISTRY", {n: ("https://127.0.0.1:9/unreachable", "0" * 64) for n in names})
    with pytest.raises(FileNotFoundError, match=r"download failed.*HISTO2ST_DATA=<data root>"):
        st.datasets.her2st("C2")


def test_unknown_section(isolated):
    with pytest.raises(ValueError, match=r"Unknown her2st section 'Z9'.*\['C2', 'C3', 'C4', 'C5'\]"):
        st.datasets.her2st("Z9")
    with pytest.raises(ValueError, match="choose 1 or 2"):
        st.datasets.mouse_olfactory_bulb(3)


def test_local_her2st_repository_any_section(tmp_path):
    """A local clone is read for sections that cannot be downloaded."""
    from PIL import Image

    data = tmp_path / "her2st" / "data"
    for sub in ("ST-cnts", "ST-spotfiles", "ST-imgs/H/H9"):
        (data / sub).mkdir(parents=True)
    xs, ys = np.meshgrid(np.arange(1, 4), np.arange(1, 4), indexing="ij")
    spots = pd.DataFrame({"x": xs.ravel(), "y": ys.ravel(), "new_x": xs.ravel(), "new_y": ys.ravel()})
    spots = spots.assign(pixel_x=20 + 30.0 * (spots.x - 1), pixel_y=20 + 30.0 * (spots.y - 1), selected=1)
    spots.to_csv(data / "ST-spotfiles" / "H9_selection.tsv", sep="\t", index=False)
    ids = [f"{x}x{y}" for x, y in zip(spots.x, spots.y, strict=True)]
    pd.DataFrame(np.ones((9, 2), int), index=ids, columns=["A", "B"]).to_csv(data / "ST-cnts" / "H9.tsv.gz", sep="\t")
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(data / "ST-imgs" / "H" / "H9" / "x.jpg")
    sdata = st.datasets.her2st("H9", root=tmp_path)
    assert sdata.tables["table"].n_obs == 9
