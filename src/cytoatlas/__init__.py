"""cytoatlas: streaming pseudobulk and cytokine activity for million-cell single-cell atlases."""

__version__ = "0.1.0"

from cytoatlas._pseudobulk import output_paths, pseudobulk  # noqa: E402
from cytoatlas.errors import CytoatlasError  # noqa: E402
from cytoatlas.registry import AtlasConfig, get_atlas, load_registry  # noqa: E402

__all__ = ["AtlasConfig", "CytoatlasError", "__version__", "activity", "cells", "get_atlas", "index", "load_registry",
           "load_signatures", "output_paths", "pseudobulk", "report", "run", "serve", "status", "validate"]

# the other steps are loaded on first use, not with the package: a `cytoatlas pseudobulk` process then never
# imports the activity, API and validation code (scipy.stats, matplotlib, duckdb, fastapi: ~0.3-1 s)
_LAZY = {"activity": "cytoatlas._activity", "cells": "cytoatlas._cells", "load_signatures": "cytoatlas._activity",
         "index": "cytoatlas._api",
         "serve": "cytoatlas._api", "run": "cytoatlas.pipeline", "status": "cytoatlas.pipeline",
         "validate": "cytoatlas._validate", "report": "cytoatlas._validate"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cytoatlas' has no attribute {name!r}")
