"""Deterministic generator of a small, realistic single-cell "demo atlas" with a known answer.

Model (all randomness from one ``numpy.random.default_rng(seed)``): genes are all CytoSig genes, ~1,000 SecAct
genes not in CytoSig and ~100 markers / housekeeping genes (read from secactpy 0.3.1's data files). Cell types form
a nested 4-level immune hierarchy with uneven, partly rare proportions plus a ~1 % ``"Doublets"`` class. An
L4 log-mean profile is a shared log-normal baseline plus the effects (known markers + random genes) of its
L1..L4 nodes, so nested types resemble each other; doublets average a T-cell and a monocyte profile. Donors
(one sample each) differ in size, composition, small per-gene effects and sex genes; cells also fall in one
of a few per-type "states" (NB-like over-dispersion). Planted responses: in a few (cytokine, L2 type, donor
subset) triples the affected cells' log means move by ``strength * z`` (``z`` = clipped, standardised
CytoSig column), truth in ``uns``. Planted conditions, the same way: donors carry a ``treatment`` (half of them
treated) and a ``bmi``; IL10's response is raised in the monocytes of treated donors and IL6's response in CD4 T
cells follows each donor's standardised bmi (truth in ``uns["demo_atlas"]["planted_conditions"]``).
Counts: Poisson(library size x profile), library sizes ~4k UMIs.
"""

from __future__ import annotations

import functools
import os
import pathlib
import zlib
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from cytoatlas import defaults

if TYPE_CHECKING:
    import anndata

DEMO_LEVELS = {"L1": "cell_type_l1", "L2": "cell_type_l2", "L3": "cell_type_l3", "L4": "cell_type_l4"}
DEMO_EXCLUDE = {"cell_type_l1": ["Doublets"]}
# The second demo atlas names the same lineages as another consortium would (its L2 "T-unconv" is mapped to a Cell
# Ontology ID in its registry entry, and meets the first atlas' "Unconventional T" at T cell).
DEMO2_RENAME = {
    # L1
    "T cells": "T lymphocytes", "B cells": "B lymphocytes", "Myeloid": "Myeloid cells", "NK cells": "Natural killer",
    # L2
    "CD4 T": "CD4-positive T cells", "CD8 T": "CD8-positive T cells", "Unconventional T": "T-unconv",
    "Proliferating T": "Cycling T cells", "B": "B cells", "Plasma": "Plasma cells", "Monocytes": "Mono",
    "Dendritic cells": "DCs", "NK": "NK cells", "ILC": "Innate lymphoid cells",
    # L3
    "CD4 Naive": "Naive CD4+ T", "CD4 Memory": "Memory CD4+ T", "Treg": "Regulatory T", "CD8 Naive": "Naive CD8+ T",
    "CD8 Memory": "Memory CD8+ T", "MAIT": "MAIT cells", "gdT": "gamma-delta T", "B naive": "Naive B",
    "B memory": "Memory B", "Plasmablast": "Plasmablasts", "CD14 Mono": "Classical monocytes",
    "CD16 Mono": "Non-classical monocytes", "cDC": "Conventional DC", "pDC": "Plasmacytoid DC",
    "NK CD56dim": "CD56dim NK", "NK CD56bright": "CD56bright NK",
    # L4
    "CD4 TCM": "CD4+ central memory T", "CD4 TEM": "CD4+ effector memory T", "CD4 CTL": "Cytotoxic CD4+ T",
    "Treg Naive": "Naive Treg", "Treg Memory": "Memory Treg", "CD8 TCM": "CD8+ central memory T",
    "CD8 TEM": "CD8+ effector memory T", "CD8 TEMRA": "CD8+ TEMRA", "gdT Vd2": "Vd2 gamma-delta T",
    "gdT non-Vd2": "Non-Vd2 gamma-delta T", "T Proliferating": "Proliferating T cells",
    "B transitional": "Transitional B", "B memory switched": "Switched memory B",
    "B memory unswitched": "Unswitched memory B", "cDC1": "CLEC9A+ cDC1", "cDC2": "CD1C+ cDC2",
    "NK adaptive": "Adaptive NK",
}

