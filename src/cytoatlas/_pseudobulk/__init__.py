"""Streaming multi-level pseudobulk."""

from cytoatlas._pseudobulk.run import output_paths, pseudobulk

__all__ = ["output_paths", "pseudobulk"]
