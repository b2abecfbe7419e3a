"""The "Perturbation ground truth" section of `cytoatlas report`, from a directory written by `cytoatlas groundtruth`.

The summary per atlas x level x signature set, the treatments (AUCs, ranks), the strongest treatment x cell type
rows with their cross-talk, the treatment names no signature matched, and the figures.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from cytoatlas._groundtruth.figures import FIGURES_DIR, plan_figures
from cytoatlas._groundtruth.tables import TABLES
from cytoatlas._validate.report import html_cards, html_figure, html_table
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.layout import table_paths
from cytoatlas.io.manifest import read_manifest, recorded_checksum
from cytoatlas.io.tables import read_parquet

_SHOWN = {
    "treatments": ["atlas", "level", "signature_set", "treatment", "signature", "n_donors", "n_units", "auc_control",
                   "auc_other", "rank_effect", "rank_statistic", "effect", "pvalue", "frac_donors_rank1",
                   "frac_cell_types_rank1", "consistency", "reason"],
    "effects": ["atlas", "level", "signature_set", "treatment", "signature", "cell_type", "n_donors", "effect",
                "ci_low", "ci_high", "pvalue", "rank_effect", "rank_statistic", "frac_donors_rank1", "top_signature",
                "also"],
}


def read_groundtruth(directory: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The four ground-truth tables of ``directory`` (from their Parquet files)."""
    directory = Path(directory)
    tables = {}
    for name in TABLES:
        path = table_paths(directory, name)[1]
        if not path.is_file():
            raise CytoatlasError(f"{directory} has no {path.name}: run `cytoatlas groundtruth --out {directory}` "
                                 "first")
        tables[name] = read_parquet(path)
    return tables


def groundtruth_inputs(directory: str | os.PathLike) -> list[dict]:
    """The ground truth's tables and figures as inputs of the report's manifest record (name and checksum)."""
    directory = Path(directory)
    return [{"name": (directory / k).as_posix(), "checksum": recorded_checksum(e)}
            for k, e in sorted(read_manifest(directory).items()) if e.get("kind") in ("table", "figure")]


def groundtruth_section(directory: str | os.PathLike, *, max_rows: int = 3000) -> str:
    """The HTML of the report's "Perturbation ground truth" section (without its ``<section>`` and heading)."""
    directory = Path(directory)
    t = read_groundtruth(directory)
    summary, treatments, effects, matches = t["summary"], t["treatments"], t["effects"], t["matches"]
    tested = treatments[treatments["reason"] == ""]
    unmatched = matches[matches["signature"] == ""]
    rank = tested["rank_effect"]
    cards = html_cards([
        ("treatments", f"{matches['treatment'].nunique():,}"),
        ("matched to a signature", f"{matches.loc[matches['signature'] != '', 'treatment'].nunique():,}"),
        ("treatment x set tested", f"{len(tested):,}"),
        ("median AUC vs control", f"{tested['auc_control'].median():.3f}" if len(tested) else "-"),
        ("own signature ranked first", f"{int((rank == 1).sum()):,} of {len(tested):,}"),
        ("unmatched names", f"{unmatched['treatment'].nunique():,}")])
    intro = (f'<p class="note">Does a signature light up when its cytokine is given (from '
             f"{html.escape(directory.as_posix())})? Each treatment is matched to its own signature through the "
             "shipped alias table (spellings, gene symbols) and the registry's treatment_aliases. The unit is the "
             "donor: per donor and cell type, the treated samples' mean activity minus the same donor's control. "
             "Rank: the own signature's place among all signatures of the set by the mean paired difference "
             "(rank_effect) and by the paired t (rank_statistic), 1 the best; row <i>all</i>: each donor's "
             "differences averaged over its cell types. AUC vs control: the own signature separating treated from "
             "control samples, each donor x cell type's own level removed; vs other treatments: its differences "
             "under this treatment against those under the others. Consistency: the mean Spearman rho between "
             "donors' effect profiles. <i>also</i>: signatures whose gene-response columns correlate with the own "
             "one (r &ge; the threshold, over the genes used) and that are significant too (FDR &lt; 0.05).</p>")
    shown_effects = effects.assign(also=effects["also_significant"]).sort_values(
        ["rank_effect", "pvalue"], kind="stable")
    shown_effects = shown_effects[shown_effects["reason"] == ""]
    figs = "".join(html_figure(directory / FIGURES_DIR / f"{p.stem}.png", p.title, p.caption,
                               f"{(directory / FIGURES_DIR).as_posix()}/")
                   for p in plan_figures(effects, treatments) if (directory / FIGURES_DIR / f"{p.stem}.png").is_file())
    return (intro + cards + "<h3>Per atlas, level and signature set</h3>"
            + html_table(summary, "t_gt_summary", max_rows, bad=None) + figs + "<h3>Per treatment</h3>"
            + html_table(treatments[[c for c in _SHOWN["treatments"] if c in treatments]], "t_gt_treatments", max_rows)
            + "<h3>Per treatment and cell type</h3>"
            + html_table(shown_effects[_SHOWN["effects"]], "t_gt_effects", max_rows, bad=None)
            + f"<h3>Treatment names matched to no signature ({len(unmatched):,})</h3>"
            + html_table(unmatched[["atlas", "level", "signature_set", "treatment", "n_donors", "reason"]],
                         "t_gt_unmatched", max_rows))