# L1 | L2 | L3 | L4 types with relative abundances (some rare on purpose: sample x L4 groups with < 10 cells)
_HIERARCHY = """
T cells|CD4 T|CD4 Naive|CD4 Naive:1200
T cells|CD4 T|CD4 Memory|CD4 TCM:800,CD4 TEM:400,CD4 CTL:80
T cells|CD4 T|Treg|Treg Naive:100,Treg Memory:120
T cells|CD8 T|CD8 Naive|CD8 Naive:500
T cells|CD8 T|CD8 Memory|CD8 TCM:200,CD8 TEM:450,CD8 TEMRA:250
T cells|Unconventional T|MAIT|MAIT:180
T cells|Unconventional T|gdT|gdT Vd2:150,gdT non-Vd2:40
T cells|Proliferating T|Proliferating T|T Proliferating:30
B cells|B|B naive|B naive:550,B transitional:80
B cells|B|B memory|B memory switched:220,B memory unswitched:120
B cells|Plasma|Plasmablast|Plasmablast:25
Myeloid|Monocytes|CD14 Mono|CD14 Mono:2000
Myeloid|Monocytes|CD16 Mono|CD16 Mono:350
Myeloid|Dendritic cells|cDC|cDC1:8,cDC2:150
Myeloid|Dendritic cells|pDC|pDC:70
NK cells|NK|NK CD56dim|NK CD56dim:750,NK adaptive:100
NK cells|NK|NK CD56bright|NK CD56bright:60
NK cells|ILC|ILC|ILC:12
Doublets|Doublets|Doublets|Doublets:100
"""

# Known markers per hierarchy node (any level): off elsewhere, switched on in the node's cells.
_MARKERS = {
    "T cells": "CD3E CD3D CD3G CD2 CD5 CD7 TRAC", "B cells": "MS4A1 CD79A CD79B CD19 CD22 PAX5",
    "Myeloid": "LYZ CD68 CSF1R HLA-DRA TYROBP", "NK cells": "NKG7 GNLY KLRD1 KLRF1 PRF1 TYROBP", "NK": "FCER1G",
    "CD4 T": "CD4 IL7R", "CD8 T": "CD8A CD8B", "Unconventional T": "KLRB1 IL7R", "Proliferating T": "MKI67 TOP2A",
    "B": "IGHM BANK1", "Plasma": "JCHAIN MZB1 XBP1 SDC1 IGHG1 IGHA1", "Monocytes": "S100A8 S100A9 FCN1",
    "Dendritic cells": "HLA-DRB1 HLA-DQA1", "ILC": "KIT RORC GATA3 IL7R", "CD4 Naive": "CCR7 SELL LEF1 TCF7",
    "Treg": "FOXP3 IL2RA CTLA4", "CD8 Naive": "CCR7 SELL LEF1", "CD8 Memory": "GZMK GZMH CCL5", "B memory": "CD27",
    "MAIT": "SLC4A10 ZBTB16", "gdT": "TRDC TRGC1", "B naive": "IGHD TCL1A", "CD14 Mono": "CD14 VCAN",
    "CD16 Mono": "FCGR3A MS4A7", "cDC": "ITGAX", "pDC": "LILRA4 IL3RA CLEC4C IRF7", "NK CD56dim": "FCGR3A",
    "NK CD56bright": "NCAM1 SELL", "CD4 CTL": "GZMB PRF1", "CD8 TEMRA": "GZMB B3GAT1", "cDC1": "CLEC9A XCR1",
    "cDC2": "CD1C FCER1A CLEC10A", "NK adaptive": "KLRC2", "gdT Vd2": "TRDV2", "B memory switched": "IGHG1 IGHA1",
}
_HOUSEKEEPING = {  # fixed log means (random genes: N(0, 1.9)): a few genes take a large share of UMIs
    "MALAT1": 8.0, "TMSB4X": 7.0, "B2M": 7.0, "ACTB": 6.5, "EEF1A1": 6.5, "FTL": 6.0, "FTH1": 6.0, "TPT1": 6.0,
    "GAPDH": 5.0, "UBC": 5.0, "PTPRC": 5.0, "MT-CO1": 6.0, "MT-CO2": 5.5, "MT-ATP6": 5.5, "MT-ND1": 5.0,
    "MT-CYB": 5.0, "HBB": 1.0, "PPBP": 1.0,  # the last two: ambient / platelet contamination
}
_SEX_GENES = {"F": "XIST", "M": "RPS4Y1 DDX3Y UTY KDM5D"}
# cytokine, L2 type, number of affected donors, strength (log-mean shift per signature z unit)
_PLANTED = [("IFNG", "Monocytes", 8, 0.5), ("IL2", "CD4 T", 6, 0.4), ("TNFA", "NK", 6, 0.45),
            ("IL4", "B", 6, 0.45), ("IFN1", "CD8 T", 7, 0.4), ("TGFB1", "Dendritic cells", 5, 0.5)]
