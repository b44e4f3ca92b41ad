"""Sphinx configuration of the histo2st documentation (sphinx + myst-nb)."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

project = "histo2st"
author = "histo2st developers"
copyright = "histo2st developers"
try:
    release = package_version("histo2st")
except PackageNotFoundError:  # building from a source tree without installation
    release = "0.0.0"
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx_autodoc_typehints",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]

# Notebooks are rendered with their stored outputs; the build never runs them. The tutorials (tutorials/*.md) train
# models for minutes and need real data, so docs/execute_tutorials.py runs them into docs/tutorials/*.ipynb, and
# tests/tutorials checks that those match the tutorials.
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
typehints_defaults = "comma"

html_theme = "sphinx_book_theme"
html_title = "histo2st"
html_theme_options = {"repository_url": "https://github.com/histo2st/histo2st", "use_repository_button": True}
