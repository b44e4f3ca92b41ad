"""Run the tutorials (``tutorials/*.md``) and store them with their outputs as ``docs/tutorials/*.ipynb``.

The docs build renders the stored notebooks and runs no code (``nb_execution_mode = "off"`` in ``conf.py``): the
tutorials train models for minutes and the her2st one needs the real data. Run this after changing a tutorial;
``tests/tutorials`` fails while a stored notebook's code differs from its tutorial. Each notebook runs in a fresh
temporary directory (files it writes are discarded), with ``$HISTO2ST_DATA`` defaulting to ``../shared/data``.

    .venv/bin/python docs/execute_tutorials.py              # every tutorial
    .venv/bin/python docs/execute_tutorials.py quickstart   # one
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import nbformat
from myst_nb.core.read import read_myst_markdown_notebook
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "tutorials"
STORED = ROOT / "docs" / "tutorials"
# JPEG figures: the H&E panels make PNGs of 1-2 MB each, too heavy for notebooks kept in git
KERNEL_OPTIONS = [
    "--InlineBackend.figure_formats=jpeg",
    "--InlineBackend.print_figure_kwargs={'bbox_inches': 'tight', 'pil_kwargs': {'quality': 90}}",
]


def execute(source: Path, target: Path) -> float:
    """Execute the MyST notebook ``source`` and write it with its outputs to ``target``; returns the seconds taken."""
    notebook = read_myst_markdown_notebook(source.read_text(), path=source)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:
        client = NotebookClient(
            notebook,
            timeout=None,
            kernel_name="python3",
            extra_arguments=KERNEL_OPTIONS,
            record_timing=False,
            resources={"metadata": {"path": cwd}},
        )
        client.execute()
    seconds = time.perf_counter() - start
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    nbformat.write(notebook, partial)
    partial.replace(target)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = sorted(p.stem for p in SOURCES.glob("*.md"))
    parser.add_argument("names", nargs="*", help=f"tutorials to run (default: all of {names})")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"no tutorial {unknown} in {SOURCES}; choose from {names}")
    os.environ.setdefault("HISTO2ST_DATA", str(ROOT.parent / "shared" / "data"))
    # tqdm.auto warns in a kernel without ipywidgets; the tutorials turn progress bars off anyway
    os.environ.setdefault("PYTHONWARNINGS", "ignore:IProgress not found")
    for name in args.names or names:
        seconds = execute(SOURCES / f"{name}.md", STORED / f"{name}.ipynb")
        print(f"{name}: {seconds:.0f} s -> {(STORED / f'{name}.ipynb').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