# Planted conditions (per-donor obs columns a comparison can find): cytokine, L2 type, the column, strength. A
# treated donor's cells of the type move by strength x a donor factor (`_DONOR_FACTOR`); along `bmi` every donor's
# cells move by strength x the donor's standardised bmi, so the response is a slope, not a group difference.
_CONDITIONS = [("IL10", "Monocytes", "treatment", 0.2), ("IL6", "CD4 T", "bmi", 0.1)]
TREATMENT_LEVELS = ("untreated", "treated")
_CONDITION_EFFECT = {"treatment": "treated vs untreated, x a donor factor in [0.75, 1.25]",
                     "bmi": "per standardised bmi unit (mean 0, sd 1 over the donors)"}
_BMI_MEAN, _BMI_SD, _BMI_RANGE = 26.0, 4.0, (17.0, 40.0)
# the conditions draw from a stream of their own (from the same seed), so the generator's other draws (donors,
# compositions, profiles, milieu) are as they were before conditions existed; counts differ where profiles do
_CONDITION_STREAM = 17
# ... and are redrawn (at most `_CONDITION_DRAWS` times, else the best draw is kept) while treatment or bmi tracks,
# by chance, a donor effect that was not planted on them (a donor's background milieu of any cytokine, or another
# planted response's donors): |r| * sqrt(n_donors) must stay below the limit (|r| < 0.53, p ~ 0.01, at 24 donors)
_CHANCE_LIMIT, _CONDITION_DRAWS = 2.6, 200
_N_SECACT_EXTRA, _N_STATES, _MEAN_UMI, _BASE_SD = 1000, 4, 4000.0, 1.9
# per hierarchy depth (L1..L4): how many random genes a node shifts, and the size of the shifts
_NODE_GENES, _NODE_SCALE = (120, 60, 40, 20), (1.0, 0.8, 0.6, 0.5)
# a planted cytokine's own gene: log mean in every cell type, and its rise per unit of strength in responding cells
# (the responding cells also make the cytokine, as in an autocrine loop: its expression tracks the response)
_CYTOKINE_BASE, _CYTOKINE_RISE = 1.5, 3.0
# each affected donor responds with strength x a factor drawn from this range (graded, not all-or-none)
_DONOR_FACTOR = (0.75, 1.25)
# donors differ from each other by small effects on every gene (log scale sd), and by a background cytokine
# milieu: a small shift along every cytokine's own direction (sd in strength units), the same in all their cells
_DONOR_SD, _MILIEU_SD = 0.1, 0.05
_DIRECTION_CLIP = 5.0


def _signature_file(name: str) -> pathlib.Path:
    from cytoatlas._activity.signature_data import signature_data_file

    return signature_data_file(name)


@functools.lru_cache(maxsize=1)
def _cytosig() -> pd.DataFrame:
    return pd.read_csv(_signature_file("CytoSig.tsv.gz"), sep="\t", index_col=0)


def _secact_extra_genes(n: int) -> list[str]:
    """The first ``n`` SecAct genes (file order = genomic order) not in CytoSig, streamed with an early
    stop: decompressing the whole 80 MB file would take ~1.5 s, 10 % of the time budget."""
    cyto, found, tail, header = set(_cytosig().index), [], b"", True
    dec = zlib.decompressobj(wbits=31)
    with open(_signature_file("SecAct.tsv.gz"), "rb") as fh:
        while len(found) < n and (block := fh.read(1 << 18)):
            *lines, tail = (tail + dec.decompress(block)).split(b"\n")
            if header and lines:  # the first line holds the signature names
                lines, header = lines[1:], False
            found += [g for g in (line.split(b"\t", 1)[0].decode() for line in lines) if g not in cyto]
    return found[:n]


