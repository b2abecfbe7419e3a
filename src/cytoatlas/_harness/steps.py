"""The steps and their algorithm versions: one registration line each.

A step's *algorithm version* is bumped when the numbers its outputs hold change (a fix, a new estimator); an
output recorded with another version is stale, and ``cytoatlas run`` (or the step's rerun) recomputes it. The
release version is provenance only: a release that changes no numbers leaves every output current. Records
written before versions were recorded count as version 1 (:data:`cytoatlas.io.manifest.FIRST_ALGORITHM`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cytoatlas.errors import CytoatlasError
from cytoatlas.io.manifest import record


@dataclass
class Step:
    """A step that writes a results directory.

    Attributes
    ----------
    name
        The name its manifest records carry (``record.step``).
    algorithm
        Its algorithm version (an integer, bumped when its numbers change).
    title
        What it makes, for status lines and documentation.
    """

    name: str
    algorithm: int = 1
    title: str = ""

    def record(self, path: str | os.PathLike, parameters: Mapping, inputs: Iterable[Mapping], **extra) -> dict:
        """The manifest record of a finished output of this step (its name and algorithm version in it).

        Usable where no :class:`~cytoatlas._harness.StepDirectory` is held (a Dask worker writing an output
        returns its record for the driver to commit); ``extra`` as :func:`cytoatlas.io.manifest.record`'s.
        """
        return record(path, step=self.name, parameters=parameters, inputs=inputs, algorithm=self.algorithm, **extra)


STEPS: dict[str, Step] = {}


def register_step(step: Step) -> Step:
    """Make ``step`` known to the harness (status, staleness by algorithm version); returns it.

    Raises
    ------
    CytoatlasError
        Another step of that name is registered.
    """
    known = STEPS.get(step.name)
    if known is not None and known != step:
        raise CytoatlasError(f"a step named {step.name!r} is registered already: {known}")
    STEPS[step.name] = step
    return step


def get_step(name: str) -> Step | None:
    """The registered step called ``name`` (``None`` for a name no step registered)."""
    return STEPS.get(name)


PSEUDOBULK = register_step(Step("pseudobulk", 1, "cell type and sample x cell type pseudobulk"))
ACTIVITY = register_step(Step("activity", 1, "signature activity of every pseudobulk file"))
CELLS = register_step(Step("cells", 1, "per-cell activity and its summaries"))
VALIDATE = register_step(Step("validate", 1, "validation tables and figures"))
COMPARE = register_step(Step("compare", 1, "comparison tables and figures"))
GROUNDTRUTH = register_step(Step("groundtruth", 1, "perturbation ground-truth tables and figures"))
REPORT = register_step(Step("report", 1, "the HTML report and its own figures"))
