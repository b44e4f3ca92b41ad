"""The tutorials run end to end at small settings, and the executed copies the docs render match them."""

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TUTORIALS = ROOT / "tutorials"
STORED = ROOT / "docs" / "tutorials"
CODE_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(.*?)```", flags=re.S)


def _code_cells(path: Path) -> list[str]:
    return CODE_CELL.findall(path.read_text())


def _with(code: str, **values: str) -> str:
    """The code with each top-level ``NAME = ...`` line of the tutorial's parameters replaced by ``NAME = value``."""
    for name, value in values.items():
        code, n = re.subn(rf"^{name} = .*$", lambda _, v=value, k=name: f"{k} = {v}", code, count=1, flags=re.M)
        assert n == 1, f"the tutorial no longer sets `{name} = ...`; update this test"
    return code


def _run(name: str, monkeypatch, tmp_path, **values: str) -> tuple[dict, list]:
    """Execute a tutorial's code cells in ``tmp_path``; returns its namespace and the figures it showed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []

    def show(*args, **kwargs):
        shown.extend(plt.figure(n) for n in plt.get_fignums())
        plt.close("all")

    monkeypatch.setattr(plt, "show", show)
    monkeypatch.chdir(tmp_path)
    code = _with("\n".join(_code_cells(TUTORIALS / f"{name}.md")), **values)
    namespace: dict = {}
    exec(compile(code, f"{name}.md", "exec"), namespace)
    return namespace, shown


def _drawn(fig) -> bool:
    return any(ax.images or ax.lines or ax.collections for ax in fig.axes)


@pytest.mark.parametrize("name", ["quickstart", "her2st"])
def test_stored_notebook_matches_tutorial(name):
    # the docs render docs/tutorials/*.ipynb (executed by docs/execute_tutorials.py); they must be the current code
    stored = STORED / f"{name}.ipynb"
    rerun = f"run `.venv/bin/python docs/execute_tutorials.py {name}`"
    assert stored.is_file(), f"{stored} is missing: {rerun}"
    cells = [c for c in json.loads(stored.read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]).strip() for c in cells]
    expected = [c.strip() for c in _code_cells(TUTORIALS / f"{name}.md")]
    assert sources == expected, f"{stored.name} is out of date with tutorials/{name}.md: {rerun}"
    errors = [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors, f"{stored.name} was stored with an error: {errors[0]['ename']}: {errors[0]['evalue']}"
    plotting = [c for c in cells if "st.pl." in "".join(c["source"])]
    assert plotting
    for cell in plotting:
        images = [o for o in cell["outputs"] if any(m.startswith("image/") for m in o.get("data", {}))]
        assert images, f"{stored.name}: the cell `{''.join(cell['source'])[:60]}...` has no stored figure"


@pytest.mark.slow
def test_quickstart_runs_at_small_settings(monkeypatch, tmp_path):
    ns, figures = _run("quickstart", monkeypatch, tmp_path, SIZE_UM="400", MAX_TIME="5")
    sdata, model = ns["sdata"], ns["model"]
    assert {"pred", "truth"} <= set(sdata.images)
    for bins in ("pred_square_8um", "pred_square_16um"):
        assert sdata[bins].n_obs > 0
        assert list(sdata[bins].var_names) == list(model.genes)
    spots = ns["spots"]
    assert list(spots.index) == [sdata.attrs["histo2st"]["sample"], "pooled"]
    assert (spots["n_genes"] == len(model.genes)).all()
    assert spots[["MSE", "PCC@M", "ARI"]].notna().all().all()
    dense = ns["dense"]
    assert list(dense["bin_um"]) == [2, 8, 16]
    assert dense["n_bins"].is_monotonic_decreasing
    assert dense["PCC@M"].notna().all()
    assert ns["best"] in model.genes
    # history, spatial_gene, gene_correlation, multiscale
    assert len(figures) == 4
    assert all(_drawn(fig) for fig in figures)


@pytest.mark.slow
@pytest.mark.realdata
def test_her2st_runs_at_tiny_settings(monkeypatch, tmp_path, shared_data, tiny_pixnet):
    # one epoch over one section in seconds: coarse pixels, small crops, few optimizer steps
    tiny = {**tiny_pixnet, "microns_per_pixel": 8, "crop_px": 64, "batch_size": 16}
    ns, figures = _run(
        "her2st",
        monkeypatch,
        tmp_path,
        DATA_ROOT=f"Path({str(shared_data)!r})",
        TRAIN='["C4"]',
        N_GENES="12",
        MAX_TIME="1",
        PIXNET=repr(tiny),
    )
    model, test = ns["model"], ns["test"]
    assert ns["proto"].folds == [(["C4"], ["C5"])]
    assert list(model.genes) == ns["proto"].genes[:12]
    summary = ns["summary"]
    assert list(summary.index) == ["C5", "pooled"]
    assert summary.loc["C5", "n_spots"] == test["table"].n_obs
    assert summary.loc["C5", "n_genes"] == 12
    assert summary[["PCC@M", "ARI"]].notna().all().all()
    top = ns["top"]
    assert len(top) == 3
    assert set(top) <= set(model.genes)
    assert sorted((tmp_path / "runs" / "her2st_pixnet_c5").iterdir()) == [
        tmp_path / "runs" / "her2st_pixnet_c5" / f for f in ("genes.txt", "results.csv", "split.json")
    ]
    # history, gene_correlation, spatial_gene
    assert len(figures) == 3
    assert all(_drawn(fig) for fig in figures)


def test_her2st_thitogene_snippet_uses_real_api():
    # the THItoGene comparison is shown, not run (minutes of training): check its calls against the API instead
    import histo2st as st

    text = (TUTORIALS / "her2st.md").read_text()
    snippet = re.search(r"## Comparing with THItoGene.*?```python\n(.*?)```", text, flags=re.S).group(1)
    calls = [n for n in ast.walk(ast.parse(snippet)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert len(calls) == 3
    for call in calls:
        assert ast.unparse(call.func.value) == "st.tl"
        params = inspect.signature(getattr(st.tl, call.func.attr)).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        for keyword in call.keywords:
            assert takes_any or keyword.arg in params, f"st.tl.{call.func.attr} has no parameter {keyword.arg!r}"
