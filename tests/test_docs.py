"""The documentation site builds warning-free (warnings are errors, as CI builds it), with the tutorial notebook
executed end to end and the API reference generated from the docstrings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cytoatlas._version import __version__

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_docs_build_without_warnings_and_run_the_tutorial(tmp_path: Path) -> None:
    out = tmp_path / "html"
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    # Sphinx's own warnings ("FILE:LINE: WARNING: ..."; the notebook kernel's log lines are not Sphinx's)
    assert not re.findall(r": (?:WARNING|ERROR|CRITICAL):", done.stderr), done.stderr[-6000:]
    # the tutorial ran: the output of its cells is in the page, with one figure per plotting cell
    tutorial = (out / "tutorial.html").read_text()
    assert "demo_pseudobulk_l2_samples_cytosig_activity.h5ad" in tutorial
    assert len(re.findall(r"<img [^>]*src=\"_images/", tutorial)) == 5
    assert "Traceback" not in tutorial
    # its in-memory section printed how far the in-memory pseudobulk and activity are from the files
    found = re.search(r"largest difference from the files: (\S+) \(pseudobulk\), (\S+) \(activity z\)", tutorial)
    assert found, "the tutorial's in-memory cell printed nothing"
    assert float(found[1]) == 0.0
    assert float(found[2]) <= 1e-12
    # every public plot and step has its page, from its docstring (napoleon's sections rendered)
    for name in ("pl.volcano", "pl.effect_heatmap", "pl.forest", "pl.embedding", "pl.own_gene_scatter",
                 "pseudobulk", "activity", "compare", "validate", "pp.pseudobulk", "tl.activity", "tl.cell_activity",
                 "tl.compare", "tl.validate"):
        page = out / "generated" / f"cytoatlas.{name}.html"
        assert page.is_file(), page
        assert "Parameters" in page.read_text()
    # one version: the package's
    assert f"cytoatlas {__version__}" in (out / "index.html").read_text()
    # the changelog and the output contract are pages
    assert "Keep a Changelog" in (out / "changelog.html").read_text()
    assert "fdr_cell_type" in (out / "outputs.html").read_text()
