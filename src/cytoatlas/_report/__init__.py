"""`cytoatlas report`: one self-contained HTML page, assembled in one place from the sections steps contribute.

The validation's sections come first; each further section (the comparison, per-cell activity) is one function
registered with :func:`register_section` and shown when its source is given to :func:`report`.
"""

from cytoatlas._report import sections as _sections  # noqa: F401  (registers the built-in sections)
from cytoatlas._report.assemble import REPORT_NAME, SECTIONS, Section, SectionFigure, register_section, report

__all__ = ["REPORT_NAME", "SECTIONS", "Section", "SectionFigure", "register_section", "report"]
