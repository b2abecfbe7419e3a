"""Which cell-type-specific signatures (LinCytoSig ``CellType__Cytokine``) belong to which pseudobulk group.

An atlas label ("CD14 Mono", "Lung|CD8 TEM") is mapped to one of the signature file's cell types: a user
override first, then an exact match ignoring case and punctuation, then a default table of common immune and
stromal lineages. A composite label is tried whole, then part by part from the last (the cell type is usually
the last part). Groups that map to nothing are reported, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cytoatlas.errors import CytoatlasError

SEPARATOR = "__"

# (pattern on the lower-cased label, candidate signature cell types in order of preference); specific first
DEFAULT_LINEAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"\bcd4|\bth(1|2|17|22)?\b|helper|\btfh\b|treg|regulatory t", ("T_CD4", "CD4_T", "CD4_T_cell", "T_helper")),
    (r"\bcd8|cytotoxic t|\bctls?\b", ("T_CD8", "CD8_T", "CD8_T_cell", "Cytotoxic_T")),
    (r"\bt\b|\bt[ _-]?cells?\b|\bgdt|gamma.?delta|\bnkt\b|\bmait\b|\bt[ _-]?prolif|proliferating t",
     ("T_cell", "T", "T_cells")),
    (r"\bnk\b|\bnk[ _-]?cells?\b|natural killer|cd56", ("NK_cell", "NK", "NK_cells", "Natural_killer")),
    (r"\bilcs?\b|innate lymphoid", ("ILC", "Innate_lymphoid_cell")),
    (r"plasma", ("Plasma_cell", "Plasma", "B_cell", "B")),
    (r"\bb\b|\bb[ _-]?cells?\b|\bb (naive|memory|transitional)", ("B_cell", "B", "B_cells")),
    (r"macrophage|kupffer|microglia|\bmac\b|\btams?\b", ("Macrophage", "Macrophages")),
    (r"mono", ("Monocyte", "Monocytes", "Macrophage")),
    (r"\b[cp]?dcs?\d?\b|dendritic|langerhans", ("Dendritic_cell", "DC", "Dendritic_cells")),
    (r"neutrophil|granulocyte|\bpmns?\b", ("Neutrophil", "Neutrophils")),
    (r"\bmast", ("Mast_cell", "Mast")),
    (r"fibroblast|stromal|\bcafs?\b|myofibroblast", ("Fibroblast", "Fibroblasts")),
    (r"endothel", ("Endothelial_cell", "Endothelial", "Endothelial_cells")),
    (r"smooth muscle|\bsmcs?\b|pericyte", ("Smooth_muscle", "Smooth_muscle_cell")),
    (r"epithel|keratinocyte|hepatocyte|alveolar|enterocyte", ("Epithelial_cell", "Epithelial", "Keratinocyte")),
)


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def signature_cell_types(signatures: Iterable[str]) -> list[str]:
    """The cell types of ``CellType__Cytokine`` signature names, in first-seen order."""
    return list(dict.fromkeys(s.split(SEPARATOR, 1)[0] for s in signatures))


def _default(label: str, by_norm: Mapping[str, str]) -> str | None:
    if _norm(label) in by_norm:
        return by_norm[_norm(label)]
    low = label.lower()
    for pattern, candidates in DEFAULT_LINEAGES:
        if re.search(pattern, low):
            for c in candidates:
                if _norm(c) in by_norm:
                    return by_norm[_norm(c)]
            return None  # the lineage is known but the file has no signatures for it
    return None


def map_cell_types(labels: Iterable[str], available: Iterable[str], overrides: Mapping[str, str] | None = None,
                   separator: str | None = None) -> dict[str, str | None]:
    """Map each atlas label to one of ``available`` signature cell types, or None.

    Parameters
    ----------
    labels
        Group labels (``obs['cell_type']``).
    available
        Cell types of the signature file (:func:`signature_cell_types`).
    overrides
        ``{atlas label: signature cell type}``, applied first; a target that the file lacks is an error.
    separator
        The composite-label separator of the pseudobulk file (``uns['separator']``), if any.
    """
    available = list(available)
    by_norm = {_norm(a): a for a in available}
    overrides = dict(overrides or {})
    for label, target in overrides.items():
        if target not in available:
            raise CytoatlasError(
                f"cell-type map sends {label!r} to {target!r}, which is not a cell type of the signature file; "
                f"available: {', '.join(sorted(available))}")
    out: dict[str, str | None] = {}
    for label in dict.fromkeys(map(str, labels)):
        parts = [label] + (label.split(separator)[::-1] if separator and separator in label else [])
        hit = next((overrides[p] for p in parts if p in overrides), None)
        if hit is None:
            hit = next((m for m in (_default(p, by_norm) for p in parts) if m is not None), None)
        out[label] = hit
    return out
