"""cytoatlas.pl: each plot drawn from real step outputs (read back as a user reads them) and checked for what was
drawn: points, colours, patches, labels and colour limits, against the tables' own numbers."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import matplotlib
import numpy as np
import pandas as pd
import pytest
from _atlas_factory import tiny_config
from _compare_factory import Planted, write_atlas
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Polygon
from test_cells import write_cells_atlas

import cytoatlas
from cytoatlas import pl
from cytoatlas.errors import CytoatlasError

matplotlib.use("Agg")
ATLASES = {"alpha": (14, 1, ["B cells", "CD14 Monocytes", "CD4 T cells"], Planted("CD14 Monocytes", "CD4 T cells")),
           "beta": (12, 2, ["B", "CD4+ T", "Classical monocytes"], Planted("Classical monocytes", "CD4+ T"))}
CONTRAST = "treated vs untreated"


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """`cytoatlas compare` of two factory atlases (IL10 planted in treated monocytes, IL6 along bmi in CD4 T),
    its tables read back from the CSV files as a user reads them."""
    root = tmp_path_factory.mktemp("pl_results")
    for name, (n_donors, seed, cell_types, where) in ATLASES.items():
        write_atlas(root, name, n_donors, seed, cell_types, where)
    out = root / "compare"
    cytoatlas.compare(list(ATLASES), out, results=root, by="treatment", reference="untreated", continuous=["bmi"],
                      figures=False)
    return {name: pd.read_csv(out / f"{name}.csv", keep_default_na=False, na_values=[""])
            for name in ("differential", "association", "meta")}


def _ax() -> matplotlib.axes.Axes:
    return Figure(figsize=(5, 4)).subplots()


def _scatter(ax) -> PathCollection:
    collections = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert collections
    return collections[0]


def test_volcano_draws_every_row_and_colours_the_significant(compared) -> None:
    diff = compared["differential"]
    rows = diff[diff["atlas"] == "alpha"]
    ax = pl.volcano(diff, atlas="alpha", ax=_ax())
    dots = _scatter(ax)
    assert len(dots.get_offsets()) == len(rows)
    colours = [to_hex(c) for c in dots.get_facecolors()]
    n_sig = int((rows["fdr"] < 0.05).sum())
    assert n_sig >= 1  # the planted IL10 in monocytes
    assert sum(c != "#b8bec6" for c in colours) == n_sig
    # the y of each point is -log10 p of a row, the x its effect
    assert sorted(np.round(dots.get_offsets()[:, 1], 9)) == sorted(np.round(-np.log10(rows["pvalue"]), 9))
    labels = [t.get_text() for t in ax.texts]
    assert "IL10 (CD14 Monocytes)" in labels and len(labels) == min(n_sig, 8)
    assert ax.get_xlabel().startswith("mean activity z difference") and f"{n_sig:,} FDR" in ax.get_title()


def test_volcano_of_an_association_and_its_choices(compared) -> None:
    assoc = compared["association"]
    ax = pl.volcano(assoc, atlas="beta", level="L2", ax=_ax())
    assert len(_scatter(ax).get_offsets()) == int((assoc["atlas"] == "beta").sum())
    assert ax.get_xlabel() == "slope: activity z per unit of bmi"
    with pytest.raises(CytoatlasError, match=r"2 values of atlas \(alpha, beta\): choose one with atlas="):
        pl.volcano(assoc)
    with pytest.raises(CytoatlasError, match=r"atlas='gamma' is not in the comparison table; its values: alpha"):
        pl.volcano(assoc, atlas="gamma")
    with pytest.raises(CytoatlasError, match="not a comparison table"):
        pl.volcano(compared["meta"])


def test_volcano_makes_a_pyplot_figure_without_ax(compared) -> None:
    import matplotlib.pyplot as plt

    ax = pl.volcano(compared["differential"], atlas="beta")
    try:
        assert ax.figure in map(plt.figure, plt.get_fignums())
    finally:
        plt.close(ax.figure)


def test_effect_heatmap_shows_cell_types_by_signatures(compared) -> None:
    diff = compared["differential"]
    rows = diff[diff["atlas"] == "beta"]
    ax = pl.effect_heatmap(diff, atlas="beta", ax=_ax())
    image = next(a for a in ax.get_children() if isinstance(a, AxesImage))
    n_types, n_sigs = rows["cell_type"].nunique(), rows["signature"].nunique()
    assert image.get_array().shape == (n_types, n_sigs)
    vmax = float(rows["effect"].abs().max())
    assert image.get_clim() == pytest.approx((-vmax, vmax))
    assert [t.get_text() for t in ax.get_yticklabels()] == sorted(rows["cell_type"].unique())
    # the columns: signatures by their smallest FDR over cell types
    expected = rows.groupby("signature")["fdr"].min().sort_values(kind="stable").index.tolist()
    assert [t.get_text() for t in ax.get_xticklabels()] == expected
    assert len(_scatter(ax).get_offsets()) == int((rows["fdr"] < 0.05).sum())
    assert len(ax.figure.axes) == 2  # the colour bar
    ax = pl.effect_heatmap(diff, atlas="beta", max_signatures=2, ax=_ax())
    assert [t.get_text() for t in ax.get_xticklabels()] == expected[:2]


def test_forest_draws_each_atlas_and_the_pooled_diamond(compared) -> None:
    diff, meta = compared["differential"], compared["meta"]
    fine = meta[(meta["analysis"] == "differential") & (meta["resolution"] == "fine") & (meta["signature"] == "IL10")]
    assert len(fine) >= 2
    ax = pl.forest(diff, meta, "IL10", ax=_ax())
    diamonds = [p for p in ax.patches if isinstance(p, Polygon)]
    assert len(diamonds) == int(np.isfinite(fine[["effect", "ci_low", "ci_high"]]).all(axis=1).sum())
    # each diamond spans its meta row's CI, at the row's effect
    spans = sorted((round(p.get_xy()[:, 0].min(), 9), round(p.get_xy()[:, 0].max(), 9)) for p in diamonds)
    assert spans == sorted(zip(fine["ci_low"].round(9), fine["ci_high"].round(9), strict=True))
    labels = [t.get_text() for t in ax.get_yticklabels()]
    # one row per atlas part of each meta row (each atlas pools one label per unit here)
    n_atlas_rows = sum(len(labels_.split("; ")) for labels_ in fine["labels"])
    assert len(labels) == len(fine) + n_atlas_rows
    assert sum(" · pooled" in t for t in labels) == len(fine)
    # a label holding "+" is drawn as one label (the meta row joins an atlas' labels with "+")
    assert "CD4-positive, alpha-beta T cell · beta (CD4+ T)" in labels
    assert ax.get_title().startswith("IL10 (cytosig) · L2: treated vs untreated")
    with pytest.raises(CytoatlasError, match="signature='NOPE' is not in the meta table"):
        pl.forest(diff, meta, "NOPE")


def test_embedding_from_the_cells_table_and_from_an_anndata(tmp_path: Path) -> None:
    h5ad, _ = write_cells_atlas(tmp_path / "tiny.h5ad", n_cells=800, sets=("cytosig",))
    cytoatlas.cells(tiny_config(h5ad, "tiny"), tmp_path / "tiny", signatures=["cytosig"])
    table = pd.read_csv(tmp_path / "tiny" / "cells" / "tiny_cells_cytosig_embedding.csv")
    ax = pl.embedding(table, "IL6", ax=_ax())
    dots = _scatter(ax)
    z = table["z:IL6"].to_numpy()
    assert len(dots.get_offsets()) == len(table)
    vmax = float(np.percentile(np.abs(z[np.isfinite(z)]), 99))
    assert dots.get_clim() == pytest.approx((-vmax, vmax))
    assert sorted(dots.get_array()) == pytest.approx(sorted(z))
    assert ax.get_title() == "IL6" and len(ax.figure.axes) == 2

    # the same cells as an AnnData: per-cell activity as variables, coordinates in obsm
    adata = ad.AnnData(table[[c for c in table.columns if c.startswith("z:")]].to_numpy(),
                       var=pd.DataFrame(index=[c[2:] for c in table.columns if c.startswith("z:")]))
    adata.obsm["X_umap"] = table[["x", "y"]].to_numpy()
    again = _scatter(pl.embedding(adata, "IL6", ax=_ax()))
    assert np.array_equal(again.get_offsets(), dots.get_offsets()) and again.get_clim() == dots.get_clim()
    # or as a frame of scores in obsm (as decoupler writes them)
    plain = ad.AnnData(np.zeros((len(table), 1)))
    plain.obsm["X_umap"] = adata.obsm["X_umap"]
    plain.obsm["scores"] = pd.DataFrame(adata.X, columns=adata.var_names, index=plain.obs_names)
    third = _scatter(pl.embedding(plain, "IL6", scores="scores", ax=_ax()))
    assert np.array_equal(third.get_array(), dots.get_array())
    with pytest.raises(CytoatlasError, match="obsm has no 'X_tsne'"):
        pl.embedding(adata, "IL6", basis="X_tsne")
    with pytest.raises(CytoatlasError, match="the embedding table has no column z:NOPE"):
        pl.embedding(table, "NOPE")


def test_own_gene_scatter_from_the_pseudobulk_and_activity_files(demo_pair) -> None:
    root = demo_pair["results"]["demo"]
    pb = ad.read_h5ad(root / "pseudobulk" / "demo_pseudobulk_l2_samples.h5ad")
    act = ad.read_h5ad(root / "activity" / "demo_pseudobulk_l2_samples_cytosig_activity.h5ad")
    cell_type = str(act.obs["cell_type"].iloc[0])
    rows = (act.obs["cell_type"].astype(str) == cell_type).to_numpy()
    ax = pl.own_gene_scatter(pb, act, "TNFA", cell_type=cell_type, ax=_ax())
    dots = _scatter(ax)
    symbols = list(pb.var["gene_symbol"].astype(str))
    x = np.asarray(pb[act.obs_names[rows]].X)[:, symbols.index("TNF")]  # TNFA's gene, from the shipped table
    y = act.X[rows, list(act.var_names).index("TNFA")]
    assert np.allclose(dots.get_offsets(), np.column_stack([x, y]))
    rho = pd.Series(x).corr(pd.Series(y), method="spearman")
    assert f"rho = {rho:.2f}, n = {rows.sum()}" in ax.get_title() and ax.get_xlabel() == "TNF log1p CPM"
    every = pl.own_gene_scatter(pb, act, "TNFA", ax=_ax())
    assert len(_scatter(every).get_offsets()) == act.n_obs
    with pytest.raises(CytoatlasError, match="cell_type='nope' is not in obs"):
        pl.own_gene_scatter(pb, act, "TNFA", cell_type="nope")
    with pytest.raises(CytoatlasError, match="'NOPE' is not a signature"):
        pl.own_gene_scatter(pb, act, "NOPE")


def test_pl_is_a_module_the_package_loads_on_use() -> None:
    import subprocess
    import sys

    code = ("import sys, cytoatlas; assert 'cytoatlas.pl' not in sys.modules; "
            "assert callable(cytoatlas.pl.volcano); assert 'pl' in dir(cytoatlas)")
    subprocess.run([sys.executable, "-c", code], check=True)
