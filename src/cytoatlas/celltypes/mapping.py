"""Every cell-type label of an atlas level as one Cell Ontology term, and how it was found.

In order: the atlas' own CL IDs (an obs column of CL IDs, as CELLxGENE datasets carry, read into the
pseudobulk files as ``obs['cell_type_ontology_term_id']``); the registry's ``harmonise`` entry for the label (a
CL ID, a CL name or synonym, or a shared name of the user's own, which then meets only the same name in another
atlas; ``""`` keeps a label out on purpose); then :func:`~cytoatlas.celltypes.matcher.match` on the label itself.
A composite label (``"Lung|CD8 TEM"``) keeps its leading parts as a context and maps its last part. A label that
maps to nothing is kept, with the closest CL candidates and the registry line that would map it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Literal

import pandas as pd

from cytoatlas.celltypes.matcher import candidates, exact_term, match
from cytoatlas.celltypes.ontology import cell_ontology
from cytoatlas.errors import CytoatlasError

# the cell type label of a level without cell types (every cell in one group)
UNSTRATIFIED = "all"
Source = Literal["column", "registry", "name", "synonym", "rule", "none", "unstratified level"]
MATCH_COLUMNS = ["cell_type", "cl_id", "cl_name", "source", "context", "candidates"]
_CL_ID = re.compile(r"^CL:\d{7}$")
ONTOLOGY_COLUMN = "cell_type_ontology_term_id"  # obs column of CL IDs a pseudobulk (and activity) file may carry


def ontology_ids(obs: pd.DataFrame) -> dict[str, str]:
    """``{label: CL ID}`` from a pseudobulk or activity file's obs, when it carries the atlas' own CL IDs."""
    if ONTOLOGY_COLUMN not in obs or "cell_type" not in obs:
        return {}
    pairs = obs[["cell_type", ONTOLOGY_COLUMN]].astype(str).drop_duplicates()
    return {c: i for c, i in zip(pairs["cell_type"], pairs[ONTOLOGY_COLUMN], strict=True) if i and i != "nan"}


def _registry_term(label: str, value: str) -> tuple[str, str, Source]:
    """(CL ID, name, source) of a registry ``harmonise`` value: a CL ID, a CL name / synonym, or a shared name."""
    cl = cell_ontology()
    value = value.strip()
    if not value:
        return "", "", "registry"
    if _CL_ID.match(value):
        term = cl.term(value)  # raises, naming the release, when the ID is not a CL term
        return term.id, term.name, "registry"
    exact = exact_term(value)
    if exact:
        return exact[0], cl.name(exact[0]), "registry"
    return "", value, "registry"  # the user's own shared name: meets the same name in another atlas


def _ontology_id(label: str, value: str) -> tuple[str, str]:
    cl = cell_ontology()
    if not _CL_ID.match(str(value)):
        raise CytoatlasError(f"cell type {label!r}: {value!r} in the CL ID column is not a Cell Ontology ID "
                             f"(like 'CL:0000236')")
    term = cl.term(str(value))
    return term.id, term.name


def map_labels(labels: Iterable[str], *, overrides: Mapping[str, str] | None = None,
               ontology_ids: Mapping[str, str] | None = None, separator: str | None = None) -> pd.DataFrame:
    """The CL term of each distinct cell-type label of one atlas level.

    Parameters
    ----------
    labels
        Cell-type labels of one level (``obs['cell_type']``).
    overrides
        The registry's ``harmonise`` entries, ``{label: CL ID | CL name | shared name | ""}``, applied to whole
        labels, then to a composite label's last part.
    ontology_ids
        ``{label: CL ID}`` read from the atlas itself (its CL ID column); first when present.
    separator
        The level's composite-label separator (``uns['separator']``), if its labels join several columns.

    Returns
    -------
    pandas.DataFrame
        One row per distinct label: ``cell_type``, ``cl_id`` (empty for a shared name of the user's own or no
        match), ``cl_name`` (the CL name, or the shared name), ``source`` (:data:`Source`), ``context`` (a
        composite label's leading parts) and ``candidates`` (for an unmatched label, the closest CL terms).
    """
    overrides = dict(overrides or {})
    ontology_ids = dict(ontology_ids or {})
    rows = []
    for label in dict.fromkeys(map(str, labels)):
        context, part = "", label
        if separator and separator in label and label not in overrides and label not in ontology_ids:
            context, _, part = label.rpartition(separator)
        if label == UNSTRATIFIED:
            term, name, source = "", "", "unstratified level"
        elif label in ontology_ids:
            (term, name), source = _ontology_id(label, ontology_ids[label]), "column"
        elif label in overrides or part in overrides:
            term, name, source = _registry_term(label, overrides.get(label, overrides.get(part, "")))
        else:
            m = match(part)
            term, name, source = m.term, cell_ontology().name(m.term) if m.term else "", m.source
        near = "; ".join(candidates(part)) if not name and source == "none" else ""
        rows.append((label, term, name, source, context, near))
    return pd.DataFrame(rows, columns=MATCH_COLUMNS)


def registry_hint(atlas: str, unmatched: pd.DataFrame) -> str:
    """The registry lines that would map the unmatched labels (their first candidate), ready to paste."""
    lines = [f"[atlas.{atlas}.harmonise]"]
    for label, near in zip(unmatched["cell_type"], unmatched["candidates"], strict=True):
        first = near.split("; ")[0] if near else ""
        term = first.split(" ")[0] if first else "CL:0000000"
        lines.append(f'"{label}" = "{term}"  # {first[len(term) + 1:] or "cell"}; or "" to leave it out')
    return "\n".join(lines)
