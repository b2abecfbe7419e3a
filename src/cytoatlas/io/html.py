"""The HTML pieces every report section is made of: sortable and filterable tables, embedded figures, cards, and
the page's style and script (inline: the report is one self-contained file, nothing fetched from the network)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import pandas as pd

CSS = """
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

JS = """
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


def html_cards(items: list[tuple[str, str]]) -> str:
    """A row of cards, each a big value over its label."""
    return '<div class="cards">' + "".join(f'<div class="card"><b>{html.escape(v)}</b><span>{html.escape(k)}'
                                           f"</span></div>" for k, v in items) + "</div>"
