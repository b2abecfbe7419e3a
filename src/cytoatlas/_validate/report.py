"""`cytoatlas report`: one self-contained HTML file from a validation directory.

Figures are embedded (PNG as base64), tables are sortable and filterable by a few lines of inline JavaScript, and
nothing is fetched from the network, so the file can be mailed and opened anywhere.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import write_text_atomic
from cytoatlas.io.layout import CELLS_FIGURE_KIND, VALIDATION_FIGURES_DIR, manifest_key, table_paths
from cytoatlas.io.manifest import read_manifest, record, recorded_checksum, update_manifest

log = logging.getLogger("cytoatlas.validate")
REPORT_NAME = "report.html"

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#23395d;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.85;font-size:13px}
nav{background:#fff;border-bottom:1px solid #dde2e8;padding:8px 32px;font-size:13px;position:sticky;top:0;z-index:2}
nav a{margin-right:14px;color:#23395d;text-decoration:none}main{padding:8px 32px 40px;max-width:1500px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;margin:18px 0;padding:14px 20px}
h2{font-size:18px;margin:4px 0 10px;color:#23395d}h3{font-size:15px;margin:14px 0 6px}
p.note{font-size:13px;color:#4a5766;margin:4px 0 10px;max-width:1100px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0}
.card{border:1px solid #dde2e8;border-radius:6px;padding:10px 14px;min-width:150px;background:#fafbfc}
.card b{display:block;font-size:22px;color:#23395d}.card span{font-size:12px;color:#4a5766}
figure{margin:10px 0 18px}figure img{max-width:100%;border:1px solid #eef0f3}
figcaption{font-size:12.5px;color:#4a5766;margin-top:4px}
.tablewrap{max-height:460px;overflow:auto;border:1px solid #dde2e8;border-radius:4px}
table{border-collapse:collapse;font-size:12.5px;width:100%}
th{position:sticky;top:0;background:#e9edf2;cursor:pointer;text-align:left;padding:5px 8px;white-space:nowrap;
user-select:none}th:after{content:' \\2195';opacity:.35}th.asc:after{content:' \\25B2';opacity:.8}
th.desc:after{content:' \\25BC';opacity:.8}td{padding:4px 8px;border-top:1px solid #eef0f3;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.bad td{color:#8a5a00;background:#fff8e6}
input.filter{margin:6px 0;padding:5px 8px;width:320px;border:1px solid #c6ced8;border-radius:4px;font-size:13px}
.pill{display:inline-block;padding:1px 7px;border-radius:9px;font-size:11.5px}
.conserved{background:#d7f0dc;color:#17612a}.moderate{background:#fff1c9;color:#7a5800}
.not{background:#f0f1f3;color:#59636e}
"""

_JS = """
function cellValue(td){const v=td.getAttribute('data-v');if(v!==null&&v!==''){const n=parseFloat(v);
if(!isNaN(n))return n;}return td.textContent.trim().toLowerCase();}
document.querySelectorAll('table.sortable').forEach(function(table){
 table.querySelectorAll('th').forEach(function(th,col){th.addEventListener('click',function(){
  const body=table.tBodies[0];const rows=Array.from(body.rows);const asc=!th.classList.contains('asc');
  table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
  th.classList.add(asc?'asc':'desc');
  rows.sort(function(a,b){const x=cellValue(a.cells[col]),y=cellValue(b.cells[col]);
   const nx=(typeof x==='number'),ny=(typeof y==='number');
   if(nx&&ny)return asc?x-y:y-x; if(nx)return -1; if(ny)return 1;
   return asc?String(x).localeCompare(String(y)):String(y).localeCompare(String(x));});
  rows.forEach(function(r){body.appendChild(r);});});});});
document.querySelectorAll('input.filter').forEach(function(inp){inp.addEventListener('input',function(){
 const q=inp.value.toLowerCase();const t=document.getElementById(inp.getAttribute('data-table'));
 Array.from(t.tBodies[0].rows).forEach(function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});
});});
"""


def _fmt(v) -> tuple[str, str, bool]:
    """(display text, sort value, numeric?) of a cell."""
    if isinstance(v, (bool, np.bool_)):
        return ("yes" if v else "no"), ("1" if v else "0"), False
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}", str(int(v)), True
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return "", "", True
        a = abs(v)
        text = f"{v:.2e}" if (a != 0 and (a < 1e-3 or a >= 1e5)) else f"{v:.3f}"
        return text, repr(float(v)), True
    return ("" if v is None else str(v)), "", False


def html_table(df: pd.DataFrame, table_id: str, max_rows: int, bad: str | None = "reason",
               pills: str | None = None) -> str:
    """A sortable, filterable table of ``df``'s first ``max_rows`` rows (rows with a ``bad`` text highlighted)."""
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for rec in shown.itertuples(index=False):
        cells = []
        for col, v in zip(shown.columns, rec, strict=True):
            text, sort, num = _fmt(v)
            content = html.escape(text)
            if pills and col == pills and text:
                content = f'<span class="pill {html.escape(text.split()[0])}">{content}</span>'
            attrs = (" class=num" if num else "") + (f' data-v="{sort}"' if sort else "")
            cells.append(f"<td{attrs}>{content}</td>")
        row_bad = bad is not None and bad in shown.columns and str(getattr(rec, bad) or "") not in ("", "nan")
        body.append(f"<tr{' class=bad' if row_bad else ''}>{''.join(cells)}</tr>")
    more = (f'<p class="note">Showing {len(shown):,} of {len(df):,} rows; all of them are in the CSV and Parquet '
            f'files beside this report.</p>') if len(df) > len(shown) else ""
    return (f'<input class="filter" data-table="{table_id}" placeholder="filter rows...">'
            f'<div class="tablewrap"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>{more}')


