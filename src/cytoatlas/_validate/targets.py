"""Which gene is a signature's own gene: the target whose expression its activity should track.

SecAct names are gene symbols. CytoSig names are cytokine names (TNFA, GMCSF, IFN1, ...) mapped to genes through
the shipped table ``data/cytosig_targets.csv``. A cell-type-specific set (LinCytoSig, ``CellType__Cytokine``)
uses the cytokine after ``__``, mapped the same way. Any other name is taken as a symbol.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from importlib import resources

import pandas as pd

CELL_TYPE_SEPARATOR = "__"


@functools.lru_cache(maxsize=1)
def cytosig_targets() -> pd.DataFrame:
    """The shipped CytoSig target -> gene table (columns target, gene, note)."""
    with resources.files("cytoatlas._validate").joinpath("data/cytosig_targets.csv").open() as fh:
        return pd.read_csv(fh, dtype=str, keep_default_na=False)


def target_gene(target: str, signature_set: str, overrides: Mapping[str, str] | None = None) -> str:
    """The gene symbol of ``target`` in ``signature_set``.

    Parameters
    ----------
    target
        A signature name (``TNFA``, ``IL6``, ``Monocyte__IFNG``).
    signature_set
        The set's name; ``secact`` names are symbols and are not mapped through the CytoSig table.
    overrides
        ``{target or cytokine: gene}`` applied before the shipped table.
    """
    overrides = overrides or {}
    if target in overrides:
        return overrides[target]
    name = target.split(CELL_TYPE_SEPARATOR, 1)[1] if CELL_TYPE_SEPARATOR in target else target
    if name in overrides:
        return overrides[name]
    if signature_set == "secact":
        return name
    table = dict(zip(cytosig_targets()["target"], cytosig_targets()["gene"], strict=True))
    return table.get(name, name)


def target_genes(targets: Iterable[str], signature_set: str,
                 overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{target: gene}`` for every target of a set."""
    return {t: target_gene(t, signature_set, overrides) for t in targets}