@functools.lru_cache(maxsize=1)
def cytokine_genes() -> dict[str, str]:
    """``{CytoSig target: its gene}`` from the table validation uses (TNFA -> TNF, GMCSF -> CSF2, ...)."""
    from importlib import resources

    with resources.files("cytoatlas").joinpath("_validate/data/cytosig_targets.csv").open() as fh:
        table = pd.read_csv(fh, dtype=str, keep_default_na=False)
    return dict(zip(table["target"], table["gene"], strict=True))


@functools.lru_cache(maxsize=1)
def _gene_universe() -> tuple[str, ...]:
    words = " ".join([*_MARKERS.values(), *_SEX_GENES.values(), *_HOUSEKEEPING]).split()
    return tuple(sorted(set(_cytosig().index) | set(_secact_extra_genes(_N_SECACT_EXTRA)) | set(words)
                        | set(cytokine_genes().values())))


def _parse_hierarchy() -> tuple[pd.DataFrame, np.ndarray]:
    """One row per L4 type with its L1-L3 ancestors, and the expected cell-type proportions."""
    rows = []
    for line in _HIERARCHY.strip().splitlines():
        *parents, leaves = line.split("|")
        rows += [(*parents, *leaf.split(":")) for leaf in leaves.split(",")]
    weights = np.array([float(r[4]) for r in rows])
    return pd.DataFrame([r[:4] for r in rows], columns=list(DEMO_LEVELS.values())), weights / weights.sum()


def _type_log_profiles(rng: np.random.Generator, genes: list[str], table: pd.DataFrame) -> np.ndarray:
    """Log-mean profile per L4 type (rows of ``table``): baseline + the effects of its 4 ancestors."""
    gidx = {g: i for i, g in enumerate(genes)}
    base = rng.normal(0.0, _BASE_SD, len(genes))
    base[rng.random(len(genes)) < 0.5] -= 4.0  # many signature genes are silent in blood cells
    ribo = [i for g, i in gidx.items() if g.startswith(("RPL", "RPS"))]
    base[ribo] = 5.0 + 0.2 * base[ribo]  # ribosomal proteins: ~20 % of UMIs in PBMC
    for words in [*_MARKERS.values(), *_SEX_GENES.values()]:  # (RPS4Y1 is a sex gene, not ribosomal)
        base[[gidx[g] for g in words.split()]] = -3.0  # markers are off unless a node switches them on
    base[[gidx[g] for g in _HOUSEKEEPING]] = list(_HOUSEKEEPING.values())
    logp = np.tile(base, (len(table), 1))
    for depth, col in enumerate(table.columns):
        n_random, scale = _NODE_GENES[depth], _NODE_SCALE[depth]
        for label in dict.fromkeys(table[col]):
            if label == "Doublets":
                continue
            rows = (table[col] == label).to_numpy()
            chosen = rng.choice(len(genes), n_random, replace=False)
            logp[np.ix_(rows, chosen)] += rng.normal(0.5, 1.0, n_random) * scale
            markers = [gidx[g] for g in _MARKERS.get(label, "").split()]
            logp[np.ix_(rows, markers)] = 3.0 + np.abs(rng.normal(0.0, 1.2, len(markers)))  # switched on
    mix = logp[table["cell_type_l4"].isin(["CD4 Naive", "CD14 Mono"]).to_numpy()]
    logp[(table["cell_type_l4"] == "Doublets").to_numpy()] = np.logaddexp(mix[0], mix[1]) - np.log(2.0)
    return logp


def _sample_counts(rng: np.random.Generator, profiles: np.ndarray, combo: np.ndarray,
                   libsize: np.ndarray, chunk: int = 1024) -> sp.csr_matrix:
    """Poisson(libsize * profile) counts as CSR, ``chunk`` cells at a time.

    ``E = -log(1 - u)`` is the first arrival of a unit-rate Poisson process: the count is nonzero iff
    ``E < lam`` and then ``1 + Poisson(lam - E)``. As ``P(count > 0) <= lam``, the dense ``u < lam``
    pre-selects every possible nonzero, so log and Poisson draws only touch ~20 % of the entries.
    """
    n, n_genes = combo.size, profiles.shape[1]
    lam_buf, u_buf = np.empty((2, chunk, n_genes), np.float32)  # reused: no page faults per chunk
    cand_buf = np.empty(lam_buf.shape, bool)
    data, indices, nnz = [], [], [np.zeros(1, np.int64)]
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        lam, u, cand = lam_buf[:m], u_buf[:m], cand_buf[:m]
        np.take(profiles, combo[start:start + m], axis=0, out=lam)
        lam *= libsize[start:start + m, None]
        rng.random(out=u, dtype=np.float32)
        flat = np.flatnonzero(np.less(u, lam, out=cand))  # row-major: columns sorted within rows
        rate = lam.ravel()[flat] + np.log(1 - u.ravel()[flat])  # lam - E
        flat, rate = flat[rate > 0], rate[rate > 0]
        data.append(_one_plus_poisson(rng, rate))
        rows = flat // n_genes
        indices.append((flat - rows * n_genes).astype(np.int32))
        nnz.append(np.bincount(rows, minlength=m))
    indptr = np.cumsum(np.concatenate(nnz))
    return sp.csr_matrix((np.concatenate(data), np.concatenate(indices), indptr), shape=(n, n_genes))