def html_figure(path: Path, title: str, caption: str, svg_dir: str = "figures/") -> str:
    """A figure's PNG embedded (base64), with its title, caption and where its SVG is (``svg_dir``)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
            f'<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)} '
            f'(SVG: {html.escape(svg_dir)}{html.escape(path.with_suffix(".svg").name)})</figcaption></figure>')


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


def html_cards(items: list[tuple[str, str]]) -> str:
    """A row of cards, each a big value over its label."""
    return '<div class="cards">' + "".join(f'<div class="card"><b>{html.escape(v)}</b><span>{html.escape(k)}'
                                           f"</span></div>" for k, v in items) + "</div>"


def report(out: str | os.PathLike, *, title: str | None = None, max_rows: int = 3000,
           compare: str | os.PathLike | None = None, cells: Sequence[str | os.PathLike] = ()) -> Path:
    """Write ``out/report.html``: a self-contained HTML report of the validation in ``out``.

    Parameters
    ----------
    out
        A directory written by :func:`cytoatlas.validate`.
    title
        Page title (default: "cytoatlas validation: ATLAS, ...").
    max_rows
        Rows shown per table (the CSV and Parquet files hold all of them).
    compare
        A directory written by :func:`cytoatlas.compare`: the report gains a "Condition comparisons" section (its
        tables' strongest rows per contrast, what was not testable, its figures). None: no such section, and the
        report is what it was before comparisons existed.
    cells
        Atlases' results directories whose ``cells/`` holds `cytoatlas cells` outputs: the report gains a
        "Per-cell activity" section (per atlas x signature set, the embedding subsample coloured by the z of the
        signatures that vary most over it, written to ``out/figures/cells_embedding__*.png|svg``; per level the
        summary's rows of highest mean z). Empty: no such section, and the page is what it was without it.

    Returns
    -------
    Path
        The report file.
    """
    out = Path(out)
    if not out.is_dir():
        raise CytoatlasError(f"validation directory {out} does not exist; run `cytoatlas validate --out {out}` first")
    cells = [cells] if isinstance(cells, (str, os.PathLike)) else list(cells)  # one directory, not its characters
    t0 = time.perf_counter()
    t = {name: _read(out, name) for name in ("summary", "rho", "rho_cell_types", "cytosig_vs_secact", "cross_atlas",
                                             "conservation", "consistency", "cell_type_matches")}
    entries = read_manifest(out)
    figures = {k: e for k, e in entries.items() if e.get("kind") == "figure" and k.endswith(".png")
               and (out / k).is_file()}
    params = next((e.get("parameters", {}) for e in entries.values() if e.get("kind") == "table"), {})
    atlases = params.get("atlases") or sorted(set(t["summary"]["atlas"]))
    title = title or f"cytoatlas validation: {', '.join(atlases)}"

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
    if compare is not None:  # imported here: the comparison step comes after validation and uses its helpers
        from cytoatlas._compare.report import comparison_inputs, comparison_section

        sections.append(("compare", "Condition comparisons", comparison_section(compare, max_rows=max_rows)))
    cells_part = None
    if cells:  # imported here: per-cell activity is its own step, read only when asked for
        from cytoatlas._cells.report import cells_section

        cells_part = cells_section(cells, out / VALIDATION_FIGURES_DIR, max_rows=max_rows)
        sections.append(("cells", "Per-cell activity", cells_part.html))
    nav = "".join(f'<a href="#{sid}">{html.escape(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{html.escape(name)}</h2>{content}</section>'
                   for sid, name, content in sections)
    when = time.strftime("%Y-%m-%d %H:%M")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>Written {when} by "
            f"cytoatlas from {html.escape(str(out.resolve()))}; parameters: "
            f"{html.escape(json.dumps({k: params.get(k) for k in ('min_samples', 'min_cell_types', 'n_bootstrap')}))}"
            f"</p></header><nav>{nav}</nav><main>{body}</main><script>{_JS}</script></body></html>")
    path = out / REPORT_NAME
    write_text_atomic(path, page)
    inputs = [{"name": k, "checksum": recorded_checksum(e)} for k, e in sorted(entries.items())
              if e.get("kind") in ("table", "figure")]
    parameters = {"title": title, "max_rows": max_rows}
    if compare is not None:
        parameters["compare"] = str(compare)
        inputs += comparison_inputs(compare)
    records = {}
    if cells_part is not None:
        parameters["cells"] = [str(c) for c in cells]
        inputs += cells_part.inputs
        for fig in cells_part.figures:
            for p in fig.paths:
                records[manifest_key(p, out)] = record(
                    p, step="report", parameters={"signatures": fig.signatures},
                    inputs=fig.outputs.inputs(["embedding"]), kind=CELLS_FIGURE_KIND, atlas=fig.outputs.atlas,
                    signature=fig.outputs.signature_set)
    # per-cell figures of an earlier report that this one does not show are removed with their records
    stale = [k for k, e in entries.items() if e.get("step") == "report" and e.get("kind") == CELLS_FIGURE_KIND
             and k not in records]
    for k in stale:
        (out / k).unlink(missing_ok=True)
    records[REPORT_NAME] = record(path, step="report", parameters=parameters, inputs=inputs, kind="report")
    update_manifest(out, records, remove=stale)
    log.info("report %s (%.1f MB, %d figures) in %.1f s", path, path.stat().st_size / 1e6, len(figures),
             time.perf_counter() - t0)
    return path
