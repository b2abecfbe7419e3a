"""Sphinx configuration of the cytoatlas documentation (built in CI by tests/test_docs.py, warnings as errors)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import matplotlib

matplotlib.use("agg")  # the tutorial's figures are drawn headless

HERE = Path(__file__).parent
SRC = HERE.parent / "src"
sys.path.insert(0, str(SRC))  # the source next to these pages, installed or not

# -- Project ------------------------------------------------------------------------------------------------------
project = "cytoatlas"
author = "the cytoatlas developers"
copyright = f"2026, {author}"
# the version is written once, in src/cytoatlas/_version.py (read without importing the package)
release = version = runpy.run_path(str(SRC / "cytoatlas" / "_version.py"))["__version__"]

# -- General ------------------------------------------------------------------------------------------------------
extensions = [
    "myst_nb",  # Markdown pages (MyST) and the tutorial notebook, executed during the build
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # NumPy-style docstrings
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
]
# no intersphinx: CI has no network but the package registries, and a build must not fetch inventories
# .rst first: autosummary writes its generated pages with the first suffix, and they are reStructuredText
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# -- API reference ------------------------------------------------------------------------------------------------
autosummary_generate = True
autodoc_typehints = "description"  # types beside each parameter, signatures kept short
autodoc_member_order = "bysource"
autodoc_default_options = {"members": False}
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
default_role = "literal"  # `x` in a docstring is code, as in the README

# -- Notebooks ----------------------------------------------------------------------------------------------------
nb_execution_mode = "force"  # the tutorial runs in every build: a broken tutorial fails the docs
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_output_stderr = "remove"  # progress logging; errors still fail the build
nb_merge_streams = True

# -- HTML ---------------------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"cytoatlas {version}"
html_static_path: list[str] = []
