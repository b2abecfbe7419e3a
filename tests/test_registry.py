"""The atlas registry: the six built-in atlases, data-root resolution, user TOML files adding and overriding
atlases, and the errors a malformed registry raises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _atlas_factory import dense, read_level, write_atlas, write_registry

import cytoatlas
from cytoatlas import CytoatlasError
from cytoatlas.registry import DATA_ROOT_ENV, AtlasConfig, Level, atlas_from_mapping, get_atlas, load_registry

SEED_ATLASES = {"cima", "inflammation_main", "inflammation_val", "inflammation_ext", "scatlas_normal",
                "scatlas_cancer"}
INFLAMMATION_EXCLUDE = ("Doublets", "LowQuality_cells")


@pytest.fixture(autouse=True)
def _no_env_data_root(monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)


def _levels(cfg: AtlasConfig) -> dict[str, Level]:
    return {lev.name: lev for lev in cfg.levels}


# ---------------------------------------------------------------------------------------------------------------
# built-in registry


def test_builtin_registry_has_exactly_the_six_seed_atlases():
    assert set(load_registry()) == SEED_ATLASES


def test_cima(tmp_path):
    cfg = get_atlas("cima", data_root=tmp_path)
    assert cfg.sample_col == "sample" and cfg.donor_col is None and cfg.unit_col == "sample"
    assert cfg.counts == "X" and cfg.exclude == () and cfg.gene_symbols is None
    assert [lev.name for lev in cfg.levels] == ["L1", "L2", "L3", "L4"]
    for k in range(1, 5):
        assert _levels(cfg)[f"L{k}"] == Level(f"L{k}", (f"cell_type_l{k}",))
    assert cfg.h5ad.suffix == ".h5ad" and cfg.h5ad.is_relative_to(tmp_path)


def test_inflammation_main(tmp_path):
    cfg = get_atlas("inflammation_main", data_root=tmp_path)
    assert cfg.sample_col == "sampleID" and cfg.gene_symbols == "symbol" and cfg.donor_col is None
    assert _levels(cfg) == {"L1": Level("L1", ("Level1",)), "L2": Level("L2", ("Level2",))}
    assert cfg.exclude == (("Level1", INFLAMMATION_EXCLUDE),)
    assert cfg.obs_columns() == ["sampleID", "Level1", "Level2"]


@pytest.mark.parametrize("name", ["inflammation_val", "inflammation_ext"])
def test_inflammation_validation_and_external(tmp_path, name):
    cfg = get_atlas(name, data_root=tmp_path)
    assert cfg.sample_col == "sampleID" and cfg.gene_symbols == "symbol"
    assert _levels(cfg) == {"L1": Level("L1", ("Level1pred",)), "L2": Level("L2", ("Level2pred",))}
    assert cfg.exclude == (("Level1pred", INFLAMMATION_EXCLUDE),)


@pytest.mark.parametrize("name", ["scatlas_normal", "scatlas_cancer"])
def test_scatlas(tmp_path, name):
    cfg = get_atlas(name, data_root=tmp_path)
    assert cfg.sample_col == "sampleID" and cfg.donor_col == "donorID" and cfg.unit_col == "donorID"
    levels = _levels(cfg)
    assert levels["celltype"] == Level("celltype", ("cellType1",))
    assert levels["organ"] == Level("organ", ("tissue",))
    assert levels["organ_celltype"] == Level("organ_celltype", ("tissue", "cellType1"))
    if name == "scatlas_cancer":
        assert set(levels) == {"celltype", "organ", "organ_celltype", "tumor_only"}
        assert levels["tumor_only"] == Level("tumor_only", ("cellType1",), (("tissue", ("Tumor",)),))
    else:
        assert set(levels) == {"celltype", "organ", "organ_celltype"}


def test_builtin_files_are_distinct():
    paths = {e["entry"]["h5ad"] for e in load_registry().values()}
    assert len(paths) == 6


# ---------------------------------------------------------------------------------------------------------------
# data root


def test_relative_path_resolves_against_data_root_argument(tmp_path):
    raw = load_registry()["cima"]["entry"]["h5ad"]
    assert not Path(raw).is_absolute()
    assert get_atlas("cima", data_root=tmp_path).h5ad == tmp_path / raw
    assert get_atlas("cima", data_root=str(tmp_path)).h5ad == tmp_path / raw


def test_relative_path_resolves_against_env(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "env_root"))
    raw = load_registry()["scatlas_cancer"]["entry"]["h5ad"]
    assert get_atlas("scatlas_cancer").h5ad == tmp_path / "env_root" / raw
    # an explicit data root wins over the environment
    assert get_atlas("scatlas_cancer", data_root=tmp_path / "arg").h5ad == tmp_path / "arg" / raw


def test_no_data_root_is_an_error_mentioning_the_option():
    with pytest.raises(CytoatlasError, match="--data-root") as excinfo:
        get_atlas("cima")
    assert DATA_ROOT_ENV in str(excinfo.value)
    assert "cima" in str(excinfo.value)


def test_unknown_atlas_lists_registered(tmp_path):
    with pytest.raises(CytoatlasError, match="cmia") as excinfo:
        get_atlas("cmia", data_root=tmp_path)
    for name in SEED_ATLASES:
        assert name in str(excinfo.value)


# ---------------------------------------------------------------------------------------------------------------
# user registry files

USER_TOML = """
[atlas.mine]
h5ad = "mine.h5ad"
sample_col = "sample"
donor_col = "donor"
[atlas.mine.levels]
L1 = "cell_type"
lineage_celltype = ["lineage", "cell_type"]
lineage_b = { by = ["cell_type"], where = { lineage = ["B"] } }
donor_only = []

