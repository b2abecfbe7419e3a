"""Results do not depend on how the cells are split: batch sizes, and merged partial states."""

from __future__ import annotations

import anndata as ad
import numpy as np
from conftest import ONEK1K

import cytoatlas
from cytoatlas._pseudobulk.atoms import build_atoms
from cytoatlas._pseudobulk.state import AtomState
from cytoatlas.io.h5ad import ObsReader, open_counts, open_h5ad
from cytoatlas.registry import atlas_from_mapping

CFG = atlas_from_mapping("onek1k", {"h5ad": str(ONEK1K), "sample_col": "donor",
                                    "levels": {"ct": "cell_type", "sex_ct": ["sex", "cell_type"]}})


def test_identical_across_batch_sizes_bootstrap_included(tmp_path, monkeypatch):
    from cytoatlas._pseudobulk import state

    monkeypatch.setattr(state, "STRIPE_ROWS", 1000)  # 8 stripes: blocks of 7 and 50,000 rows straddle them
    runs = {}
    for bs in (7, 1000, 50_000):
        paths = cytoatlas.pseudobulk(CFG, tmp_path / str(bs), batch_size=bs, n_bootstrap=20, bootstrap_seed=3,
                                     min_samples=5)
        runs[bs] = [ad.read_h5ad(p) for p in paths]
    ref = runs[50_000]
    assert [a.n_obs for a in ref] == [a.n_obs for a in runs[7]]
    assert ref[2].n_obs == 4 * 20  # four cell types, each with >= 5 donors of >= 10 cells
    for bs in (7, 1000):
        for a, b in zip(runs[bs], ref, strict=True):
            assert list(a.obs_names) == list(b.obs_names)
            np.testing.assert_array_equal(a.X, b.X)  # from exact integer sums: bit for bit
            if "counts" in b.layers:
                np.testing.assert_array_equal(a.layers["counts"], b.layers["counts"])
            # moments are summed per fixed stripe of cells and merged in stripe order: bit for bit too
            np.testing.assert_array_equal(a.uns["atlas_stats"]["std"], b.uns["atlas_stats"]["std"])
            np.testing.assert_array_equal(a.layers["zscore"], b.layers["zscore"])


def _state(parts: list[tuple[int, int]], batch: int, order: list[int] | None = None) -> AtomState:
    """Partial states of row ranges (each its own pass), merged in ``order``."""
    with open_h5ad(ONEK1K) as f:
        atoms = build_atoms(ObsReader(f), CFG, list(CFG.levels))
        counts = open_counts(f)
        states = []
        for lo, hi in parts:
            s = AtomState.empty(atoms.n_atoms, counts.shape[1], stripe_rows=1000)
            for block in counts.blocks(batch, lo, hi):
                s.add_block(block, atoms.cell_atom[block.start:block.stop])
            states.append(s.finish())
    order = order or list(range(len(states)))
    total = states[order[0]]
    for i in order[1:]:
        total = states[i].merge(total) if i % 2 else total.merge(states[i])
    return total


def test_state_merge_equals_one_pass():
    """Partitions of whole stripes, merged in any order and either way round: the one-pass state, bit for bit."""
    whole = _state([(0, 7811)], 7811)
    merged = _state([(0, 1000), (1000, 4000), (4000, 7000), (7000, 7811)], 333, order=[2, 0, 3, 1])
    np.testing.assert_array_equal(merged.atom_sums, whole.atom_sums)
    np.testing.assert_array_equal(merged.atom_cells, whole.atom_cells)
    np.testing.assert_array_equal(merged.atom_totals, whole.atom_totals)
    np.testing.assert_array_equal(merged.gene_nnz, whole.gene_nnz)
    m, w = merged.final_moments(), whole.final_moments()
    assert m.n == w.n == 7811
    np.testing.assert_array_equal(m.mean, w.mean)
    np.testing.assert_array_equal(m.m2, w.m2)


