"""Named evaluation protocols: which genes and which section split a published number uses, written to disk."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .._logging import logger

#: The protocols :func:`protocol` knows.
PROTOCOLS = ("pixnet_top250", "thitogene_785")
#: Genes of the PixNet protocol: the highest mean of log1p(count / total * 1e4) over the training sections.
PIXNET_N_TOP = 250
PIXNET_NORMALIZE = {"target_sum": 1e4, "log": True}
#: The THItoGene / Hist2ST her2st gene list (785 genes despite its name), relative to a data root.
THITOGENE_GENE_LIST = "thitogene/her_hvg_cut_1000.npy"
SPLIT_FILE = "split.json"
GENES_FILE = "genes.txt"
RESULTS_FILE = "results.csv"


@dataclass(frozen=True)
class Protocol:
    """Genes and section split of a named evaluation protocol, from :func:`protocol`.

    Attributes
    ----------
    name
        The protocol, e.g. ``"pixnet_top250"``.
    folds
        ``(train, test)`` section names of each fold.
    fold_genes
        The genes of each fold, in rank or list order (a gene ranking uses only that fold's training sections).
    params
        How the protocol was built: sections, groups, gene rule and its parameters.
    """

    name: str
    folds: list[tuple[list[str], list[str]]]
    fold_genes: list[list[str]]
    params: dict = field(default_factory=dict)

    @property
    def genes(self) -> list[str]:
        """The genes, when every fold uses the same ones (a fixed list, or a single fold); see ``fold_genes``."""
        if any(genes != self.fold_genes[0] for genes in self.fold_genes[1:]):
            raise ValueError(
                f"The {len(self.folds)} folds of '{self.name}' rank their genes on different training sections, so "
                "they have different genes; use `fold_genes[i]` for fold i."
            )
        return list(self.fold_genes[0])

    def write(self, directory: str | Path, *, results=None, overwrite: bool = False) -> Path:
        """Write the protocol (and results) to a new directory, atomically.

        Parameters
        ----------
        directory
            Directory to create.
        results
            A :class:`pandas.DataFrame` of results obtained under this protocol (e.g. from
            :func:`histo2st.tl.evaluate`), written with its index to ``results.csv``.
        overwrite
            Replace an existing ``directory``.

        Returns
        -------
        The directory, holding ``split.json`` (name, parameters and folds, each naming its gene file), ``genes.txt``
        (one gene per line; ``genes_fold{i}.txt`` per fold when folds have different genes) and ``results.csv``.
        """
        directory = Path(directory)
        if directory.exists() and not overwrite:
            raise FileExistsError(f"'{directory}' already exists. Pass `overwrite=True` to replace it.")
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = directory.with_name(f".{directory.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            shared = all(genes == self.fold_genes[0] for genes in self.fold_genes)
            files = [GENES_FILE] * len(self.folds) if shared else [f"genes_fold{i}.txt" for i in range(len(self.folds))]
            for name, genes in dict(zip(files, self.fold_genes, strict=True)).items():
                (tmp / name).write_text("".join(f"{g}\n" for g in genes))
            folds = [
                {"train": list(train), "test": list(test), "genes": name}
                for (train, test), name in zip(self.folds, files, strict=True)
            ]
            split = {"name": self.name, "params": self.params, "folds": folds}
            (tmp / SPLIT_FILE).write_text(json.dumps(split, indent=2))
            if results is not None:
                results.to_csv(tmp / RESULTS_FILE)
            if directory.exists():
                trash = directory.with_name(f".{directory.name}.old-{uuid.uuid4().hex[:8]}")
                directory.rename(trash)
                tmp.rename(directory)
                shutil.rmtree(trash)
            else:
                tmp.rename(directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        logger.info(f"Wrote protocol '{self.name}' to '{directory}'.")
        return directory

    @classmethod
    def read(cls, directory: str | Path) -> Protocol:
        """Read a protocol written by :meth:`write`."""
        directory = Path(directory)
        path = directory / SPLIT_FILE
        if not path.is_file():
            raise FileNotFoundError(f"No '{SPLIT_FILE}' in '{directory}': is it a directory written by `write`?")
        split = json.loads(path.read_text())
        folds = [(list(f["train"]), list(f["test"])) for f in split["folds"]]
        genes = [[g for g in (directory / f["genes"]).read_text().splitlines() if g] for f in split["folds"]]
        return cls(name=split["name"], folds=folds, fold_genes=genes, params=split["params"])


def protocol(
    name: str,
    data,
    *,
    test: str | Sequence[str] | None = None,
    group_by: str | Mapping[str, str] | None = None,
    root: str | Path | None = None,
) -> Protocol:
    """Build a named evaluation protocol on these sections: the genes and the train/test split.

    Splits are by section, so no spot of a test section is seen in training. Grouping keeps all sections of a group
    (a patient) on the same side.

    Parameters
    ----------
    name
        - ``"pixnet_top250"``: the PixNet paper's genes, the 250 with the highest mean log1p(count / total x 1e4)
          over the spots of the training sections of each fold (:func:`histo2st.pp.normalize` with ``target_sum=1e4``
          on copies of the tables, then :func:`histo2st.pp.select_genes` with ``method="mean"``), among the genes
          measured in every section.
        - ``"thitogene_785"``: the fixed her2st list of THItoGene and Hist2ST (``her_hvg_cut_1000.npy``, 785 genes),
          which every section must measure.
    data
        The sections: a dict ``{name: sdata}``, a list, or one SpatialData (named as in :func:`histo2st.tl.evaluate`).
        Their tables must hold raw counts in ``layers["counts"]`` over all genes (``"pixnet_top250"``).
    test
        Sections (or, with ``group_by``, groups) to hold out as one fold; with ``group_by`` the whole group of each
        named section is held out. ``None`` gives one fold per group, each held out in turn (leave-one-section-out,
        or leave-one-patient-out).
    group_by
        ``None``: every section is its own group. ``"patient"``: the her2st naming, where the letters of a section
        name are the patient (``"C2"`` -> ``"C"``). Or a mapping from every section name to its group.
    root
        Data root holding ``thitogene/her_hvg_cut_1000.npy`` (``"thitogene_785"``); default the roots searched by
        :func:`histo2st.datasets.her2st` (``$HISTO2ST_DATA``, ``../shared/data``, the download cache).

    Returns
    -------
    :class:`Protocol` with the folds, their genes and ``params`` (``sections``, ``groups``, ``group_by``, ``test``
    and the gene rule: ``n_top`` and ``normalize``, or ``gene_list``). Write it with :meth:`Protocol.write`.
    """
    from .._core import as_samples

    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {name!r}; choose one of {list(PROTOCOLS)}.")
    samples = as_samples(data)
    groups = _groups(list(samples), group_by)
    folds = _folds(groups, test, group_by is not None)
    params = {
        "sections": list(samples),
        "groups": groups,
        "group_by": group_by if group_by is None or isinstance(group_by, str) else "mapping",
        "test": test if test is None or isinstance(test, str) else list(test),
    }
    if name == "pixnet_top250":
        fold_genes = _top_by_mean(samples, folds)
        params.update(n_top=PIXNET_N_TOP, normalize=dict(PIXNET_NORMALIZE))
    else:
        path = _thitogene_list(root)
        fold_genes = [_listed_genes(samples, path)] * len(folds)
        params["gene_list"] = str(path)
    return Protocol(name=name, folds=folds, fold_genes=fold_genes, params=params)


def _groups(sections: list[str], group_by) -> dict[str, str]:
    if group_by is None:
        return {s: s for s in sections}
    if isinstance(group_by, str):
        if group_by != "patient":
            raise ValueError(f"`group_by` must be None, 'patient' or a mapping section -> group, got {group_by!r}.")
        groups = {}
        for section in sections:
            match = re.fullmatch(r"([A-Za-z]+)\d+", section)
            if match is None:
                raise ValueError(
                    f"Cannot read a patient from section name '{section}' (her2st names are a patient letter and a "
                    "number, e.g. 'C2'); pass `group_by={section: patient}`."
                )
            groups[section] = match.group(1)
        return groups
    if not isinstance(group_by, Mapping):
        raise TypeError(f"`group_by` must be None, 'patient' or a mapping, got {type(group_by).__name__}.")
    missing = [s for s in sections if s not in group_by]
    if missing:
        raise ValueError(f"`group_by` gives no group for sections {missing}; map every section to a group.")
    return {s: str(group_by[s]) for s in sections}


def _folds(groups: dict[str, str], test, grouped: bool) -> list[tuple[list[str], list[str]]]:
    sections = list(groups)
    if test is None:
        held_out = [[g] for g in dict.fromkeys(groups.values())]
        if len(held_out) < 2:
            raise ValueError(f"Leave-one-out needs at least two groups; all sections {sections} are in one.")
    else:
        names = [test] if isinstance(test, str) else list(test)
        chosen = []
        for item in names:
            if item in groups:
                chosen.append(groups[item])
            elif grouped and item in groups.values():
                chosen.append(item)
            else:
                raise ValueError(f"Test section {item!r} is not among the sections {sections}.")
        held_out = [list(dict.fromkeys(chosen))]
    folds = []
    for out in held_out:
        test_sections = [s for s in sections if groups[s] in out]
        train = [s for s in sections if groups[s] not in out]
        if not train:
            raise ValueError(
                f"Holding out {test_sections} leaves no training section (groups: {groups}); give more sections or "
                "hold out fewer."
            )
        folds.append((train, test_sections))
    return folds


def _spot_tables(samples: dict) -> dict:
    """Light copies holding only each section's spot table (a copy) and the shapes it annotates."""
    import copy

    import spatialdata as sd

    from .._core import spot_table_keys

    light = {}
    for name, sdata in samples.items():
        key, shapes_key = spot_table_keys(sdata, name, None)
        light[name] = sd.SpatialData(
            shapes={shapes_key: sdata.shapes[shapes_key]},
            tables={key: sdata.tables[key].copy()},
            attrs=copy.deepcopy(dict(sdata.attrs)),
        )
    return light


def _top_by_mean(samples: dict, folds) -> list[list[str]]:
    from .. import pp
    from .._core import get_scale

    light = _spot_tables(samples)
    pp.normalize(light, **PIXNET_NORMALIZE)
    keys = {name: get_scale(sdata).table_key for name, sdata in light.items()}
    common = None
    for name, sdata in light.items():
        var_names = sdata.tables[keys[name]].var_names
        common = var_names if common is None else common[common.isin(var_names)]
    for name, sdata in light.items():
        # after normalizing over all genes, keep those every section measures so every test section can be scored
        sdata.tables[keys[name]] = sdata.tables[keys[name]][:, common].copy()
    chosen = []
    for train, _ in folds:
        training = {s: light[s] for s in train}
        pp.select_genes(training, n_top=PIXNET_N_TOP, method="mean", subset=False)
        chosen.append(_selected(training))
    return chosen


def _listed_genes(samples: dict, path: Path) -> list[str]:
    from .. import pp

    tables = _spot_tables(samples)
    pp.select_genes(tables, method=path, subset=False)
    return _selected(tables)


def _selected(samples: dict) -> list[str]:
    """The genes ``select_genes`` recorded (the same in every sample's table)."""
    from .._constants import ATTRS_KEY
    from .._core import get_scale

    sdata = next(iter(samples.values()))
    return sdata.tables[get_scale(sdata).table_key].uns[ATTRS_KEY]["select_genes"]["genes"].tolist()


def _thitogene_list(root) -> Path:
    from .._core import candidate_roots

    roots = candidate_roots(root)
    for candidate in roots:
        if (candidate / THITOGENE_GENE_LIST).is_file():
            return candidate / THITOGENE_GENE_LIST
    raise FileNotFoundError(
        f"The THItoGene gene list '{THITOGENE_GENE_LIST}' is in none of the data roots {[str(r) for r in roots]}. Get "
        "`her_hvg_cut_1000.npy` from the THItoGene (or Hist2ST) GitHub repository, put it at "
        f"<data root>/{THITOGENE_GENE_LIST} and pass `root=<data root>` or set HISTO2ST_DATA."
    )
