"""Which signature a treatment should move: treatment names matched through a shipped alias table.

The table (``data/aliases.tsv``: alias, CytoSig signature, gene symbol) is data, not code: spellings of cytokines
and secreted proteins as experiments name them (``IFN-gamma``, ``IFNg``, ``interferon gamma`` -> CytoSig ``IFNG``,
gene ``IFNG``). Names are compared after :func:`normalise` (lower case, Greek letters spelled out, everything but
letters and digits dropped), so ``IFN gamma`` and ``IFN-γ`` are one name. Every CytoSig name and gene symbol of the
table is an alias of itself; a treatment named exactly (after normalising) like a signature of the set matches it
too, so SecAct's proteins are found by their symbols without being listed. Registry overrides
(``treatment_aliases = { "drug X" = "IFNG" }``) come first; their target is resolved like a treatment name.

Substring matching (the seed's) is never used: ``IL-1beta`` must not match ``IL1A`` or ``IL10``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import pandas as pd

from cytoatlas.errors import CytoatlasError

# how a treatment found its signature
MatchSource = Literal["registry", "alias table", "signature name", ""]
CELL_TYPE_SEPARATOR = "__"
_GREEK = {"α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "κ": "kappa", "λ": "lambda", "ω": "omega",
          "µ": "mu", "μ": "mu"}
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def normalise(name: str) -> str:
    """The form names are compared in: lower case, Greek letters spelled out, only letters and digits.

    Examples
    --------
    >>> normalise("IFN-γ"), normalise("IFN gamma"), normalise("Interferon_Gamma")
    ('ifngamma', 'ifngamma', 'interferongamma')
    """
    text = "".join(_GREEK.get(c, c) for c in str(name))
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NOT_ALNUM.sub("", text.lower())


@dataclass(frozen=True)
class Target:
    """What an alias stands for: the CytoSig signature (empty: none) and the gene symbol."""

    cytosig: str
    gene: str


@functools.lru_cache(maxsize=1)
def alias_table() -> pd.DataFrame:
    """The shipped alias table (columns alias, cytosig, gene; ``cytosig`` empty for proteins CytoSig lacks)."""
    with resources.files("cytoatlas._groundtruth").joinpath("data/aliases.tsv").open(encoding="utf-8") as fh:
        return pd.read_csv(fh, sep="\t", comment="#", dtype=str, keep_default_na=False)


@functools.lru_cache(maxsize=1)
def alias_index() -> dict[str, Target]:
    """``{normalised alias: Target}`` of the shipped table, the CytoSig names and genes included as their own
    aliases.

    Raises
    ------
    CytoatlasError
        If one normalised name stands for two targets (the table is ambiguous).
    """
    index: dict[str, Target] = {}
    for alias, cytosig, gene in alias_table()[["alias", "cytosig", "gene"]].itertuples(index=False):
        target = Target(cytosig.strip(), gene.strip())
        for name in (alias, cytosig, gene):
            key = normalise(name)
            if not key:
                continue
            known = index.get(key)
            # the rows of one CytoSig signature name several genes (IFN1: IFNA1, IFNB1): its name keeps the first
            if known is not None and (known.cytosig != target.cytosig
                                      or (not target.cytosig and known.gene != target.gene)):
                raise CytoatlasError(f"alias table: {name!r} stands for {index[key]} and {target}")
            index.setdefault(key, target)
    return index


@dataclass(frozen=True)
class Match:
    """One treatment's own signature in one signature set (``signature`` empty: unmatched, ``reason`` says why)."""

    treatment: str
    signature: str
    source: MatchSource
    reason: str = ""


def match_treatment(treatment: str, signatures: Iterable[str], overrides: Mapping[str, str] | None = None
                    ) -> Match:
    """The signature of ``signatures`` that ``treatment`` should move.

    Parameters
    ----------
    treatment
        A value of the treatment column (``IFN-gamma``, ``TNF-alpha``, ``IL-7``).
    signatures
        The set's signature names (CytoSig names, gene symbols, ...).
    overrides
        ``{treatment: signature or alias}`` from the registry, tried first (keys compared normalised).

    Returns
    -------
    Match
        The signature and how it was found, or an empty signature with the reason.
    """
    names = [str(s) for s in signatures]
    by_norm: dict[str, str] = {}
    for s in names:
        by_norm.setdefault(normalise(s), s)
    source: MatchSource = "alias table"
    query = treatment
    for key, value in (overrides or {}).items():
        if normalise(key) == normalise(treatment):
            query, source = value, "registry"
            break
    key = normalise(query)
    target = alias_index().get(key)
    if target is not None:
        for candidate in (target.cytosig, target.gene):
            if candidate and normalise(candidate) in by_norm:
                return Match(treatment, by_norm[normalise(candidate)], source)
    if key in by_norm:
        return Match(treatment, by_norm[key], source if source == "registry" else "signature name")
    if target is not None:
        wanted = " or ".join(x for x in (target.cytosig, target.gene) if x)
        return Match(treatment, "", "", f"its signature ({wanted}) is not in this set")
    if source == "registry":
        return Match(treatment, "", "", f"the registry maps it to {query!r}, which is no signature of this set")
    return Match(treatment, "", "", "no alias or signature of this name (add it to the registry entry's "
                                    "treatment_aliases)")


def match_treatments(treatments: Iterable[str], signatures: Iterable[str],
                     overrides: Mapping[str, str] | None = None) -> dict[str, Match]:
    """:func:`match_treatment` of each treatment, in the order given."""
    names = list(signatures)
    if names and all(CELL_TYPE_SEPARATOR in s for s in names):
        return {t: Match(t, "", "", "a cell-type-specific set: one signature per cell type, not ranked")
                for t in treatments}
    return {t: match_treatment(t, names, overrides) for t in treatments}
