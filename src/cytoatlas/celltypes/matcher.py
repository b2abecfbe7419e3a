"""A cell-type label read as Cell Ontology words, and the CL term it names.

Atlas labels are compositions (lineage + state + marker + numbering: ``T_CD8_EM_CX3CR1high``, ``B04_Bm_CD27``,
``CD56_dim_NK``), so exact CL names find few of them. A label is read as tokens after the same rewrites the CL
names get (``data/phrases.tsv``: ``-positive`` -> ``+``, ``natural killer`` -> ``nk``, ...); a token that is not a
CL word is looked up in the atlas shorthand table (``data/tokens.tsv``: ``Mo`` -> monocyte, ``Bm`` -> memory B,
``Tem`` -> effector memory T, ``cDC2`` -> CL:0002399, ...), split at case changes (``CD16hiNK`` -> ``CD16hi NK``),
or dropped (numbering, marker genes such as ``CX3CR1``). Then, in order:

1. ``name``: the normalised label equals a CL name (``Dendritic cells`` -> dendritic cell);
2. ``synonym``: it equals an exact CL synonym or a synonym of the table (``Tregs``, ``Th0``);
3. ``rule``: the CL term (name, synonym or table synonym) whose words cover most of the label's, where a term's
   *head* (its last word: ``t`` of "naive thymus-derived CD4-positive, alpha-beta T cell") must be among them; ties
   go to the term with the fewest words the label lacks, then to the table's synonyms. So lineage and state
   compose to the term that has both, else to the lineage.

A label with no head word maps to nothing; :func:`candidates` lists the closest CL names for the message.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources

from cytoatlas.celltypes.ontology import CellOntology, cell_ontology

_MARKER = re.compile(r"^([a-z]{1,5}\d+[a-z]?\d*)(\+|-|hi|high|lo|low|dim|bright|pos|neg)?$")
_POLARITY = {None: "+", "+": "+", "hi": "+", "high": "+", "pos": "+", "-": "-", "neg": "-", "lo": "low",
             "low": "low", "dim": "dim", "bright": "bright"}
# a bare marker (``CD34``, ``CD27``) counts for a quarter of its rarity: atlases name markers beside the cell type
# they mark, so a marker alone must not outvote the cell type (HSPC_CD34 is an HSPC, not CL's CD34+ eosinophil
# progenitor); marker-defined types that atlases mean (CD14 Mono, CD56dim NK) are table synonyms
_MARKER_WEIGHT = 0.25
# where a raw token may be split: lower->upper (``CD16hiNK``), digit->upper (``CD4T``), after a ``+``/``-``
# polarity (``CD4+CD25+``)
_CASE_SPLIT = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=\d)(?=[A-Z][a-z]|[A-Z]$|[A-Z][A-Z])|(?<=[+-])(?=[A-Za-z])")


def _table(name: str) -> list[dict[str, str]]:
    with resources.files("cytoatlas.celltypes").joinpath(f"data/{name}").open(encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


@functools.lru_cache(maxsize=1)
def _phrases() -> tuple[tuple[re.Pattern, str], ...]:
    return tuple((re.compile(r["pattern"]), r["replacement"].replace("\\", "\\")) for r in _table("phrases.tsv"))


def rewrite(text: str) -> str:
    """Lower case, the phrase rewrites applied, separators as single spaces (``+`` and ``-`` of markers kept)."""
    text = str(text).lower().replace("_", " ")
    text = re.sub(r"[,;:/()\[\].|]", " ", text)
    for pattern, replacement in _phrases():
        text = pattern.sub(replacement, text)
    text = re.sub(r"(?<![a-z0-9])-|-(?![a-z0-9+])", " ", text)  # a dash that binds nothing
    return re.sub(r"\s+", " ", text).strip()


def _cl_tokens(text: str, ignore: frozenset[str]) -> tuple[str, ...]:
    """The words of a CL name or synonym (hyphenated words split, except marker polarities)."""
    out = []
    for tok in rewrite(text).split(" "):
        parts = [tok] if _MARKER.match(tok) or tok.endswith(("+", "-")) else tok.split("-")
        out += [p for p in parts if p and p not in ignore]
    return tuple(out)


@dataclass(frozen=True)
class _Variant:
    term: str
    tokens: frozenset[str]
    head: str
    text: str  # the normalised words, in order
    rank: int  # 0 table synonym, 1 CL name, 2 CL synonym: the tie-break


@dataclass(frozen=True)
class Vocabulary:
    """The words of every CL name and synonym, the atlas shorthand, and an index from word to variants."""

    ontology: CellOntology
    variants: tuple[_Variant, ...]
    by_token: dict[str, tuple[int, ...]]
    exact: dict[str, tuple[str, str]]  # normalised text -> (term, "name" | "synonym")
    abbreviations: dict[str, tuple[str, ...]]
    conventions: dict[str, tuple[str, str]]  # whole labels whose atlas meaning differs from a CL name
    ignore: frozenset[str]
    words: frozenset[str]

    def idf(self, word: str) -> float:
        """How rare ``word`` is among the CL names and synonyms: ``log(n variants / variants with it)``."""
        n = len(self.variants)
        return math.log(n / max(1, len(self.by_token.get(word, ()))))


@functools.lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    """The shipped vocabulary (built once per process, ~1 s)."""
    cl = cell_ontology()
    rows = _table("tokens.tsv")
    ignore = frozenset(r["token"] for r in rows if r["kind"] == "ignore")
    texts = [(t.id, t.name, 1) for t in cl.terms.values()]  # names first: a name wins over a synonym
    texts += [(t.id, syn, 2) for t in cl.terms.values() for syn in t.synonyms]
    texts += [(cl.term(r["meaning"]).id, r["token"], 0) for r in rows if r["kind"] == "synonym"]
    raw = [(term, _cl_tokens(text, ignore), rank) for term, text, rank in texts]
    base = frozenset(t for _, tokens, _ in raw for t in tokens)
    variants, exact = [], {}
    for term, tokens, rank in raw:
        tokens = tuple(_singular(t, base) for t in tokens)
        if not tokens:
            continue
        core = [t for t in tokens if t != "human"]  # "X, human" terms: the head is X's
        key = " ".join(tokens)
        variants.append(_Variant(term, frozenset(tokens), (core or tokens)[-1], key, rank))
        if rank and key not in exact:
            exact[key] = (term, "name" if rank == 1 else "synonym")
    abbreviations = {}
    for r in rows:
        if r["kind"] != "abbreviation":
            continue
        meaning = r["meaning"]
        words = _cl_tokens(cl.name(meaning), ignore) if meaning.startswith("CL:") else tuple(meaning.split())
        abbreviations[r["token"].lower()] = words
    by_token: dict[str, list[int]] = defaultdict(list)
    for i, v in enumerate(variants):
        for t in v.tokens:
            by_token[t].append(i)
    words = frozenset(by_token) | frozenset(abbreviations)
    conventions = {" ".join(_singular(t, base) for t in _cl_tokens(r["token"], ignore)):
                   (cl.term(r["meaning"]).id, "synonym") for r in rows if r["kind"] == "label"}
    return Vocabulary(cl, tuple(variants), {k: tuple(v) for k, v in by_token.items()}, exact, abbreviations,
                      conventions, ignore, words)


def _singular(tok: str, words: frozenset[str]) -> str:
    """``tok`` without a plural ``s`` when the singular is a word (``macrophages``, ``tregs``), else ``tok``."""
    if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss") and tok[:-1] in words:
        return tok[:-1]
    return tok


def _marker(tok: str, words: frozenset[str]) -> tuple[str, bool] | None:
    """A marker token in CL's form (``cd16hi`` -> ``cd16+``, ``cd56dim``) and whether its polarity was implied;
    None when ``tok`` is not a marker or is a word in its own right (``th17``)."""
    m = _MARKER.match(tok)
    if not m or not m.group(1)[0].isalpha():
        return None
    form = m.group(1) + _POLARITY[m.group(2)]
    if form not in words and tok in words:
        return None
    return form, m.group(2) is None


def label_concepts(label: str) -> list[tuple[str, ...]]:
    """What a label says, as CL words grouped by the label token they came from (``cDC2`` -> ``(cd1c+, myeloid,
    dc)``, ``CD4`` -> ``(cd4+, ab, t)``), in order; numbering, unknown genes and bare numbers dropped."""
    voc = vocabulary()
    groups: list[list[str]] = []
    implied: int | None = None  # a marker whose polarity may follow as its own token ("CD56 dim")

    def known(chunk: str) -> bool:
        toks = [_singular(t, voc.words) for t in rewrite(chunk).split(" ") if t]
        return bool(toks) and all(t in voc.words or t in voc.ignore for t in toks)

    for chunk in re.split(r"[\s,;:/()\[\].|_]+", str(label)):
        if not chunk:
            continue
        # a chunk in capitals and digits is a gene (``TCL1A``, ``C1QC``): one token, never split into words
        gene = bool(re.fullmatch(r"[A-Z0-9-]+", chunk)) and any(c.isdigit() for c in chunk)
        for part in [chunk] if known(chunk) or gene else [p for p in _CASE_SPLIT.split(chunk) if p]:
            for tok in rewrite(part).split(" "):
                for piece in [tok] if tok in voc.words or "-" not in tok.strip("-") else tok.split("-"):
                    implied = _add(piece, groups, implied, voc)
    return [tuple(g) for g in groups if g]


def label_tokens(label: str) -> list[str]:
    """The CL words a label says, in order (see :func:`label_concepts`)."""
    return list(dict.fromkeys(w for g in label_concepts(label) for w in g))


def _add(tok: str, groups: list[list[str]], implied: int | None, voc: Vocabulary) -> int | None:
    """Append what ``tok`` says to ``groups``; return the index of a marker whose polarity may follow."""
    if not tok or tok in voc.ignore or tok.isdigit() or (len(tok) == 1 and tok not in voc.abbreviations):
        return None
    if tok in _POLARITY and implied is not None:
        base = re.sub(r"(\+|-|low|dim|bright)$", "", groups[implied][0])
        form = base + _POLARITY[tok]
        groups[implied] = list(voc.abbreviations.get(form, (form,)))
        return None
    tok = _singular(tok, voc.words)
    if tok in voc.abbreviations:
        groups.append(list(voc.abbreviations[tok]))
        return None
    marker = _marker(tok, voc.words)
    if marker:
        form, was_implied = marker
        if form not in voc.words and form not in voc.abbreviations:
            return None  # a gene CL names nowhere (``CX3CR1``) or numbering (``B04``): says nothing
        groups.append(list(voc.abbreviations.get(form, (form,))))
        return len(groups) - 1 if was_implied else None
    if tok in voc.words:
        groups.append([tok])
    return None


@dataclass(frozen=True)
class Match:
    """The CL term a label names, and how it was found."""

    label: str
    term: str  # CL ID, "" when nothing was found
    source: str  # "name", "synonym", "rule" or "none"


def _normalised(label: str, voc: Vocabulary) -> str:
    toks = [_singular(t, voc.words) for t in rewrite(label).split(" ") if t]
    return " ".join(t for t in toks if t not in voc.ignore)


def exact_term(text: str) -> tuple[str, str] | None:
    """``(CL ID, "name" | "synonym")`` when ``text`` is a CL name or synonym (or a table convention) after
    normalising case, punctuation and plurals, else None."""
    voc = vocabulary()
    key = _normalised(text, voc)
    return voc.conventions.get(key) or voc.exact.get(key)


def match(label: str) -> Match:
    """The CL term of one cell-type label (see the module's description)."""
    voc = vocabulary()
    found = exact_term(label)
    if found:
        return Match(label, *found)
    concepts = label_concepts(label)
    words = list(dict.fromkeys(w for g in concepts for w in g))
    key = " ".join(words)
    if key in voc.exact and len(words) == 1:  # shorthand for one CL name or synonym ("DC4" -> dendritic cell)
        return Match(label, voc.exact[key][0], "rule")
    have = set(words)
    weights = []  # per concept: its key (rarest) word, its weight
    for g in dict.fromkeys(concepts):
        key_word = max(g, key=voc.idf)
        bare_marker = len(g) == 1 and _marker(g[0], voc.words) is not None
        weights.append((g, key_word, voc.idf(key_word) * (_MARKER_WEIGHT if bare_marker else 1.0)))
    best, best_key = None, None
    for i in {i for w in have for i in voc.by_token.get(w, ())}:
        v = voc.variants[i]
        if v.head not in have:
            continue
        # the label's concepts the term says (its key word: "memory" of memory B, "cd4+" of CD4), each weighted by
        # that word's rarity (a rare word such as "mait" or "follicular" says more than "cd8+"), a little more for
        # their other words; then the fewest words the label lacks; then table synonym > name > synonym; then the
        # more specific term
        said = sum(w * (key_word in v.tokens) + 1e-3 * sum(voc.idf(x) for x in g if x in v.tokens)
                   for g, key_word, w in weights)
        score = (round(said, 9), -len(v.tokens - have), -v.rank, len(voc.ontology.term(v.term).ancestors))
        if best_key is None or score > best_key or (score == best_key and v.term < best.term):
            best, best_key = v, score
    if best is None:
        return Match(label, "", "none")
    return Match(label, best.term, "rule")


def candidates(label: str, n: int = 3) -> list[str]:
    """The ``n`` CL terms whose names look most like ``label`` (``"CL:… name"``), for an unmatched label's message."""
    cl = cell_ontology()
    names = {t.name: t.id for t in cl.terms.values()}
    text = " ".join(label_tokens(label)) or rewrite(label)
    close = difflib.get_close_matches(text, list(names), n=n, cutoff=0.0)
    return [f"{names[c]} {c}" for c in close]
