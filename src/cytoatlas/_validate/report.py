"""The validation sections of `cytoatlas report` (see :mod:`cytoatlas._report`), from a validation directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.html import html_cards, html_figure, html_table
from cytoatlas.io.layout import table_paths
from cytoatlas.io.manifest import read_manifest


@dataclass
class ValidationSections:
    """The validation's sections as ``(id, title, HTML)``, the validation's parameters and atlases, and the
    number of figures shown."""

    sections: list[tuple[str, str, str]]
    parameters: dict
    atlases: list[str]
    n_figures: int


def _read(directory: Path, name: str) -> pd.DataFrame:
    path = table_paths(directory, name)[0]
    if not path.is_file():
        raise CytoatlasError(f"{directory} has no {name}.csv: run `cytoatlas validate --out {directory}` first")
    df = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for col in ("reason", "cl_id", "cl_name", "source", "context", "candidates", "cell_types", "rhos", "gene",
                "stratum", "resolution"):
        if col in df:
            df[col] = df[col].fillna("").astype(str)
    return df


def validation_sections(out: Path, max_rows: int) -> ValidationSections:
    """The report's sections made from the validation directory ``out`` (its tables, figures and manifest).

    Raises
    ------
    CytoatlasError
        A table is missing (the directory was not written by `cytoatlas validate`).
    """
    t = {name: _read(out, name) for name in ("summary", "rho", "rho_cell_types", "cytosig_vs_secact", "cross_atlas",
                                             "conservation", "consistency", "cell_type_matches")}
    entries = read_manifest(out)
    figures = {k: e for k, e in entries.items() if e.get("kind") == "figure" and k.endswith(".png")
               and (out / k).is_file()}
    params = next((e.get("parameters", {}) for e in entries.values() if e.get("kind") == "table"), {})
    atlases = params.get("atlases") or sorted(set(t["summary"]["atlas"]))

    def figs(prefix: str) -> str:
        return "".join(html_figure(out / k, e.get("title", k), e.get("caption", "")) for k, e in sorted(figures.items())
                       if Path(k).name.startswith(prefix))

    rho, summ, cons = t["rho"], t["summary"], t["conservation"]
    rep = rho[rho["representative"].astype(str).str.lower() == "true"]
    matches = t["cell_type_matches"]
    unmatched = matches[matches["source"] == "none"]
    computed = cons[cons["reason"] == ""]
    cards = html_cards([("atlases", str(len(atlases))), ("correlations computed", f"{(rho['reason'] == '').sum():,}"),
                         ("targets with a representative rho", f"{len(rep):,}"),
                         ("median representative rho", f"{rep['rho'].median():.3f}" if len(rep) else "-"),
                         ("signatures conserved",
                          f"{(computed['conservation'] == 'conserved').sum():,} of {len(computed):,}"),
                         ("cell type labels unmatched", f"{len(unmatched):,} of {len(matches):,}")])
    rep_cols = ["atlas", "level", "signature_set", "target", "gene", "stratum", "n_samples", "rho", "pvalue", "fdr",
                "rho_ci_low", "rho_ci_high", "n_strata", "median_rho"]
    not_done = rho[rho["reason"] != ""].groupby(["atlas", "level", "signature_set", "reason"]).size() \
        .rename("rows").reset_index()
    cons_sorted = cons.assign(_o=cons["conservation"].map({"conserved": 0, "moderate": 1, "not conserved": 2})) \
        .sort_values(["_o", "median_r"], ascending=[True, False]).drop(columns="_o")
    sections = [
        ("overview", "Overview", cards + """<p class="note">Does predicted activity mean something? Within each atlas,
a target's activity should track the expression of the target's own gene across donors (Spearman rho per stratum of
samples: one cell type, or all cells of a donor for levels without cell types). Each target has one
<i>representative</i> rho per level: the median stratum, so a donor's repeated measures across cell types never
inflate it. Across atlases, the same cell type should show the same activity: per signature, the correlation (r)
of mean activity over the cell types the atlases share.</p>"""),
        ("summary", "Summary per atlas, level and signature set",
         '<p class="note">Over each target\'s representative rho: median, % positive, and how many have p &lt; 0.05 '
         "and |rho| &gt; 0.3 (n_significant; with BH-FDR &lt; 0.05: n_significant_fdr).</p>"
         + html_table(summ, "t_summary", max_rows) + figs("rho_distribution")),
        ("versus", "CytoSig vs SecAct on shared targets",
         '<p class="note">Targets in both sets (a CytoSig cytokine whose gene is a SecAct protein), their '
         "representative rhos paired; Wilcoxon signed-rank test of the differences.</p>"
         + html_table(t["cytosig_vs_secact"], "t_versus", max_rows)),
        ("targets", "Targets", figs("top_targets") + figs("scatter")
         + "<h3>Representative rho of every target</h3>" + html_table(rep[rep_cols], "t_rep", max_rows, bad=None)),
        ("celltypes", "Across cell types (bootstrap from the resampled files)",
         '<p class="note">Rho over a level\'s cell-type pseudobulks; its 95% interval spans the rhos of the donor '
         "bootstraps in the <code>_resampled</code> files.</p>"
         + html_table(t["rho_cell_types"][t["rho_cell_types"]["reason"] == ""], "t_ct", max_rows, bad=None)),
        ("cross", "Across atlases",
         '<p class="note">Per signature and compared level of an atlas pair: Pearson r of mean activity over the '
         "cell types both atlases hold (at least 3), matched through the Cell Ontology at two resolutions: "
         "<i>fine</i>, each label at the finest CL term the other atlas also holds (labels meeting at one term "
         "averaged), and <i>lineage</i>, a fixed set of lineage terms. Conserved: r &gt; 0.7 in at least two pairs "
         "(or the only one) of a resolution; moderate: r &gt; 0.5 as often.</p>"
         + html_table(cons_sorted, "t_cons", max_rows, pills="conservation")
         + figs("agreement") + figs("heatmap") + "<h3>Every comparison</h3>"
         + html_table(t["cross_atlas"], "t_cross", max_rows)),
        ("consistency", "Consistency across atlases",
         '<p class="note">Per target, the atlases whose representative rho exceeds 0.1: in all, most (more than '
         "half) or few of them.</p>" + html_table(t["consistency"], "t_consistency", max_rows)),
        ("matching", "Cell-type matching",
         f'<p class="note">Each label\'s Cell Ontology term and how it was found (column: the atlas\' own CL IDs; '
         "registry; name; synonym; rule: composed from the label's words). "
         f"{len(unmatched):,} label(s) match no CL term and take no part in the cross-atlas comparison; map them "
         "in the atlas' registry entry (<code>[atlas.NAME.harmonise] \"label\" = \"CL:0000236\"</code>, a CL "
         "name, or a shared name of your own); their closest CL terms are listed.</p>"
         + html_table(matches.assign(reason=np.where(matches["source"] == "none", "unmatched", "")),
                      "t_match", max_rows)),
        ("notcomputed", "Not computed",
         '<p class="note">Correlations that could not be computed, and why.</p>'
         + html_table(not_done, "t_nd", max_rows, bad=None)),
    ]
    return ValidationSections(sections, params, list(atlases), len(figures))
