"""A small validation directory for the report's tests (the compare and per-cell sections build on it): its
tables recorded in its manifest as `cytoatlas validate` records them (the report verifies what it reads)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cytoatlas.io.manifest import record, update_manifest
from cytoatlas.io.tables import write_table


def validation_dir(path: Path) -> Path:
    """A small validation directory: each validation table with one row (the columns the report reads)."""
    row = {"atlas": "alpha", "level": "L2", "signature_set": "cytosig"}
    tables = {
        "summary": pd.DataFrame([{**row, "n_targets": 1, "median_rho": 0.4, "pct_positive": 100.0,
                                  "n_significant": 1}]),
        "rho": pd.DataFrame([{**row, "target": "IFNG", "gene": "IFNG", "stratum": "CD4 T", "n_samples": 12,
                              "rho": 0.4, "pvalue": 0.01, "fdr": 0.02, "rho_ci_low": 0.1, "rho_ci_high": 0.6,
                              "representative": True, "reason": "", "n_strata": 3, "median_rho": 0.4}]),
        "rho_cell_types": pd.DataFrame([{**row, "target": "IFNG", "rho": 0.5, "reason": ""}]),
        "cytosig_vs_secact": pd.DataFrame([{"atlas": "alpha", "level": "L2", "n_shared": 1, "statistic": 0.0,
                                            "pvalue": 1.0}]),
        "cross_atlas": pd.DataFrame([{"signature_set": "cytosig", "signature": "IFNG", "level": "L2",
                                      "resolution": "fine", "atlas_a": "alpha", "atlas_b": "beta",
                                      "n_cell_types": 3, "r": 0.8, "reason": ""}]),
        "conservation": pd.DataFrame([{"signature_set": "cytosig", "signature": "IFNG", "resolution": "fine",
                                       "n_pairs": 1, "median_r": 0.8, "conservation": "conserved", "reason": ""}]),
        "consistency": pd.DataFrame([{"signature_set": "cytosig", "target": "IFNG", "n_atlases": 1,
                                      "tier": "all"}]),
        "cell_type_matches": pd.DataFrame([{"atlas": "alpha", "level": "L2", "cell_type": "CD4 T",
                                            "cl_id": "CL:0000624", "cl_name": "CD4-positive, alpha-beta T cell",
                                            "source": "rule", "context": "", "candidates": ""}]),
    }
    path.mkdir(parents=True)
    records = {}
    for name, df in tables.items():
        for p in write_table(df, path, name):
            records[p.name] = record(p, step="validate", parameters={"atlases": ["alpha"]}, inputs=[], kind="table",
                                     table=name)
    update_manifest(path, records)
    return path