def _one_plus_poisson(rng: np.random.Generator, rate: np.ndarray) -> np.ndarray:
    """``1 + Poisson(rate)``: the same arrival trick once more, so most tiny rates skip rng.poisson."""
    counts = np.ones(rate.size, np.float32)
    u = rng.random(rate.size, dtype=np.float32)
    sel = np.flatnonzero(u < rate)
    rest = rate[sel] + np.log(1 - u[sel])
    counts[sel[rest > 0]] += 1 + rng.poisson(rest[rest > 0])
    return counts


def _response_directions(cytokines: list[str]) -> pd.DataFrame:
    """Each cytokine's own response direction over the CytoSig genes (see `_directions`)."""
    return _directions(tuple(cytokines)).copy()


@functools.lru_cache(maxsize=8)
def _directions(cytokines: tuple[str, ...]) -> pd.DataFrame:
    """Per cytokine, a gene shift that moves its own CytoSig signature as much as its column would, and no other.

    The shift is the part of the cytokine's column (z-scored, clipped at +-3) that the other 42 columns do not
    explain (least-squares residual r), scaled by 1 / var(r): its covariance with the cytokine's own column is 1,
    as the column's own variance, and with every other column 0. Planting the column itself would move every
    correlated signature too (ridge activity over ~4,800 genes picks up correlations of 0.1), so every cytokine
    would seem to respond where one was planted; this way the demo's truth is exactly what was planted.
    The few extreme values (highly collinear cytokines: IFN1, IL1B) are clipped at +-5. Returns genes x cytokines.
    """
    sig = _cytosig()
    z = ((sig - sig.mean()) / sig.std()).clip(-3.0, 3.0)
    out = {}
    for c in cytokines:
        others = z.drop(columns=[c]).to_numpy()
        coef, *_ = np.linalg.lstsq(others, z[c].to_numpy(), rcond=None)
        resid = z[c].to_numpy() - others @ coef
        out[c] = (resid / resid.var(ddof=1)).clip(-_DIRECTION_CLIP, _DIRECTION_CLIP)
    return pd.DataFrame(out, index=sig.index)


