"""The results layout names every file a run writes, and it is the only module that spells result names; durable
writes leave whole files or none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cytoatlas.io import durable, layout
from cytoatlas.io.manifest import MANIFEST_NAME
from cytoatlas.io.results import read_header

SRC = Path(__file__).resolve().parents[1] / "src" / "cytoatlas"


def _layout_path_of(path: Path) -> Path:
    """The path the layout gives the result ``path`` holds, from what the file records about itself."""
    name = layout.parse(path)
    assert name is not None, f"{path.name}: not a name the layout makes"
    if name.step == "activity_ci":
        return layout.activity_ci_path(_layout_path_of(path.with_name(name.stem + layout.ACTIVITY_SUFFIX)))
    head = read_header(path, name.step if name.step != "activity_ci" else "activity")
    if name.step == "pseudobulk":
        assert head.kind == name.kind
        return layout.pseudobulk_path(path.parent, head.atlas, head.level, head.kind)
    pb = layout.pseudobulk_of(path, head.signature_set, layout.pseudobulk_dir(path.parents[1]))
    assert pb.is_file(), f"{path.name}: its pseudobulk file {pb} is missing"
    pb_head = read_header(pb, "pseudobulk")
    assert (pb_head.atlas, pb_head.level, pb_head.kind) == (head.atlas, head.level, head.kind)
    return layout.activity_path(path.parent, pb, head.signature_set)


def test_the_layout_names_every_file_of_a_results_tree(demo_pair):
    seen = 0
    for root in demo_pair["results"].values():
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.name == MANIFEST_NAME:
                continue
            assert _layout_path_of(path) == path
            seen += 1
        kinds = {layout.parse(p).kind for p in layout.find_pseudobulk(layout.pseudobulk_dir(root), root.name)}
        assert kinds == set(layout.PSEUDOBULK_KINDS)
    assert seen > 50


def test_parse_and_build_agree():
    d = Path("/r/pseudobulk")
    for kind in layout.PSEUDOBULK_KINDS:
        p = layout.pseudobulk_path(d, "CIMA", "L2_x", kind)
        assert layout.parse(p).step == "pseudobulk" and layout.parse(p).kind == kind
        act = layout.activity_path("/r/activity", p, "secact")
        assert layout.parse(act).step == "activity"
        assert layout.pseudobulk_of(act, "secact", d) == p
        assert layout.parse(layout.activity_ci_path(act)).step == "activity_ci"
    main = layout.pseudobulk_path(d, "a", "l", "celltype")
    res = layout.pseudobulk_path(d, "a", "l", "resampled")
    assert layout.main_of(res) == main and layout.resampled_of(main) == res
    assert layout.activity_inputs(res, layout.PSEUDOBULK_KINDS) == [res, main]
    assert layout.activity_inputs(main, layout.PSEUDOBULK_KINDS) == [main, res]
    assert layout.activity_inputs(main, layout.GROUP_KINDS) == [main]
    assert layout.parse("/r/notes.txt") is None
    with pytest.raises(ValueError, match="is not a resampled pseudobulk file name"):
        layout.main_of(main)
    with pytest.raises(ValueError, match="is not an activity file of signature set 'secact'"):
        layout.pseudobulk_of(layout.activity_path("/r", main, "cytosig"), "secact", d)
    assert layout.safe_name("CD4 T/naive") == "CD4_T_naive"


def _literal_in(pattern: str, module_allowed: str) -> list[str]:
    """Source modules other than ``module_allowed`` with a string literal (on one line) containing ``pattern``."""
    literal = re.compile(r"[\"'][^\"'\n]*" + re.escape(pattern))
    return sorted(path.relative_to(SRC).as_posix() for path in SRC.rglob("*.py")
                  if path.relative_to(SRC).as_posix() != module_allowed
                  and any(literal.search(line) for line in path.read_text().splitlines()
                          if not line.lstrip().startswith("#")))


@pytest.mark.parametrize(("pattern", "home"), [(".tmp-", "io/durable.py"), ("_activity.h5ad", "io/layout.py"),
                                           ("_activity_ci.csv", "io/layout.py"), (".checkpoint.npz", "io/layout.py")])
def test_one_module_spells_each_name(pattern, home):
    assert _literal_in(pattern, home) == []
    assert _literal_in(pattern, "") == [home]  # and the home does (the check can fail)


def test_importing_io_the_registry_or_the_api_loads_no_engine():
    code = ("import sys, cytoatlas.io, cytoatlas.io.layout, cytoatlas.io.results, cytoatlas.registry, cytoatlas._api; "
            "bad = [m for m in sys.modules if m == 'numba' or m.startswith('cytoatlas._pseudobulk')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_atomic_path_leaves_the_old_file_on_error(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    def crash_while_writing() -> None:
        with durable.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError, match="crash"):
        crash_while_writing()
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    durable.write_text_atomic(target, "new")
    assert target.read_text() == "new" and sorted(tmp_path.iterdir()) == [target]


def test_leftovers_are_other_processes_temporaries(tmp_path):
    mine = durable.temporary_path(tmp_path / "a.h5ad")
    dead = tmp_path / f".b.h5ad.tmp-{os.getpid() + 1}-7"
    for p in (mine, dead, tmp_path / "c.h5ad"):
        p.write_text("x")
    assert durable.temporary_owner(mine) == os.getpid()
    assert durable.temporary_owner(tmp_path / "c.h5ad") is None
    assert durable.leftovers(tmp_path) == [dead]
