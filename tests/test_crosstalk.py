"""Cross-talk columns: the correlated signatures beside each row, against the signature matrix's own correlations
(numpy over the genes the activity run used), and "also significant" within one cell type and contrast."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cytoatlas._activity.signatures import load_signatures
from cytoatlas._compare.crosstalk import annotate, cached_correlations, file_correlations
from cytoatlas.io.writer import ColumnWriter

NAMES = ["IFNG", "IL27", "IFN1", "IL10", "TGFB1", "IL1B", "TNFA"]


@pytest.fixture(scope="module")
def activity_file(tmp_path_factory):
    """An activity file of seven CytoSig signatures whose run used every other CytoSig gene."""
    sig = load_signatures("cytosig")
    genes_used = sig.genes[::2].astype(str)
    path = tmp_path_factory.mktemp("xt") / "a_pseudobulk_l1_samples_cytosig_activity.h5ad"
    obs = pd.DataFrame({"cell_type": ["T"]}, index=pd.Index(["s|T"], dtype=object))
    var = pd.DataFrame({"group": NAMES}, index=pd.Index(NAMES, dtype=object))
    uns = {"signature": {"name": "cytosig", "source": sig.source}, "genes_used": genes_used,
           "pseudobulk": {"atlas": "a", "level": "L1", "kind": "samples"}}
    w = ColumnWriter(path, obs, var, uns, {"X": np.dtype(np.float64)})
    w.write(slice(0, len(NAMES)), {"X": np.zeros((1, len(NAMES)))})
    w.commit()
    rows = [list(sig.genes).index(g) for g in genes_used]
    cols = [list(sig.signatures).index(s) for s in NAMES]
    return path, np.corrcoef(sig.matrix[np.ix_(rows, cols)].T)


def test_correlations_are_the_signature_columns_over_the_genes_used(activity_file) -> None:
    path, reference = activity_file
    corr = file_correlations(path)
    assert list(corr.names) == NAMES
    np.testing.assert_allclose(corr.r, reference, atol=1e-12)
    partners = dict(zip(NAMES, corr.partners(0.5), strict=True))
    expected = sorted(((NAMES[j], reference[0, j]) for j in range(1, len(NAMES)) if reference[0, j] >= 0.5),
                      key=lambda p: -p[1])
    assert [s for s, _ in partners["IFNG"]] == [s for s, _ in expected]
    assert {"IL27", "IFN1"} <= {s for s, _ in partners["IFNG"]}  # the interferon family shares its genes


def test_annotate_lists_correlated_signatures_and_those_also_significant(activity_file) -> None:
    path, reference = activity_file
    fdr = {"IFNG": 0.001, "IL27": 0.01, "IFN1": 0.2, "IL10": 0.5, "TGFB1": 0.9, "IL1B": 0.03, "TNFA": 0.6}
    rows = [{"atlas": "a", "level": "L1", "signature_set": "cytosig", "cell_type": ct, "contrast": "t vs u",
             "signature": s, "fdr": fdr[s] if ct == "Mono" else 0.9} for ct in ("Mono", "B") for s in NAMES]
    df = annotate(pd.DataFrame(rows), cached_correlations({("a", "L1", "cytosig"): path}),
                  ["atlas", "level", "signature_set"], ["atlas", "level", "signature_set", "cell_type", "contrast"])
    got = df.set_index(["cell_type", "signature"])
    r = pd.DataFrame(reference, index=NAMES, columns=NAMES)
    ifng = got.loc[("Mono", "IFNG")]
    assert ifng["also_significant"] == f"IL27 (r {r.loc['IFNG', 'IL27']:.2f})"  # IFN1 correlates, not significant
    assert ifng["n_correlated_significant"] == 1
    assert f"IFN1 (r {r.loc['IFNG', 'IFN1']:.2f})" in ifng["correlated"]
    # significance is per cell type: in B nothing is significant, the correlated list is the same
    assert got.loc[("B", "IFNG"), "also_significant"] == "" and got.loc[("B", "IFNG"), "correlated"] == \
        ifng["correlated"]
    # a row is never its own partner, and every listed r is at least the threshold
    for s in NAMES:
        listed = got.loc[("Mono", s), "correlated"]
        assert f"{s} (" not in listed
        for part in filter(None, listed.split(", ")):
            name, value = part.split(" (r ")
            assert float(value.rstrip(")")) == pytest.approx(r.loc[s, name], abs=0.005) and r.loc[s, name] >= 0.5


def test_a_set_that_cannot_be_loaded_leaves_the_columns_empty(tmp_path) -> None:
    df = pd.DataFrame([{"atlas": "a", "level": "L1", "signature_set": "x", "cell_type": "T", "signature": "IFNG",
                        "fdr": 0.01}])
    out = annotate(df, lambda key: None, ["atlas", "level", "signature_set"], ["cell_type"])
    assert (out["correlated"] == "").all() and (out["n_correlated_significant"] == 0).all()