def test_moments_match_a_direct_computation_across_stripes():
    """Stripe sums merged with Chan's formula equal numpy's mean and variance of the cells' log1p CPM."""
    import anndata as ad

    merged = _state([(0, 3000), (3000, 7811)], 500).final_moments()
    x = ad.read_h5ad(ONEK1K).X.toarray().astype(np.float64)
    v = np.log1p(x * (1e6 / x.sum(axis=1, keepdims=True)))
    np.testing.assert_allclose(merged.mean, v.mean(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(merged.std(ddof=1), v.std(axis=0, ddof=1), rtol=1e-8, atol=1e-10)


def test_merging_overlapping_or_unfinished_states_is_refused():
    import pytest

    from cytoatlas.errors import CytoatlasError

    with open_h5ad(ONEK1K) as f:
        atoms = build_atoms(ObsReader(f), CFG, list(CFG.levels))
        counts = open_counts(f)
        a = AtomState.empty(atoms.n_atoms, counts.shape[1], stripe_rows=1000)
        a.add_block(counts.block(0, 1500), atoms.cell_atom[:1500])
        with pytest.raises(CytoatlasError, match="open stripe"):
            a.merge(a)
        a.finish()
        with pytest.raises(CytoatlasError, match="overlapping"):
            a.merge(a)


def test_counts_widen_instead_of_overflowing():
    """uint32 atom sums widen to int64 when an atom's total could pass 2**32 - 1: sums stay exact."""
    from cytoatlas.io.h5ad import CSRBlock

    big = np.array([2**31, 2**31, 7], dtype=np.float32)  # one gene reaching 2**32 + 7 in atom 0
    block = CSRBlock(0, 3, big, np.zeros(3, dtype=np.int32), np.arange(4, dtype=np.int64))
    state = AtomState.empty(1, 2)
    state.add_block(block, np.zeros(3, dtype=np.int32))
    assert state.atom_sums.dtype == np.int64
    assert int(state.atom_sums[0, 0]) == 2**32 + 7


def test_in_place_absorb_of_a_partial_state_equals_merge():
    """The driver adds a partition's state over a subset of the atoms in place (``absorb`` with rows): the same
    state as expanding it and merging; the uint16 form states travel in restores the counts exactly."""
    import pickle

    from cytoatlas._pseudobulk.partitions import PartialState, merge_partials

    with open_h5ad(ONEK1K) as f:
        atoms = build_atoms(ObsReader(f), CFG, list(CFG.levels))
        counts = open_counts(f)
        parts = []
        for lo, hi in ((0, 3000), (3000, 7811)):
            s = AtomState.empty(atoms.n_atoms, counts.shape[1], stripe_rows=1000)
            for block in counts.blocks(700, lo, hi):
                s.add_block(block, atoms.cell_atom[block.start:block.stop])
            parts.append(s.finish())
    # the second partition as a partial state over the atoms its cells belong to
    ids = np.unique(atoms.cell_atom[3000:][atoms.cell_atom[3000:] >= 0]).astype(np.int64)
    assert 0 < len(ids) < atoms.n_atoms
    b = parts[1]
    partial = PartialState(ids, AtomState(b.atom_sums[ids], b.atom_cells[ids], b.atom_totals[ids], b.gene_nnz,
                                          b.moments, b.stripe_rows, b.folded, dict(b.stripes)))
    assert partial.__getstate__()["state"].atom_sums.dtype == np.uint16  # these counts fit: half the bytes
    travelled = pickle.loads(pickle.dumps(partial, protocol=5))
    assert travelled.state.atom_sums.dtype == np.uint16  # added as it is: no widened copy on arrival
    np.testing.assert_array_equal(travelled.state.atom_sums, partial.state.atom_sums)
    want = parts[0].merge(parts[1])
    got = AtomState(parts[0].atom_sums.copy(), parts[0].atom_cells.copy(), parts[0].atom_totals.copy(),
                    parts[0].gene_nnz.copy(), parts[0].moments, 1000, parts[0].folded, dict(parts[0].stripes))
    got.absorb(travelled.state, ids)
    assert got.atom_sums.dtype == np.uint32
    for k in ("atom_sums", "atom_cells", "atom_totals", "gene_nnz"):
        np.testing.assert_array_equal(getattr(got, k), getattr(want, k))
    np.testing.assert_array_equal(got.final_moments().m2, want.final_moments().m2)
    # two narrow states merged on a worker add at uint32 (a uint16 sum could wrap)
    first = PartialState(np.arange(atoms.n_atoms), parts[0])
    both = merge_partials(pickle.loads(pickle.dumps(first, protocol=5)), travelled)
    assert both.state.atom_sums.dtype == np.uint32
    np.testing.assert_array_equal(both.state.atom_sums, want.atom_sums)
