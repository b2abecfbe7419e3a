"""The options' enumerations (``Literal`` aliases) drive validation and the CLI's choices; each seed is named for
what it seeds, and the old flags still work."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

import cytoatlas
from cytoatlas.cli import build_parser
from cytoatlas.errors import CytoatlasError
from cytoatlas.options import (
    ActivityOptions,
    Method,
    PseudobulkKind,
    PseudobulkOptions,
    Test,
    check_choice,
    choices,
)


@pytest.mark.parametrize(("alias", "values"), [(Method, ("exact", "permutation")), (Test, ("ols", "wilcoxon")),
                                               (PseudobulkKind, ("celltype", "samples", "resampled"))])
def test_choices_are_the_literal_values_in_order(alias, values) -> None:
    assert choices(alias) == values


@pytest.mark.parametrize("method", choices(Method))
def test_every_method_is_accepted_by_the_cli_and_the_check(method: str) -> None:
    check_choice("method", method, Method)
    assert build_parser().parse_args(["activity", "f.h5ad", "--out", "o", "--method", method]).method == method


@pytest.mark.parametrize("test", choices(Test))
def test_every_test_is_accepted_by_the_cli(test: str) -> None:
    args = build_parser().parse_args(["compare", "--atlas", "a", "--out", "o", "--by", "x", "--test", test])
    assert args.test == test


def test_a_bad_choice_is_one_line_naming_the_valid_values() -> None:
    with pytest.raises(CytoatlasError, match=r"^method must be one of exact, permutation, got 'fast'$"):
        check_choice("method", "fast", Method)


@pytest.mark.parametrize(("argv", "dest", "value"), [
    (["run", "--atlas", "a", "--out", "o", "--seed", "7"], "bootstrap_seed", 7),
    (["run", "--atlas", "a", "--out", "o", "--bootstrap-seed", "7"], "bootstrap_seed", 7),
    (["run", "--atlas", "a", "--out", "o", "--perm-seed", "3"], "permutation_seed", 3),
    (["run", "--atlas", "a", "--out", "o", "--permutation-seed", "3"], "permutation_seed", 3),
    (["activity", "f.h5ad", "--out", "o", "--seed", "5"], "permutation_seed", 5),
    (["activity", "f.h5ad", "--out", "o", "--permutation-seed", "5"], "permutation_seed", 5),
    (["validate", "--atlas", "a", "--out", "o", "--seed", "9"], "bootstrap_seed", 9),
])
def test_seeds_are_named_for_what_they_seed_and_old_flags_still_work(argv, dest, value) -> None:
    assert getattr(build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize(("options", "function"), [(PseudobulkOptions, "pseudobulk"), (ActivityOptions, "activity")])
def test_each_option_is_the_steps_own_keyword_with_its_default(options, function) -> None:
    """One options class per step, shared by the function, the CLI, run() and status(): its fields are the
    function's keywords, with the same defaults (signature_files aside: None in run() means the registry's)."""
    params = inspect.signature(getattr(cytoatlas, function)).parameters
    for f in dataclasses.fields(options):
        assert f.name in params and params[f.name].kind is inspect.Parameter.KEYWORD_ONLY, f.name
        assert params[f.name].default == f.default or (f.name == "signatures" and f.default is None), f.name


def test_options_from_a_mapping_name_unknown_fields() -> None:
    assert PseudobulkOptions.of({"n_bootstrap": 3}).n_bootstrap == 3
    assert ActivityOptions.of(None) == ActivityOptions()
    with pytest.raises(CytoatlasError, match=r"^unknown PseudobulkOptions seed; valid: batch_size, n_bootstrap, "):
        PseudobulkOptions.of({"seed": 3})
    with pytest.raises(CytoatlasError, match="method must be one of exact, permutation, got 'fast'"):
        ActivityOptions(method="fast")


def test_the_cli_builds_the_options_run_and_status_use() -> None:
    from cytoatlas.cli import _activity_options, _pseudobulk_options

    args = build_parser().parse_args(["status", "--atlas", "a", "--out", "o", "--seed", "4", "--perm-seed", "2",
                                      "--signatures", "cytosig", "--method", "permutation"])
    assert _pseudobulk_options(args) == PseudobulkOptions(bootstrap_seed=4)
    assert _activity_options(args) == ActivityOptions(signatures=("cytosig",), permutation_seed=2,
                                                      method="permutation", cell_type_map={})
