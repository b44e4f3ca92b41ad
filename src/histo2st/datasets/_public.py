"""Public data sets: found in a local data root, else downloaded once with pooch and checked by sha256."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from .._core import cache_dir, candidate_roots
from .._core._paths import DATA_ENV
from .._logging import logger

_HER2ST = "https://github.com/almaan/her2st/raw/{commit}/data/{path}"
_HER2ST_CNTS = "e75e5c53a994726a8ad251aaf653a02d7932eb6a"
_HER2ST_FILES = "9f2260c6aa8347996955d53f0a5f06ac14c93470"
_STUTILITY = "https://github.com/jbergenstrahle/STUtility/raw/{commit}/inst/extdata/counts/{name}"

#: her2st section -> H&E file name (the image names do not follow the section names).
HER2ST_IMAGES = {
    "C2": "5714_HE_BT_C2.jpg",
    "C3": "5714_HE_BT_D1.jpg",
    "C4": "5714_HE_BT_D2.jpg",
    "C5": "5714_HE_BT_E1.jpg",
}

#: Relative path in the data root -> (public URL, sha256). The hashes were computed from the public files.
#: STUtility ships the MOB count tables uncompressed; a local root may hold them gzipped (``.tsv.gz``).
REGISTRY: dict[str, tuple[str, str]] = {
    "her2st/data/ST-cnts/C2.tsv.gz": (
        _HER2ST.format(commit=_HER2ST_CNTS, path="ST-cnts/C2.tsv.gz"),
        "c1c59ea6cffae36b9ecb561b8e2a97e3aa5f4085f748e991a0e330ed9d09773d",
    ),
    "her2st/data/ST-cnts/C3.tsv.gz": (
        _HER2ST.format(commit=_HER2ST_CNTS, path="ST-cnts/C3.tsv.gz"),
        "e00c55a3eb9caac5d9c71b8906aae8be8b38f93e23938f4a0ebee17683ef6a2a",
    ),
    "her2st/data/ST-cnts/C4.tsv.gz": (
        _HER2ST.format(commit=_HER2ST_CNTS, path="ST-cnts/C4.tsv.gz"),
        "33201f76d41d7131dc600a0f87d9a70383af3503e81698b4d11e6f2e8d73e9da",
    ),
    "her2st/data/ST-cnts/C5.tsv.gz": (
        _HER2ST.format(commit=_HER2ST_CNTS, path="ST-cnts/C5.tsv.gz"),
        "c0f310315ca6110d74dbdf7011e5b42432ba0b8eb5f001824764911988f39338",
    ),
    "her2st/data/ST-spotfiles/C2_selection.tsv": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-spotfiles/C2_selection.tsv"),
        "235b5f4306b3b57c628ffc82c98c7109602474fbcc79a917b9c50517f99b6b1c",
    ),
    "her2st/data/ST-spotfiles/C3_selection.tsv": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-spotfiles/C3_selection.tsv"),
        "7fd76c13370b7804ac3bb377b846d22485cf9223f9dd8dfc25be06e5aaf65755",
    ),
    "her2st/data/ST-spotfiles/C4_selection.tsv": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-spotfiles/C4_selection.tsv"),
        "47e79f3b9dbfa3a8c18af9e948ba7ba4bf0a75ea1b4c292bc714ced7d0917d4c",
    ),
    "her2st/data/ST-spotfiles/C5_selection.tsv": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-spotfiles/C5_selection.tsv"),
        "2114cc3b4da759772112897f1e247d5443c9f8c808e6a9a952eb4fda379a194c",
    ),
    "her2st/data/ST-imgs/C/C2/5714_HE_BT_C2.jpg": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-imgs/C/C2/5714_HE_BT_C2.jpg"),
        "26e2f73ae840cdd46c5bba405aae181f13a56a376b9848dff23f7a9c5de7f19e",
    ),
    "her2st/data/ST-imgs/C/C3/5714_HE_BT_D1.jpg": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-imgs/C/C3/5714_HE_BT_D1.jpg"),
        "0005a92674014d473040a28f0afca89ce5fa5c44019b479b638ceb3272ceb568",
    ),
    "her2st/data/ST-imgs/C/C4/5714_HE_BT_D2.jpg": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-imgs/C/C4/5714_HE_BT_D2.jpg"),
        "f40607eb1d5f0d125decd71c48b0c5d29cf6776ad92297fd185631208c82d6f2",
    ),
    "her2st/data/ST-imgs/C/C5/5714_HE_BT_E1.jpg": (
        _HER2ST.format(commit=_HER2ST_FILES, path="ST-imgs/C/C5/5714_HE_BT_E1.jpg"),
        "34028ea41e376396b50c42b0a11a7e689c85be4a8022e668d0a09cc128c04c65",
    ),
    "stutility_mob/MOB1.tsv": (
        _STUTILITY.format(commit="63061c829763ed01bccf49c72429f7aa34215330", name="MOB1.tsv"),
        "82c0691f800355369fd8a72ff44ba1e3112d4e44a790f490a9fa267876a9352e",
    ),
    "stutility_mob/MOB2.tsv": (
        _STUTILITY.format(commit="513d4f0cf7852a6ff0d142e5e6e08b53493326db", name="MOB2.tsv"),
        "449dcc351ede5c63f9afe313479dbb830ba32c6e86b56b258276304102d1f7e9",
    ),
    "stutility_mob/MOB1.jpg": (
        _STUTILITY.format(commit="513d4f0cf7852a6ff0d142e5e6e08b53493326db", name="MOB1.jpg"),
        "c1c292187221bab077ac1b15e95cf665db35684c98d6193af56d2e8b7772fe20",
    ),
    "stutility_mob/MOB2.jpg": (
        _STUTILITY.format(commit="8626b1dcbe98be8fce76e57e40006b6e5f1e84b5", name="MOB2.jpg"),
        "1079fe52f600ec212a6a59cef76b8697fcd776d0cdb10461ad3bb738eaa5c0b6",
    ),
    "stutility_mob/alignment_table_MOB1.tsv": (
        _STUTILITY.format(commit="3a593c2fc2bd151dc6f55e2d9195eaa92ab904b3", name="alignment_table_MOB1.tsv"),
        "91ade06cf93bc0b3cd728846c34e310a8365200d1ad33498e6a0eb6951a92164",
    ),
    "stutility_mob/alignment_table_MOB2.tsv": (
        _STUTILITY.format(commit="581498ba174442ac9c2ae26b25efd0bcc9c1d12c", name="alignment_table_MOB2.tsv"),
        "6d86b226386b0a08f825b3bff4b5c359f00fd52d3f53d77db0376b0f7e0ec30d",
    ),
}


def her2st(section: str = "C3", root: str | Path | None = None, **kwargs):
    """Load a section of the her2st HER2-positive breast cancer data set (Andersson et al., Nat Commun 2021).

    Looks for the files in a local data root (``root``, then ``$HISTO2ST_DATA``, then ``../shared/data`` beside the
    working directory or the source tree, then the download cache); otherwise downloads the public files of
    sections C2-C5 from the her2st GitHub repository with pooch, checking their sha256.

    Parameters
    ----------
    section
        Section name, e.g. ``"C3"``. Any section works from a local copy of the repository; C2-C5 can be downloaded.
    root
        A data root holding ``her2st/data/...``, or the her2st repository itself.
    **kwargs
        Passed to :func:`histo2st.io.read_her2st` (e.g. ``microns_per_pixel``).

    Returns
    -------
    :class:`spatialdata.SpatialData` of the section (see :func:`histo2st.io.read_her2st`).
    """
    from ..io import read_her2st

    section = str(section)
    names = _her2st_names(section)
    if root is not None and (Path(root) / "data" / "ST-cnts").is_dir():
        return read_her2st(root, section, **kwargs)
    local = _local_root(names, root)
    if local is None and section not in HER2ST_IMAGES:
        raise ValueError(
            f"Unknown her2st section '{section}' and no local copy found (looked in {_describe(root)}). Sections that "
            f"can be downloaded: {sorted(HER2ST_IMAGES)}; for other sections put a clone of "
            "https://github.com/almaan/her2st (data/ST-cnts, ST-spotfiles, ST-imgs) under <root>/her2st."
        )
    base = local if local is not None else _fetch_all(names, root)
    return read_her2st(base / "her2st", section, **kwargs)


def mouse_olfactory_bulb(section: int = 1, root: str | Path | None = None, **kwargs):
    """Load a mouse olfactory bulb section on the legacy ST 2k array (STUtility example data, MIT license).

    Looked up like :func:`her2st`; downloaded from the STUtility GitHub repository when absent.

    Parameters
    ----------
    section
        1 or 2.
    root
        A data root holding ``stutility_mob/``.
    **kwargs
        Passed to :func:`histo2st.io.read_st` (e.g. ``microns_per_pixel``).

    Returns
    -------
    :class:`spatialdata.SpatialData` of the section, sample name ``"MOB<section>"`` (see :func:`histo2st.io.read_st`).
    """
    from ..io import read_st

    if section not in (1, 2):
        raise ValueError(f"Unknown mouse olfactory bulb section {section!r}; choose 1 or 2.")
    names = [f"stutility_mob/MOB{section}.tsv", f"stutility_mob/MOB{section}.jpg"]
    names.append(f"stutility_mob/alignment_table_MOB{section}.tsv")
    base = _local_root(names, root) or _fetch_all(names, root)
    folder = base / "stutility_mob"
    counts = _present(folder / f"MOB{section}.tsv")
    return read_st(
        counts,
        folder / f"alignment_table_MOB{section}.tsv",
        folder / f"MOB{section}.jpg",
        sample=f"MOB{section}",
        **kwargs,
    )


def fetch(name: str, *, cache: Path | None = None) -> Path:
    """Download one registered file into the cache (once), check its sha256 and return its path.

    ``file://`` URLs are copied, so a mirror on a shared disk works the same as the public URL.
    """
    import pooch

    if name not in REGISTRY:
        raise KeyError(f"'{name}' is not a registered public file; registered: {sorted(REGISTRY)}.")
    url, sha256 = REGISTRY[name]
    cache = Path(cache or cache_dir())
    # pooch creates the cache folder but not the sub-folders of a name such as "her2st/data/ST-cnts/C2.tsv.gz"
    (cache / name).parent.mkdir(parents=True, exist_ok=True)
    try:
        path = pooch.retrieve(
            url, known_hash=f"sha256:{sha256}", fname=name, path=cache, downloader=_download, progressbar=False
        )
    except ValueError as err:
        if "hash" not in str(err).lower():
            raise
        raise ValueError(
            f"The downloaded '{name}' from {url} does not have the registered sha256 ({sha256}); the file was "
            f"changed upstream or corrupted in transfer. Delete it from '{cache}' and retry, or put a verified copy "
            f"under <data root>/{name} and set {DATA_ENV}. ({err})"
        ) from None
    return Path(path)


def _fetch_all(names: list[str], root: str | Path | None) -> Path:
    cache = cache_dir()
    try:
        for name in names:
            fetch(name, cache=cache)
    except (OSError, ImportError) as err:
        raise FileNotFoundError(
            f"Could not find {names} locally (looked in {_describe(root)}) and the download failed ({err}). Put the "
            f"files at <data root>/<path above> (the layout of the public repositories) and pass `root=<data root>` "
            f"or set {DATA_ENV}=<data root>."
        ) from err
    logger.info(f"Downloaded {len(names)} files to '{cache}'.")
    return cache


def _local_root(names: list[str], root: str | Path | None) -> Path | None:
    for candidate in candidate_roots(root):
        if all(_exists(candidate / name) for name in names):
            return candidate
    return None


def _her2st_names(section: str) -> list[str]:
    names = [f"her2st/data/ST-cnts/{section}.tsv.gz", f"her2st/data/ST-spotfiles/{section}_selection.tsv"]
    if section in HER2ST_IMAGES:
        names.append(f"her2st/data/ST-imgs/{section[0]}/{section}/{HER2ST_IMAGES[section]}")
    return names


def _exists(path: Path) -> bool:
    return path.is_file() or path.with_name(path.name + ".gz").is_file()


def _present(path: Path) -> Path:
    return path if path.is_file() else path.with_name(path.name + ".gz")


def _describe(root: str | Path | None) -> str:
    return ", ".join(f"'{p}'" for p in candidate_roots(root))


def _download(url: str, output_file, pooch_obj, check_only: bool = False):
    """Pooch downloader: copies ``file://`` URLs, uses pooch's HTTP downloader for everything else."""
    import pooch

    if urlparse(url).scheme != "file":
        return pooch.HTTPDownloader(progressbar=False)(url, output_file, pooch_obj, check_only=check_only)
    source = Path(url2pathname(urlparse(url).path))
    if check_only:
        return source.is_file()
    if not source.is_file():
        raise FileNotFoundError(f"'{source}' (from {url}) does not exist.")
    if hasattr(output_file, "write"):
        with open(source, "rb") as handle:
            shutil.copyfileobj(handle, output_file)
    else:
        shutil.copyfile(source, output_file)
    return None