def _make_obs(rng: np.random.Generator, table: pd.DataFrame, weights: np.ndarray, n_cells: int, n_donors: int,
              prefixes: tuple[str, str] = ("D", "S")) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Cells ordered by sample (like a concatenated atlas), uneven donor sizes and compositions."""
    width = max(2, len(str(n_donors)))
    size = rng.lognormal(0.0, 0.5, n_donors)
    per_donor = rng.multinomial(n_cells, size / size.sum())
    donor_idx = np.repeat(np.arange(n_donors), per_donor)
    comps = weights * rng.lognormal(0.0, 0.4, (n_donors, weights.size))  # donor-specific compositions
    comps /= comps.sum(axis=1, keepdims=True)
    type_idx = np.concatenate([rng.choice(len(c), k, p=c) for k, c in zip(per_donor, comps, strict=True)])
    sex, age = rng.choice(["F", "M"], n_donors), rng.integers(20, 80, n_donors)
    barcodes = rng.choice(list("ACGT"), (n_cells, 16)).view("<U16").ravel()
    obs = pd.DataFrame({
        "sample": pd.Categorical.from_codes(donor_idx, [f"{prefixes[1]}{i + 1:0{width}d}" for i in range(n_donors)]),
        "donor": pd.Categorical.from_codes(donor_idx, [f"{prefixes[0]}{i + 1:0{width}d}" for i in range(n_donors)]),
    }, index=pd.Index([f"{b}-{d + 1}" for b, d in zip(barcodes, donor_idx, strict=True)]))
    for col in table.columns:
        obs[col] = pd.Categorical(table[col].to_numpy()[type_idx], categories=list(dict.fromkeys(table[col])))
    obs["sex"], obs["age"] = pd.Categorical(sex[donor_idx], categories=["F", "M"]), age[donor_idx]
    return obs, donor_idx, type_idx, sex


def _cell_profiles(rng: np.random.Generator, genes: list[str], table: pd.DataFrame, donor_idx: np.ndarray,
                   type_idx: np.ndarray, sex: np.ndarray, planted: list,
                   conditions: _ConditionDraw | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Normalised mean profile per (donor, L4 type, state) present, and each cell's row in it; ``conditions``
    adds its plants, drawn once the donors' milieu is known."""
    n_types, n_genes = len(table), len(genes)
    logp = _type_log_profiles(rng, genes, table)
    cytokines = [p[0] for p in planted] + (conditions.cytokines if conditions is not None else [])
    logp[:, [genes.index(cytokine_genes()[c]) for c in cytokines]] = _CYTOKINE_BASE
    state = rng.integers(0, _N_STATES, donor_idx.size)
    keys, combo = np.unique((donor_idx * n_types + type_idx) * _N_STATES + state, return_inverse=True)
    d, t, s = keys // (n_types * _N_STATES), keys // _N_STATES % n_types, keys % _N_STATES
    state_eff = rng.normal(0.0, 0.25, (n_types, _N_STATES, n_genes))
    donor_eff = rng.normal(0.0, _DONOR_SD, (sex.size, n_genes))
    for sx, words in _SEX_GENES.items():
        donor_eff[np.ix_(sex == sx, [genes.index(g) for g in words.split()])] += 7.0
    directions = _response_directions(list(_cytosig().columns)).reindex(genes).fillna(0.0).to_numpy()
    milieu = rng.normal(0.0, _MILIEU_SD, (sex.size, directions.shape[1]))
    donor_eff += milieu @ directions.T
    if conditions is not None:
        planted = planted + conditions.draw(milieu)
    own = [genes.index(cytokine_genes()[p[0]]) for p in planted]
    log = (logp[t] + state_eff[t, s] + donor_eff[d]).astype(np.float32)
    # planted response: shift by strength x the cytokine's own direction (0 outside CytoSig)
    z = _response_directions([p[0] for p in planted]).reindex(genes).fillna(0.0).to_numpy(np.float32).T
    l2 = table["cell_type_l2"].to_numpy()[t]
    for (_, cell_type, donors, strength, factor), w, gene in zip(planted, z, own, strict=True):
        rows = np.flatnonzero(np.isin(d, donors) & (l2 == cell_type))
        scale = (strength * factor[np.searchsorted(donors, d[rows])]).astype(np.float32)[:, None]
        log[rows] += scale * w
        log[rows, gene] += _CYTOKINE_RISE * scale[:, 0]
    prof = np.exp(log - log.max(axis=1, keepdims=True))
    return prof / prof.sum(axis=1, keepdims=True), combo.ravel()


def _max_abs_corr(values: np.ndarray, nuisance: np.ndarray) -> float:
    """The largest |Pearson r| of ``values`` with a column of ``nuisance`` (donors x effects; constant ones
    ignored)."""
    v = values - values.mean()
    m = nuisance - nuisance.mean(axis=0)
    norms = np.sqrt((m**2).sum(axis=0)) * np.sqrt((v**2).sum())
    ok = norms > 0
    return float(np.abs(v @ m[:, ok] / norms[ok]).max(initial=0.0))


