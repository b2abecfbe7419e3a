"""The options of the steps: the enumerations as ``Literal`` aliases (one definition each, used for type hints,
run-time validation (:func:`check_choice`), the CLI's ``choices`` and test parametrisation (:func:`choices`)), and
one dataclass per step of ``cytoatlas run`` shared by its Python function, the CLI, ``run()`` and ``status()``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from cytoatlas import defaults
from cytoatlas.errors import CytoatlasError

#: how activity z-scores are computed: the closed form, or secactpy's permutations
Method = Literal["exact", "permutation"]
#: the comparison's test: regression (t) or rank (Wilcoxon rank-sum / signed-rank)
Test = Literal["ols", "wilcoxon"]
#: what a bulk matrix given to activity holds: raw counts (-> log1p CPM), TPM (-> log2(TPM + 1)) or log expression
Values = Literal["counts", "tpm", "log"]
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


@dataclass(frozen=True)
class PseudobulkOptions:
    """The options of :func:`cytoatlas.pseudobulk` that shape its outputs and its pass, as ``cytoatlas run``,
    ``cytoatlas status`` and the CLI share them (each field is the function's keyword of that name)."""

    batch_size: int = defaults.BATCH_SIZE
    n_bootstrap: int = defaults.N_BOOTSTRAP
    bootstrap_seed: int = defaults.BOOTSTRAP_SEED
    min_cells: int = defaults.MIN_CELLS
    min_samples: int = defaults.MIN_SAMPLES
    checkpoint_every: float = defaults.CHECKPOINT_EVERY
    threads: int | None = None

    @classmethod
    def of(cls, options: PseudobulkOptions | Mapping[str, Any] | None) -> PseudobulkOptions:
        """``options`` as this class (a mapping of its fields, or ``None`` for the defaults)."""
        return _of(cls, options)

    def kwargs(self) -> dict[str, Any]:
        """The options as keywords of :func:`cytoatlas.pseudobulk`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ActivityOptions:
    """The options of :func:`cytoatlas.activity` that shape its outputs, as ``cytoatlas run``, ``cytoatlas
    status`` and the CLI share them (each field is the function's keyword of that name)."""

    signatures: tuple[str, ...] | None = None
    #: ``None`` in ``cytoatlas run``: the registry entry's files
    signature_files: tuple[str | os.PathLike, ...] | None = ()
    method: Method = defaults.METHOD
    n_rand: int = defaults.N_RAND
    permutation_seed: int = defaults.PERMUTATION_SEED
    centre: str = defaults.CENTRE
    cell_type_map: Mapping[str, str] | None = None
    lambda_: float = defaults.LAMBDA

    def __post_init__(self) -> None:
        check_choice("method", self.method, Method)
        if self.signatures is not None:
            object.__setattr__(self, "signatures", tuple(self.signatures))
        if self.signature_files is not None:
            object.__setattr__(self, "signature_files", tuple(self.signature_files))

    @classmethod
    def of(cls, options: ActivityOptions | Mapping[str, Any] | None) -> ActivityOptions:
        """``options`` as this class (a mapping of its fields, or ``None`` for the defaults)."""
        return _of(cls, options)

    def kwargs(self) -> dict[str, Any]:
        """The options as keywords of :func:`cytoatlas.activity`."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _of(cls, options):
    if options is None:
        return cls()
    if isinstance(options, cls):
        return options
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise CytoatlasError(f"unknown {cls.__name__} {', '.join(unknown)}; valid: {', '.join(names)}")
    return cls(**options)
