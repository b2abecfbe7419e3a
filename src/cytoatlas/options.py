"""The options of the steps: the enumerations as ``Literal`` aliases (one definition each, used for type hints,
run-time validation (:func:`check_choice`), the CLI's ``choices`` and test parametrisation (:func:`choices`)), and
one dataclass per step of ``cytoatlas run`` shared by its Python function, the CLI, ``run()`` and ``status()``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

import numpy as np

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

    def __post_init__(self) -> None:
        # the same bounds and words as cytoatlas.pseudobulk's own check (status and run judge with these too)
        for name, low in (("batch_size", 1), ("n_bootstrap", 0), ("bootstrap_seed", 0), ("min_cells", 1),
                          ("min_samples", 1), ("threads", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or int(value) != value or value < low):
                raise CytoatlasError(f"{name} must be an integer >= {low}, got {value!r}")
        if not self.checkpoint_every >= 0:  # 0: a checkpoint after every block
            raise CytoatlasError(f"checkpoint_every must be >= 0 seconds, got {self.checkpoint_every!r}")

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
        if self.signatures is not None:  # given, it must name something ("" or "a,," is an error, not "all")
            names = name_list("signatures", self.signatures)
            if not names:
                raise CytoatlasError("signatures names nothing: give one or more signature sets, comma-separated")
            object.__setattr__(self, "signatures", names)
        check_count("n_rand", self.n_rand, minimum=1)
        check_count("permutation_seed", self.permutation_seed, minimum=0)
        if not 0 <= self.lambda_ < float("inf"):
            raise CytoatlasError(f"lambda must be a finite number >= 0, got {self.lambda_!r}")
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


# --- the checks of option values, shared by the Python API and the CLI (which passes values through) ---------


def name_list(option: str, value: str | Iterable[object] | None) -> tuple[str, ...]:
    """A list option's names: a sequence, or one comma-separated string (as the CLI passes it).

    ``None`` or an empty sequence is the option left out (``()``); an empty string, or an empty name in the list
    (``"a,,b"``), names nothing and is an error, not "absent".

    Raises
    ------
    CytoatlasError
        ``value`` is or holds an empty name.
    """
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(s).strip() for s in items)
    if any(not n for n in names):
        raise CytoatlasError(f"{option} names nothing ({value!r}): give one or more names, comma-separated")
    return names


def check_known(option: str, names: Iterable[str], valid: Iterable[str], *, what: str = "",
                case: bool = False) -> None:
    """Raise the one-line error naming the valid values when a name in ``names`` is not one of ``valid``
    (compared ignoring case unless ``case``).

    Raises
    ------
    CytoatlasError
        A name is unknown.
    """
    key = (lambda s: s) if case else str.lower
    shown: dict[str, str] = {}
    for v in map(str, valid):  # one spelling per name: the one with capitals (a file name's is lower-cased)
        if key(v) not in shown or shown[key(v)] == shown[key(v)].lower():
            shown[key(v)] = v
    valid = list(shown.values())
    known = {key(v) for v in valid}
    unknown = [n for n in names if key(str(n)) not in known]
    if unknown:
        raise CytoatlasError(f"{option}: {what or 'value'}{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} not found; valid: {', '.join(valid) or '(none)'}")


def check_count(option: str, value: object, *, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an int, checked to be a whole number in ``[minimum, maximum]``.

    Raises
    ------
    CytoatlasError
        Not a whole number, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CytoatlasError(f"{option} must be a whole number, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        raise CytoatlasError(f"{option} must be {bound}, got {value}")
    return value


def name_pairs(option: str, value: Mapping[str, str] | str | Iterable[str] | None,
               form: str = "KEY=VALUE") -> dict[str, str]:
    """A mapping option: a mapping, or ``KEY=VALUE`` strings (a sequence, or one comma-separated string, as the
    CLI passes them). Keys and values must be non-empty and a value holds no ``=``.

    Raises
    ------
    CytoatlasError
        An item is not ``KEY=VALUE``, or a key is given twice with different values.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        items = [(str(k), str(v)) for k, v in value.items()]
        shown = [f"{k}={v}" for k, v in items]
    else:
        shown = name_list(option, value)
        items = [s.partition("=")[::2] for s in shown]
    out: dict[str, str] = {}
    for text, (key, val) in zip(shown, items, strict=True):
        key, val = key.strip(), val.strip()
        if not key or not val or "=" in val or "=" not in text:
            raise CytoatlasError(f"{option} wants {form}, got {text!r}")
        if out.get(key, val) != val:
            raise CytoatlasError(f"{option} gives {key} twice: {out[key]} and {val}")
        out[key] = val
    return out
