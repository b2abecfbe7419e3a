"""The step harness: what every step that writes a results directory shares.

A step is declared once (:class:`Step`, registered in :mod:`cytoatlas._harness.steps`: its name and algorithm
version). A run holds its output directory through :class:`StepDirectory` (the directory checks, the lock, the
manifest's typed records, "is this current", recording, removing stale files), and ``cytoatlas status`` judges
any step's directory with :func:`directory_status`. A step module then holds its computation and its outputs.
"""

from cytoatlas._harness.directory import StepDirectory, input_fingerprint, verified_input
from cytoatlas._harness.status import StatusRow, directory_status, step_directories
from cytoatlas._harness.steps import STEPS, Step, get_step, register_step

__all__ = ["STEPS", "StatusRow", "Step", "StepDirectory", "directory_status", "get_step", "input_fingerprint",
           "register_step", "step_directories", "verified_input"]
