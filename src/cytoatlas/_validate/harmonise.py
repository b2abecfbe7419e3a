"""Cell types across atlases: labels harmonised to shared lineage names.

The shipped table ``data/cell_types.tsv`` holds regular expressions tried in order on a normalised label; the
first match names the type. An atlas' registry entry can map its own labels first
(``harmonise = { "label" = "shared name" }``; ``""`` keeps a label unmatched on purpose). A composite label
("Lung|CD8 TEM") keeps its leading parts and harmonises its last part (the cell type). Labels that match
nothing are returned as unmatched, and listed, never dropped silently.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from importlib import resources

import pandas as pd

# the cell type label of a level without cell types (every cell in one group)
UNSTRATIFIED = "all"


def normalise(label: str) -> str:
    """Lower case, ``_ - / . , ( )`` as spaces, single spaces."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-/.,()]", " ", str(label).lower())).strip()


@functools.lru_cache(maxsize=1)
def shipped_table() -> tuple[tuple[re.Pattern, str], ...]:
    """The shipped (pattern, shared name) rules, in order."""
    with resources.files("cytoatlas._validate").joinpath("data/cell_types.tsv").open() as fh:
        table = pd.read_csv(fh, sep="\t", comment="#", dtype=str, keep_default_na=False)
    return tuple((re.compile(p), h) for p, h in zip(table["pattern"], table["harmonised"], strict=True))


def _one(label: str, overrides: Mapping[str, str]) -> tuple[str, str]:
    if label in overrides:
        return overrides[label], "registry"
    norm = normalise(label)
    for pattern, name in shipped_table():
        if pattern.search(norm):
            return name, "shipped table"
    return "", ""


def harmonise(labels: Iterable[str], overrides: Mapping[str, str] | None = None,
              separator: str | None = None) -> pd.DataFrame:
    """Shared names of cell-type labels.

    Parameters
    ----------
    labels
        Cell-type labels of one level (``obs['cell_type']``).
    overrides
        ``{label: shared name}`` from the registry, applied first (to whole labels, then to a composite label's
        last part); an empty name keeps the label unmatched.
    separator
        The level's composite-label separator (``uns['separator']``), if its labels join several columns.

    Returns
    -------
    pandas.DataFrame
        One row per distinct label: ``cell_type``, ``harmonised`` (empty when unmatched) and ``source``
        (``registry``, ``shipped table``, ``unstratified level`` or empty).
    """
    overrides = dict(overrides or {})
    rows = []
    for label in dict.fromkeys(map(str, labels)):
        if label == UNSTRATIFIED:
            rows.append((label, "", "unstratified level"))
            continue
        name, source = (overrides[label], "registry") if label in overrides else ("", "")
        if not source and separator and separator in label:
            head, _, last = label.rpartition(separator)
            part, source = _one(last, overrides)
            name = f"{head}{separator}{part}" if part else ""
        elif not source:
            name, source = _one(label, overrides)
        rows.append((label, name, source if name else ("registry" if source == "registry" else "")))
    return pd.DataFrame(rows, columns=["cell_type", "harmonised", "source"])
