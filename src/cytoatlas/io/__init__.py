"""Reading atlases and writing results: HDF5 access only, no biology."""

from cytoatlas.io.h5ad import Labels, ObsReader, open_counts, read_var
from cytoatlas.io.writer import write_h5ad_columns

__all__ = ["Labels", "ObsReader", "open_counts", "read_var", "write_h5ad_columns"]