def _donor_conditions(seed: int, n_donors: int, nuisance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per donor: treated (exactly ``n_donors // 2``) and bmi (~N(26, 4) clipped to [17, 40], one decimal), drawn
    from the seed's condition stream until neither tracks a column of ``nuisance`` (see `_CHANCE_LIMIT`)."""
    rng = np.random.default_rng([seed, _CONDITION_STREAM])
    best = None
    for _ in range(_CONDITION_DRAWS):
        treated = np.zeros(n_donors, dtype=bool)
        treated[rng.choice(n_donors, n_donors // 2, replace=False)] = True
        bmi = np.round(np.clip(rng.normal(_BMI_MEAN, _BMI_SD, n_donors), *_BMI_RANGE), 1)
        worst = max(_max_abs_corr(treated.astype(float), nuisance), _max_abs_corr(bmi, nuisance)) * np.sqrt(n_donors)
        if best is None or worst < best[0]:
            best = (worst, treated, bmi)
        if worst < _CHANCE_LIMIT:
            break
    return best[1], best[2]


class _ConditionDraw:
    """An atlas' planted conditions, drawn once its donors' milieu is known (by `_cell_profiles`), so that they are
    independent of every donor effect that was not planted on them."""

    def __init__(self, seed: int, n_donors: int, planted: list):
        self.seed, self.n_donors, self.planted = seed, n_donors, planted
        self.cytokines = [c[0] for c in _CONDITIONS]
        self.treated = self.bmi = None
        self.plants: list = []

    def draw(self, milieu: np.ndarray) -> list:
        """The conditions as `_cell_profiles` plants them: (cytokine, L2 type, donor indices, strength, each
        donor's factor), given the donors' milieu (donors x cytokines)."""
        strengths = np.zeros((self.n_donors, len(self.planted)))
        for k, (_, _, donors, strength, factor) in enumerate(self.planted):
            strengths[donors, k] = strength * factor
        self.treated, self.bmi = _donor_conditions(self.seed, self.n_donors, np.column_stack([milieu, strengths]))
        rng = np.random.default_rng([self.seed, _CONDITION_STREAM, 1])
        sd = self.bmi.std(ddof=1)  # n_donors >= 2
        by_column = {"treatment": (np.flatnonzero(self.treated), None),
                     "bmi": (np.arange(self.n_donors), (self.bmi - self.bmi.mean()) / sd if sd > 0 else self.bmi * 0)}
        for cytokine, l2, column, strength in _CONDITIONS:
            donors, factor = by_column[column]
            factor = rng.uniform(*_DONOR_FACTOR, donors.size) if factor is None else factor
            self.plants.append((cytokine, l2, donors, strength, factor))
        return self.plants


def _build_adata(n_cells: int, n_donors: int, seed: int, prefixes: tuple[str, str] = ("D", "S"),
                 rename: dict[str, str] | None = None) -> anndata.AnnData:
    import anndata  # deferred: keeps `import cytoatlas.demo_atlas` cheap

    rng = np.random.default_rng(seed)
    genes = list(_gene_universe())
    table, weights = _parse_hierarchy()
    # (cytokine, L2 type, affected donor indices, strength, each affected donor's factor); at most half of the
    # donors are affected
    planted = []
    for cyt, l2, k, strength in _PLANTED:
        donors = np.sort(rng.choice(n_donors, max(1, min(k, n_donors // 2)), replace=False))
        planted.append((cyt, l2, donors, strength, rng.uniform(*_DONOR_FACTOR, donors.size)))
    obs, donor_idx, type_idx, sex = _make_obs(rng, table, weights, n_cells, n_donors, prefixes)
    draw = _ConditionDraw(seed, n_donors, planted)
    prof, combo = _cell_profiles(rng, genes, table, donor_idx, type_idx, sex, planted, draw)
    conditions = draw.plants
    obs["treatment"] = pd.Categorical.from_codes(draw.treated[donor_idx].astype(np.int8), list(TREATMENT_LEVELS))
    obs["bmi"] = draw.bmi[donor_idx]
    # sequencing depth varies per sample and per cell; myeloid cells and doublets hold more RNA
    depth = rng.lognormal(0.0, 0.15, n_donors)[donor_idx] * rng.lognormal(np.log(_MEAN_UMI), 0.3, n_cells)
    factor = obs["cell_type_l1"].map({"Myeloid": 1.25, "Doublets": 1.8}).astype(float).fillna(1.0)
    X = _sample_counts(rng, prof, combo, (depth * factor.to_numpy()).astype(np.float32))
    totals = np.asarray(X.sum(axis=1)).ravel()
    mito = np.array([g.startswith("MT-") for g in genes])
    obs["n_counts"], obs["n_genes"] = totals.astype(np.float32), np.diff(X.indptr).astype(np.int32)
    obs["pct_counts_mt"] = (100 * np.asarray(X[:, mito].sum(axis=1)).ravel() / totals).astype(np.float32)
    ids = np.random.default_rng(0x5EC7).choice(300_000, len(genes), replace=False)  # same for every seed
    var = pd.DataFrame({"gene_ids": [f"ENSG{i:011d}" for i in ids]}, index=pd.Index(genes))
    cytokines, l2s, donor_sets, strengths, _ = zip(*planted, strict=True)
    rename = dict(rename or {})
    for col in DEMO_LEVELS.values():  # another atlas' vocabulary: the same cells under other names
        obs[col] = obs[col].cat.rename_categories([rename.get(c, c) for c in obs[col].cat.categories])
    truth = {"cytokine": np.array(cytokines), "cell_type_l2": np.array([rename.get(x, x) for x in l2s]),
             "strength": np.array(strengths),
             "donors": np.array([",".join(obs["donor"].cat.categories[d]) for d in donor_sets])}
    condition_truth = {
        "cytokine": np.array([c[0] for c in _CONDITIONS]),
        "cell_type_l2": np.array([rename.get(c[1], c[1]) for c in _CONDITIONS]),
        "column": np.array([c[2] for c in _CONDITIONS]), "strength": np.array([c[3] for c in _CONDITIONS]),
        "effect": np.array([_CONDITION_EFFECT[c[2]] for c in _CONDITIONS]),
        "donors": np.array([",".join(obs["donor"].cat.categories[p[2]]) for p in conditions])}
    uns = {"planted_responses": truth, "demo_atlas": {
        "seed": seed, "n_cells": n_cells, "n_donors": n_donors, "generator": "cytoatlas.demo_atlas",
        "renamed": bool(rename), "planted_conditions": condition_truth}}
    return anndata.AnnData(X=X, obs=obs, var=var, uns=uns)


def write_demo_atlas(path: str | os.PathLike, *, n_cells: int = defaults.DEMO_N_CELLS, n_donors: int = 24,
                     seed: int = 0, donor_prefix: str = "D", sample_prefix: str = "S",
                     rename: dict[str, str] | None = None, generation: int | None = None) -> pathlib.Path:
    """Write a deterministic synthetic immune atlas with planted cytokine responses to ``.h5ad``.

    Parameters
    ----------
    path
        Destination ``.h5ad`` file. Written atomically (temporary file in the same directory, then
        ``os.replace``); parent directories are created.
    n_cells
        Exact number of cells (at least ``10 * n_donors``).
    n_donors
        Number of donors, one sample each (at least 2; planted responses affect at most half).
    seed
        Seed of the single ``numpy.random.default_rng`` stream. Same arguments give identical
        ``X``, ``obs`` and ``var``.
    donor_prefix, sample_prefix
        Donor and sample names are the prefix and a number (``D01``, ``S01``).
    rename
        ``{label: new label}`` for the cell-type labels of every level, as another atlas would name the same
        cells (e.g. `DEMO2_RENAME`); planted responses and all counts are unchanged by it.
    generation
        Recorded as ``uns["demo_atlas"]["generation"]`` (``cytoatlas demo`` rebuilds older generations).

    Returns
    -------
    pathlib.Path
        ``path``. ``X`` holds raw UMI counts (CSR, float32, gzip); ``obs`` has ``sample``, ``donor``,
        ``cell_type_l1`` .. ``cell_type_l4`` (nested, see `DEMO_LEVELS`), ``sex``, ``age``, ``treatment``
        (categorical ``untreated`` / ``treated``, ``n_donors // 2`` donors treated), ``bmi`` (float), ``n_counts``,
        ``n_genes`` and ``pct_counts_mt``; ``var`` is indexed by gene symbol with a ``gene_ids`` column;
        ``uns["planted_responses"]`` and ``uns["demo_atlas"]["planted_conditions"]`` hold the planted truth.
    """
    if n_donors < 2 or n_cells < 10 * n_donors:
        raise ValueError(f"need n_donors >= 2 and n_cells >= 10 * n_donors, got {n_cells=}, {n_donors=}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    adata = _build_adata(int(n_cells), int(n_donors), int(seed), (donor_prefix, sample_prefix), rename)
    if generation is not None:
        adata.uns["demo_atlas"]["generation"] = int(generation)
    from cytoatlas.io.durable import atomic_path

    with atomic_path(path) as tmp:
        # gzip level 1: ~35 % faster to write than the default level 4 for ~15 % larger files
        adata.write_h5ad(tmp, compression="gzip", compression_opts=1)
    return path
