"""cytoatlas: streaming pseudobulk and cytokine activity for million-cell single-cell atlases."""

__version__ = "0.1.0"

from cytoatlas._activity import activity, load_signatures  # noqa: E402
from cytoatlas._api import index, serve  # noqa: E402
from cytoatlas._pseudobulk import output_paths, pseudobulk  # noqa: E402
from cytoatlas.errors import CytoatlasError  # noqa: E402
from cytoatlas.pipeline import run, status  # noqa: E402
from cytoatlas.registry import AtlasConfig, get_atlas, load_registry  # noqa: E402

__all__ = ["AtlasConfig", "CytoatlasError", "__version__", "activity", "get_atlas", "index", "load_registry",
           "load_signatures", "output_paths", "pseudobulk", "report", "run", "serve", "status", "validate"]


def __getattr__(name: str):
    # validate / report import scipy.stats, matplotlib and duckdb (~1 s): loaded on first use, not with the package
    if name in ("validate", "report"):
        from cytoatlas import _validate

        return getattr(_validate, name)
    raise AttributeError(f"module 'cytoatlas' has no attribute {name!r}")
