"""The report page, put together in one place: the validation's sections, then every registered section whose
source was given; written atomically with its manifest record (step ``report``) and the figures sections drew."""

from __future__ import annotations

import html
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cytoatlas._harness import StepDirectory
from cytoatlas._harness.steps import REPORT
from cytoatlas._report.inputs import verify_step_directory
from cytoatlas._validate.report import validation_sections
from cytoatlas._validate.run import TABLES as VALIDATION_TABLES
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import write_text_atomic
from cytoatlas.io.html import CSS, JS
from cytoatlas.io.layout import VALIDATION_FIGURES_DIR, table_paths
from cytoatlas.options import check_count

log = logging.getLogger("cytoatlas.validate")
REPORT_NAME = "report.html"


@dataclass
class SectionFigure:
    """A figure file a section wrote into the report directory, recorded there (step ``report``)."""

    path: Path
    parameters: dict
    inputs: list[dict]
    extra: dict = field(default_factory=dict)


@dataclass
class Section:
    """What a step contributes to the page.

    Attributes
    ----------
    id, title
        The section's anchor and heading.
    html
        Its content (without the ``<section>`` element and heading).
    inputs
        The files it read (name and checksum), added to the report's record.
    parameters
        What it adds to the report's recorded parameters (e.g. the directory it was made from).
    figures
        Figure files it wrote into the report directory.
    """

    id: str
    title: str
    html: str
    inputs: list[dict] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    figures: list[SectionFigure] = field(default_factory=list)


@dataclass(frozen=True)
class _Context:
    out: Path
    max_rows: int


#: section name -> its function ``(source, out, max_rows) -> Section``, in page order
SECTIONS: dict[str, Callable[[Any, Path, int], Section]] = {}


def register_section(name: str) -> Callable:
    """Register a section function under ``name`` (the keyword of :func:`report` that gives its source).

    The function takes ``(source, out, max_rows)`` (``out``: the report directory) and returns a
    :class:`Section`; sections appear in registration order after the validation's.
    """
    def add(fn: Callable[[Any, Path, int], Section]) -> Callable[[Any, Path, int], Section]:
        SECTIONS[name] = fn
        return fn

    return add


def _given(source: Any) -> bool:
    """A section is shown when its source is given: not ``None``, not an empty list."""
    return source is not None and not (isinstance(source, (list, tuple)) and not source)


def report(out: str | os.PathLike, *, title: str | None = None, max_rows: int = 3000, **sources: Any) -> Path:
    """Write ``out/report.html``: a self-contained HTML report of the validation in ``out``.

    Parameters
    ----------
    out
        A directory written by :func:`cytoatlas.validate`.
    title
        Page title (default: "cytoatlas validation: ATLAS, ...").
    max_rows
        Rows shown per table (the CSV and Parquet files hold all of them).
    **sources
        The source of each further section, by its registered name (see :data:`SECTIONS`):

        ``compare``
            A directory written by :func:`cytoatlas.compare`: a "Condition comparisons" section (its tables'
            strongest rows per contrast, what was not testable, its figures).
        ``groundtruth``
            A directory written by :func:`cytoatlas.groundtruth`: a "Perturbation ground truth" section.
        ``cells``
            Atlases' results directories whose ``cells/`` holds `cytoatlas cells` outputs: a "Per-cell
            activity" section (per atlas x signature set, the embedding subsample coloured by the z of the
            signatures that vary most over it, written to ``out/figures/cells_embedding__*.png|svg``; per level
            the summary's rows of highest mean z).

        Without a source (None, or an empty list) a section is left out, and the page is what it was without it.

    Returns
    -------
    Path
        The report file.

    Raises
    ------
    CytoatlasError
        ``out`` is not a validation directory; a source is given for a section no one registered.
    """
    out = Path(out)
    if not out.is_dir():
        raise CytoatlasError(f"validation directory {out} does not exist; run `cytoatlas validate --out {out}` first")
    check_count("max_rows", max_rows, minimum=1)
    unknown = sorted(set(sources) - set(SECTIONS))
    if unknown:
        raise CytoatlasError(f"no report section named {', '.join(unknown)}; sections: {', '.join(SECTIONS)}")
    for name, source in sources.items():  # a directory named by an empty string is none, not "."
        given = [source] if isinstance(source, (str, os.PathLike)) else \
            list(source) if isinstance(source, (list, tuple)) else []
        if any(not str(s).strip() for s in given):
            raise CytoatlasError(f"the {name} section's source names nothing ({source!r}): give a directory")
    t0 = time.perf_counter()
    with StepDirectory(out, REPORT, subdirs=[VALIDATION_FIGURES_DIR],
                       rerun=f"rerun `cytoatlas validate --force --out {out}` to recompute them") as d:
        inputs = [{"name": k, "checksum": r.checksum} for k, r in sorted(d.records.items())
                  if r.kind in ("table", "figure")]
        verify_step_directory(out, "validate", ["table", "figure"], [table_paths(out, t)[0] for t in VALIDATION_TABLES],
                              f"rerun `cytoatlas validate --force --out {out}`")
        validation = validation_sections(out, max_rows)
        title = title or f"cytoatlas validation: {', '.join(validation.atlases)}"
        sections = [Section(sid, name, content) for sid, name, content in validation.sections]
        sections += [SECTIONS[name](source, out, max_rows) for name, source in
                     ((n, sources.get(n)) for n in SECTIONS) if _given(source)]
        page = _page(out, title, validation.parameters, sections)
        path = out / REPORT_NAME
        write_text_atomic(path, page)
        parameters = {"title": title, "max_rows": max_rows}
        records = {}
        for s in sections:
            parameters.update(s.parameters)
            inputs += s.inputs
            for fig in s.figures:
                records.update([d.record(fig.path, fig.parameters, fig.inputs, **fig.extra)])
        records.update([d.record(path, parameters, inputs, kind="report")])
        # the figures of an earlier report that this one does not show are removed with their records
        stale = [k for k, r in d.previous().items() if r.kind != "report" and k not in records]
        for k in stale:
            (out / k).unlink(missing_ok=True)
        d.commit(records, remove=stale)
    log.info("report %s (%.1f MB, %d figures) in %.1f s", path, path.stat().st_size / 1e6, validation.n_figures,
             time.perf_counter() - t0)
    return path


def _page(out: Path, title: str, params: Mapping, sections: list[Section]) -> str:
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.html}</section>' for s in sections)
    when = time.strftime("%Y-%m-%d %H:%M")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1><p>Written {when} by "
            f"cytoatlas from {html.escape(str(out.resolve()))}; parameters: "
            f"{html.escape(json.dumps({k: params.get(k) for k in ('min_samples', 'min_cell_types', 'n_bootstrap')}))}"
            f"</p></header><nav>{nav}</nav><main>{body}</main><script>{JS}</script></body></html>")
