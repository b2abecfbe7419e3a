"""The options' enumerations (``Literal`` aliases) drive validation and the CLI's choices; each seed is named for
what it seeds, and the old flags still work."""

from __future__ import annotations

import pytest

from cytoatlas.cli import build_parser
from cytoatlas.errors import CytoatlasError
from cytoatlas.options import Method, PseudobulkKind, Test, check_choice, choices


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
