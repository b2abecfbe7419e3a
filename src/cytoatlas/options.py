"""The enumerations of the options, as ``Literal`` aliases: one definition each, used for type hints, run-time
validation (:func:`check_choice`), the CLI's ``choices`` and test parametrisation (:func:`choices`)."""

from __future__ import annotations

from typing import Literal, get_args

from cytoatlas.errors import CytoatlasError

#: how activity z-scores are computed: the closed form, or secactpy's permutations
Method = Literal["exact", "permutation"]
#: the comparison's test: regression (t) or rank (Wilcoxon rank-sum / signed-rank)
Test = Literal["ols", "wilcoxon"]
#: the pseudobulk files of a level
PseudobulkKind = Literal["celltype", "samples", "resampled"]
#: the state of an output (``cytoatlas status``)
State = Literal["complete", "missing", "stale", "corrupt", "running"]


def choices(alias: object) -> tuple[str, ...]:
    """The values of a ``Literal`` alias, in their order."""
    return tuple(get_args(alias))


def check_choice(name: str, value: object, alias: object) -> None:
    """Raise the one-line error naming the valid values when ``value`` is not one of ``alias``'s.

    Raises
    ------
    CytoatlasError
        ``value`` is not a value of ``alias``.
    """
    valid = choices(alias)
    if value not in valid:
        raise CytoatlasError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
