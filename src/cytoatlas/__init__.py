"""cytoatlas: streaming pseudobulk and cytokine activity for million-cell single-cell atlases."""

from typing import TYPE_CHECKING

from cytoatlas._version import __version__
from cytoatlas.errors import CytoatlasError
from cytoatlas.registry import AtlasConfig, get_atlas, load_registry

__all__ = ["AtlasConfig", "CytoatlasError", "__version__", "activity", "cells", "compare", "get_atlas", "groundtruth",
           "index",
           "load_registry", "load_signatures", "output_paths", "pl", "pp", "pseudobulk", "report", "run", "serve",
           "status", "tl", "validate"]

if TYPE_CHECKING:  # the notebook namespaces as type checkers and IDEs see them; at run time they load on first use
    from cytoatlas import pl, pp, tl

# the steps are loaded on first use, not with the package: importing cytoatlas.io, the registry or the API then
# never loads the engine (numba, ~1 s) or the other steps (scipy.stats, matplotlib, duckdb, fastapi: ~0.3-1 s)
_LAZY = {"pseudobulk": ("cytoatlas._pseudobulk", "pseudobulk"),
         "output_paths": ("cytoatlas.io.layout", "pseudobulk_paths"),
         "activity": ("cytoatlas._activity", "activity"), "load_signatures": ("cytoatlas._activity", "load_signatures"),
         "cells": ("cytoatlas._cells", "cells"),
         "index": ("cytoatlas._api", "index"), "serve": ("cytoatlas._api", "serve"),
         "run": ("cytoatlas.pipeline", "run"), "status": ("cytoatlas.pipeline", "status"),
         "validate": ("cytoatlas._validate", "validate"), "report": ("cytoatlas._report", "report"),
         "compare": ("cytoatlas._compare", "compare"), "groundtruth": ("cytoatlas._groundtruth", "groundtruth")}


# the notebook namespaces (``cytoatlas.pp``, ``cytoatlas.tl``, ``cytoatlas.pl``, as scanpy's): modules loaded on
# first use
_SUBMODULES = ("pl", "pp", "tl")


def __getattr__(name: str):
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"cytoatlas.{name}")
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'cytoatlas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