[atlas.cima]
h5ad = "/elsewhere/cima.h5ad"
"""


def test_user_registry_adds_an_atlas(tmp_path):
    reg = write_registry(tmp_path / "reg.toml", USER_TOML)
    assert set(load_registry(reg)) == SEED_ATLASES | {"mine"}
    cfg = get_atlas("mine", registry=reg)
    assert cfg.h5ad == tmp_path.resolve() / "mine.h5ad"  # relative to the registry file's directory
    assert cfg.sample_col == "sample" and cfg.donor_col == "donor" and cfg.unit_col == "donor"
    assert _levels(cfg) == {
        "L1": Level("L1", ("cell_type",)),
        "lineage_celltype": Level("lineage_celltype", ("lineage", "cell_type")),
        "lineage_b": Level("lineage_b", ("cell_type",), (("lineage", ("B",)),)),
        "donor_only": Level("donor_only", ()),
    }
    # a data root still wins over the registry file's directory
    assert get_atlas("mine", registry=reg, data_root=tmp_path / "root").h5ad == tmp_path / "root" / "mine.h5ad"


def test_user_registry_overrides_a_key_and_keeps_the_others(tmp_path):
    reg = write_registry(tmp_path / "reg.toml", USER_TOML)
    cfg = get_atlas("cima", registry=reg)
    builtin = get_atlas("cima", data_root=tmp_path)
    assert cfg.h5ad == Path("/elsewhere/cima.h5ad")
    assert cfg.sample_col == builtin.sample_col == "sample"
    assert cfg.levels == builtin.levels
    # the other built-ins are untouched
    assert get_atlas("scatlas_cancer", registry=reg, data_root=tmp_path) == get_atlas("scatlas_cancer",
                                                                                       data_root=tmp_path)


def test_override_without_h5ad_keeps_builtin_relative_path_semantics(tmp_path):
    """The registry docs: relative paths resolve against the data root, else against the directory of the TOML
    file *that named them*. Overriding only cima's sample column does not name its (relative, built-in) path,
    so with no data root the path must stay unresolvable, as for the built-in alone."""
    reg = write_registry(tmp_path / "reg.toml", '[atlas.cima]\nsample_col = "donor_sample"\n')
    assert get_atlas("cima", registry=reg, data_root=tmp_path / "root").sample_col == "donor_sample"
    with pytest.raises(CytoatlasError, match="--data-root"):
        get_atlas("cima", registry=reg)


def test_user_atlas_runs_every_level_kind(tmp_path):
    """Composite, `where` and empty (`[]`) levels from a user TOML, end to end on a tiny atlas."""
    atlas = write_atlas(tmp_path / "mine.h5ad", "csr")
    reg = write_registry(tmp_path / "reg.toml", USER_TOML)
    out = tmp_path / "out"
    paths = cytoatlas.pseudobulk("mine", out, registry=reg, n_bootstrap=2, min_cells=1, min_samples=2)
    assert len(paths) == 12 and all(p.exists() for p in paths)
    obs, counts = atlas.obs, atlas.counts

    comp = read_level(out, "mine", "lineage_celltype")["celltype"]
    assert set(comp.obs["lineage"]) == {"A", "B"} and comp.n_obs == 3
    sep = comp.uns["separator"]
    for i, label in enumerate(comp.obs_names):
        lin, ct = label.split(sep)
        assert comp.obs["lineage"].iloc[i] == lin
        mask = ((obs["lineage"] == lin) & (obs["cell_type"] == ct)).to_numpy()
        assert comp.obs["n_cells"].iloc[i] == mask.sum() > 0
        np.testing.assert_array_equal(dense(comp.layers["counts"])[i], counts[mask].sum(axis=0))

    where = read_level(out, "mine", "lineage_b")["celltype"]
    assert sorted(where.obs_names) == ["T1", "T2"]  # lineage B holds cell types T1, T2
    assert where.obs["n_cells"].sum() == (obs["lineage"] == "B").sum()

    everything = read_level(out, "mine", "donor_only")
    assert everything["celltype"].n_obs == 1
    np.testing.assert_array_equal(dense(everything["celltype"].layers["counts"])[0], counts.sum(axis=0))
    assert everything["celltype"].obs["n_cells"].iloc[0] == len(obs)
    assert everything["samples"].n_obs == 6
    assert set(everything["samples"].obs["donor"]) == {"D0", "D1", "D2"}


# ---------------------------------------------------------------------------------------------------------------
# malformed registries


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevel = { L1 = "c" }\n', ["unknown keys", "level"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = { L1 = "c" }\nsamples = "s"\n',
         ["unknown keys", "samples"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = { L1 = 3 }\n', ["level 'L1'", "3"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = { L1 = { by = ["c"], wher = { t = ["x"] } } }\n',
         ["level 'L1'", "wher"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = { L1 = { by = ["c"], where = ["x"] } }\n',
         ["where", "table"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = { L1 = ["a", 2] }\n', ["level 'L1'"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = {}\n', ["levels", "non-empty"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = "c"\n', ["levels"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nlevels = { L1 = "c" }\n', ["missing", "sample_col"]),
        ('[atlas.x]\nh5ad = "/a.h5ad"\nsample_col = "s"\nlevels = { L1 = "c" }\nexclude = ["a"]\n',
         ["exclude", "table"]),
    ],
    ids=["unknown_key_level", "unknown_key_samples", "level_not_a_column", "level_table_bad_key",
         "where_not_a_table", "level_list_not_strings", "levels_empty", "levels_not_a_table", "missing_sample_col",
         "exclude_not_a_table"],
)
def test_malformed_atlas_entries_name_the_problem(tmp_path, text, fragments):
    reg = write_registry(tmp_path / "reg.toml", text)
    with pytest.raises(CytoatlasError) as excinfo:
        get_atlas("x", registry=reg)
    msg = str(excinfo.value)
    assert "\n" not in msg and "'x'" in msg
    for frag in fragments:
        assert frag in msg


def test_malformed_levels_via_atlas_from_mapping():
    with pytest.raises(CytoatlasError, match="level 'L1'"):
        atlas_from_mapping("y", {"h5ad": "/a.h5ad", "sample_col": "s", "levels": {"L1": {"columns": ["c"]}}})


def test_invalid_toml_is_a_clear_error(tmp_path):
    reg = write_registry(tmp_path / "reg.toml", '[atlas.x\nh5ad = "a.h5ad"\n')
    with pytest.raises(CytoatlasError) as excinfo:
        load_registry(reg)
    msg = str(excinfo.value)
    assert "not valid TOML" in msg and str(reg) in msg and "\n" not in msg


def test_registry_with_other_top_level_tables_is_refused(tmp_path):
    reg = write_registry(tmp_path / "reg.toml", '[atlases.x]\nh5ad = "a.h5ad"\n')
    with pytest.raises(CytoatlasError, match=r"\[atlas\.NAME\]"):
        load_registry(reg)


def test_registry_atlas_that_is_not_a_table_is_refused(tmp_path):
    reg = write_registry(tmp_path / "reg.toml", '[atlas]\ncima = "CIMA/cima.h5ad"\n')
    with pytest.raises(CytoatlasError, match="cima"):
        load_registry(reg)


def test_missing_registry_file(tmp_path):
    with pytest.raises(CytoatlasError, match="does not exist"):
        load_registry(tmp_path / "nope.toml")
