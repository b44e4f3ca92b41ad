"""Imports run one way, and no two files import each other (not even through a lazy import inside a function).

A subpackage uses another layered subpackage through what that one exports, never its private modules; the core is
shared by all. Layers, from the top: the command line -> ``tl``/``pl`` -> ``model`` -> ``train`` -> ``module`` ->
``nn`` -> the data layer (``io``, ``pp``, ``datasets``) -> the core (``_core``, ``_kernels``, ``metrics`` and the
package's single modules). A module may import its own subpackage and any lower layer, never a higher one.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "histo2st"
#: Layer of each subpackage (or top-level module); a higher number may import a lower one. Absent: the core, 0.
LAYERS = {
    "cli": 8,
    "_cli": 8,
    "_demo": 8,
    "tl": 7,
    "pl": 7,
    "model": 6,
    "train": 5,
    "module": 3,
    "nn": 2,
    "io": 1,
    "pp": 1,
    "datasets": 1,
}
#: The package's own ``__init__`` and ``__main__`` gather the subpackages: they stand above every layer.
TOP = {"histo2st", "histo2st.__main__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported module or name, line)`` of every import in the file, function-level ones included."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("histo2st")]
        elif isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("histo2st")):
            base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rsplit(".", 1)[0] if "." in target else ""
        return target or None

    return {name: {resolve(t) for t, _ in _imports(path)} - {name, None} for name, path in modules.items()}


def _layer(module: str) -> float:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _upward() -> list[str]:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name in TOP:
            continue
        for target, line in _imports(path):
            own, other = name.split(".")[1], (target.split(".") + [""])[1]
            if other != own and _layer(target) > _layer(name):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {target} (a higher layer)")
    return bad


def _private_reaches() -> list[str]:
    """Imports of another layered subpackage's private module (``tl`` -> ``io._wsi``): use what it exports."""
    bad = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name in TOP:
            continue
        own = name.split(".")[1]
        for target, line in _imports(path):
            parts = target.split(".")
            if len(parts) > 2 and parts[1] != own and _layer(target) > 0 and parts[2].startswith("_"):
                bad.append(f"{path.relative_to(PACKAGE)}:{line} imports {target} (private to {parts[1]})")
    return bad


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one file (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_imports_flow_one_way():
    assert _upward() == []


def test_subpackages_meet_through_their_exports():
    assert _private_reaches() == []


def test_no_import_cycles_between_files():
    graph = {name: targets - TOP for name, targets in _graph().items() if name not in TOP}
    assert _cycles(graph) == []


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"a"}, "c": {"a"}}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert _cycles(graph) == expected


def test_the_layer_check_sees_a_lazy_upward_import(tmp_path, monkeypatch):
    package = tmp_path / "histo2st"
    (package / "nn").mkdir(parents=True)
    (package / "tl").mkdir()
    (package / "nn" / "_block.py").write_text("def f():\n    from ..tl import _fit\n")
    (package / "tl" / "_fit.py").write_text("")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    assert _upward() == ["nn/_block.py:2 imports histo2st.tl._fit (a higher layer)"]


def test_every_model_implements_the_prediction_interface():
    from histo2st.model import Ensemble, PixNet, Predictor, THItoGene

    pixnet = PixNet(["a", "b"], hidden_dim=8, pyramid_levels=3)
    models = [pixnet, THItoGene(["a", "b"], depth=1, heads=2), Ensemble([pixnet])]
    assert all(isinstance(model, Predictor) for model in models)
    assert [m.n_maps for m in models] == [1, 1, 2]
    assert [m.predicts_at_points for m in models] == [False, True, False]


def test_the_private_check_sees_a_reach_into_another_subpackage(tmp_path, monkeypatch):
    package = tmp_path / "histo2st"
    for sub in ("tl", "io", "_core"):
        (package / sub).mkdir(parents=True)
    (package / "tl" / "_predict.py").write_text("from ..io._wsi import level\nfrom .._core._maps import key\n")
    (package / "io" / "_wsi.py").write_text("")
    monkeypatch.setitem(globals(), "PACKAGE", package)
    assert _private_reaches() == ["tl/_predict.py:1 imports histo2st.io._wsi.level (private to io)"]
