"""Streaming multi-level pseudobulk."""

from cytoatlas._pseudobulk.run import level_parameters, level_status, pseudobulk

__all__ = ["level_parameters", "level_status", "pseudobulk"]
