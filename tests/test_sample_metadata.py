"""The registry's `sample_columns`: per-sample obs columns copied, with their dtype, into every sample x cell type
file (and on into its activity file); checked constant per sample; part of the recorded parameters only when set."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _atlas_factory import make_counts, tiny_config

import cytoatlas
from cytoatlas import output_paths
from cytoatlas._pseudobulk import level_parameters, level_status
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.fingerprint import file_fingerprint

SAMPLE_COLUMNS = ["disease", "site", "age", "bmi", "smoker", "batch"]
LEVELS = {"L1": "cell_type", "pair": ["lineage", "cell_type"], "all": []}


def _sample_table() -> pd.DataFrame:
    """Per sample S0..S5: the values the atlas' cells carry (an independent reference for the outputs)."""
    return pd.DataFrame({
        "disease": ["healthy", "flu", "healthy", "flu", "covid", "flu"],
        "site": pd.Categorical(["A", "A", "B", "B", "A", "B"], categories=["A", "B", "C"]),  # C: never used
        "age": np.array([31, 45, 52, 28, 67, 39], dtype=np.int64),
        "bmi": [22.5, np.nan, 30.1, 24.0, 27.7, np.nan],  # two samples without a value
        "smoker": [True, False, False, True, False, True],
        "batch": pd.Categorical(["b1", "b2", "b1", None, "b2", "b1"]),  # one missing category
    }, index=[f"S{i}" for i in range(6)])


def _write(path: Path, obs: pd.DataFrame, counts: np.ndarray) -> Path:
    var = pd.DataFrame(index=[f"G{g}" for g in range(counts.shape[1])])
    # strings stay strings on disk (anndata would store them as categoricals): the reader must turn them into one
    ad.AnnData(sp.csr_matrix(counts), obs=obs, var=var).write_h5ad(path, convert_strings_to_categoricals=False)
    return path


@pytest.fixture(scope="module")
def atlas(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    counts, obs = make_counts(n_cells=360)
    table = _sample_table()
    per_cell = table.loc[obs["sample"].astype(str)].set_index(obs.index)
    for col in SAMPLE_COLUMNS:
        obs[col] = per_cell[col].to_numpy() if col != "disease" else per_cell[col].astype(object).to_numpy()
    obs["site"] = pd.Categorical(obs["site"], categories=["A", "B", "C"])
    obs["batch"] = pd.Categorical(obs["batch"], categories=["b1", "b2"])
    obs["cell_id_number"] = np.arange(len(obs))  # differs within every sample
    path = _write(tmp_path_factory.mktemp("sample_meta") / "atlas.h5ad", obs, counts)
    on_disk = ad.read_h5ad(path).obs["disease"].dtype  # object with pandas 2, pandas 3's str dtype with pandas 3
    assert pd.api.types.is_string_dtype(on_disk) and not isinstance(on_disk, pd.CategoricalDtype)
    return path, table


@pytest.fixture(scope="module")
def runs(atlas, tmp_path_factory) -> dict[str, Path]:
    """Pseudobulk (and CytoSig-free activity: a tiny signature file) with and without sample columns."""
    path, _ = atlas
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, extra in (("with", {"sample_columns": SAMPLE_COLUMNS}), ("without", {})):
        cfg = tiny_config(path, levels=LEVELS, donor_col="donor", **extra)
        cytoatlas.pseudobulk(cfg, root / name / "pseudobulk", n_bootstrap=5, min_samples=2, min_cells=5)
        out[name] = root / name
    return out


def test_samples_files_carry_the_columns_with_their_dtypes(runs, atlas) -> None:
    _, table = atlas
    for level in LEVELS:
        obs = ad.read_h5ad(output_paths(runs["with"] / "pseudobulk", "tiny", level)["samples"]).obs
        base = ad.read_h5ad(output_paths(runs["without"] / "pseudobulk", "tiny", level)["samples"]).obs
        # the existing columns first, unchanged, then the sample columns in the registry's order
        assert list(obs.columns) == [*base.columns, *SAMPLE_COLUMNS]
        pd.testing.assert_frame_equal(obs[list(base.columns)], base)
        expected = table.loc[obs["sample"].astype(str)].set_index(obs.index)
        assert obs["disease"].dtype == "category"  # a string column becomes a categorical
        assert list(obs["disease"].cat.categories) == sorted(set(expected["disease"]))
        assert list(obs["site"].cat.categories) == ["A", "B", "C"]  # the atlas' categories, used or not
        assert obs["age"].dtype == np.int64 and obs["bmi"].dtype == np.float64 and obs["smoker"].dtype == bool
        for col in SAMPLE_COLUMNS:
            pd.testing.assert_series_equal(obs[col].astype(object), expected[col].astype(object), check_names=False)
        assert obs["bmi"].isna().sum() == expected["bmi"].isna().sum() > 0  # missing stays missing, never 0
        assert obs["batch"].isna().sum() == expected["batch"].isna().sum() > 0


def test_cell_type_and_resampled_files_are_unchanged(runs) -> None:
    for level in LEVELS:
        for kind in ("celltype", "resampled"):
            a = ad.read_h5ad(output_paths(runs["with"] / "pseudobulk", "tiny", level)[kind])
            b = ad.read_h5ad(output_paths(runs["without"] / "pseudobulk", "tiny", level)[kind])
            pd.testing.assert_frame_equal(a.obs, b.obs)
            np.testing.assert_array_equal(a.X, b.X)
        a = ad.read_h5ad(output_paths(runs["with"] / "pseudobulk", "tiny", level)["samples"])
        b = ad.read_h5ad(output_paths(runs["without"] / "pseudobulk", "tiny", level)["samples"])
        for layer in ("counts", "zscore"):
            np.testing.assert_array_equal(a.layers[layer], b.layers[layer])


def test_parameters_hold_the_columns_only_when_set(runs, atlas) -> None:
    path, _ = atlas
    without = json.loads((runs["without"] / "pseudobulk" / "manifest.json").read_text())["outputs"]
    with_ = json.loads((runs["with"] / "pseudobulk" / "manifest.json").read_text())["outputs"]
    for name, rec in without.items():
        assert "sample_columns" not in rec["parameters"]
        assert with_[name]["parameters"] == {**rec["parameters"], "sample_columns": SAMPLE_COLUMNS}
    cfg = tiny_config(path, levels=LEVELS, donor_col="donor")
    for level in LEVELS:
        h5 = ad.read_h5ad(output_paths(runs["without"] / "pseudobulk", "tiny", level)["samples"])
        assert "sample_columns" not in h5.uns["parameters"]
        # exactly what was recorded before sample columns existed: the same keys as ever
        assert set(level_parameters(cfg, cfg.level(level), 5, 42, 5, 2)) == {
            "counts", "sample_col", "donor_col", "gene_symbols", "exclude", "level_by", "level_where",
            "n_bootstrap", "seed", "min_cells", "min_samples"}


def test_changed_sample_columns_make_the_outputs_stale(runs, atlas, tmp_path) -> None:
    path, _ = atlas
    fingerprint = file_fingerprint(path)
    out = runs["with"] / "pseudobulk"
    for columns, expected in ((SAMPLE_COLUMNS, "complete"), (SAMPLE_COLUMNS[:2], "stale"), ([], "stale")):
        cfg = tiny_config(path, levels=LEVELS, donor_col="donor", sample_columns=columns)
        params = level_parameters(cfg, cfg.level("L1"), 5, 42, 5, 2)
        states = level_status(output_paths(out, "tiny", "L1"), ["celltype", "samples", "resampled"], params,
                              fingerprint)
        assert {state for state, _ in states.values()} == {expected}, (columns, states)
    # skip_existing redoes them with the new columns
    import shutil

    copy = tmp_path / "pseudobulk"
    shutil.copytree(out, copy)
    cfg = tiny_config(path, levels={"L1": "cell_type"}, donor_col="donor", sample_columns=["age"])
    (samples,) = [p for p in cytoatlas.pseudobulk(cfg, copy, n_bootstrap=5, min_samples=2, min_cells=5,
                                                  skip_existing=True) if p.name.endswith("_samples.h5ad")]
    assert list(ad.read_h5ad(samples).obs.columns)[-2:] == ["n_cells", "age"]


def test_activity_files_carry_the_sample_columns(runs, tmp_path) -> None:
    samples = output_paths(runs["with"] / "pseudobulk", "tiny", "L1")["samples"]
    genes = [f"G{g}" for g in range(40)]
    rng = np.random.default_rng(3)
    sig = tmp_path / "toy.tsv"
    pd.DataFrame(rng.normal(size=(40, 3)), index=genes, columns=["A", "B", "C"]).to_csv(sig, sep="\t")
    (act_path,) = cytoatlas.activity([samples], tmp_path / "act", signatures=[str(sig)], centre="within:cell_type")
    act = ad.read_h5ad(act_path).obs
    pb = ad.read_h5ad(samples).obs
    for col in SAMPLE_COLUMNS:
        pd.testing.assert_series_equal(act[col], pb[col])


def test_missing_values_are_counted_in_the_log(atlas, tmp_path, caplog) -> None:
    path, _ = atlas
    cfg = tiny_config(path, sample_columns=["bmi", "batch", "age"])
    with caplog.at_level(logging.INFO, logger="cytoatlas"):
        cytoatlas.pseudobulk(cfg, tmp_path, n_bootstrap=0)
    assert "sample column bmi (float64): 2 of 6 sample(s) missing" in caplog.text
    assert "sample column batch (category): 1 of 6 sample(s) missing" in caplog.text
    assert "sample column age (int64): 0 of 6 sample(s) missing" in caplog.text


def test_a_column_not_constant_within_a_sample_is_refused(atlas, tmp_path) -> None:
    path, _ = atlas
    cfg = tiny_config(path, sample_columns=["age", "cell_id_number"])
    with pytest.raises(CytoatlasError, match=r"sample column 'cell_id_number' is not constant within sample 'S\d'"
                                             r" \(values \d+, \d+, \d+, \d+, \d+, \.\.\.\)") as err:
        cytoatlas.pseudobulk(cfg, tmp_path / "out", n_bootstrap=0)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.h5ad"))


def test_mixed_missing_and_present_values_in_a_sample_are_refused(tmp_path) -> None:
    counts, obs = make_counts(n_cells=120)
    bmi = np.where(obs["sample"] == "S1", 25.0, 30.0)
    bmi[np.flatnonzero(obs["sample"] == "S1")[0]] = np.nan
    obs["bmi"] = bmi
    path = _write(tmp_path / "a.h5ad", obs, counts)
    with pytest.raises(CytoatlasError, match=r"'bmi' is not constant within sample 'S1' \(values (nan, 25\.0|25\.0, "
                                             r"nan)\)"):
        cytoatlas.pseudobulk(tiny_config(path, sample_columns=["bmi"]), tmp_path / "out", n_bootstrap=0)


def test_a_missing_column_names_the_available_ones(atlas, tmp_path) -> None:
    path, _ = atlas
    with pytest.raises(CytoatlasError, match=r"obs has no sample column 'diagnosis'; available: age, batch, bmi, "
                                             r"cell_id_number, cell_type, disease, donor, lineage, sample, site"):
        cytoatlas.pseudobulk(tiny_config(path, sample_columns=["age", "diagnosis"]), tmp_path, n_bootstrap=0)


@pytest.mark.parametrize(("column", "levels", "what"), [
    ("cell_type", {"L1": "cell_type"}, "the level's label"), ("donor", {"L1": "cell_type"}, "the 'donor'"),
    ("n_cells", {"L1": "cell_type"}, "the 'n_cells'"), ("lineage", LEVELS, "the level's label"),
    ("sample", {"L1": "cell_type"}, "the 'sample'"),
])
def test_a_name_that_clashes_with_an_output_column_is_refused(atlas, tmp_path, column, levels, what) -> None:
    path, _ = atlas
    cfg = tiny_config(path, levels=levels, sample_columns=[column])
    with pytest.raises(CytoatlasError, match=rf"sample column '{column}' clashes with {what} column of level"):
        cytoatlas.pseudobulk(cfg, tmp_path, n_bootstrap=0)


@pytest.mark.parametrize(("value", "message"), [
    ("disease", "must be a list of obs column names"), ([1, 2], "must be a list of obs column names"),
    (["age", "age"], "names 'age' more than once"),
])
def test_the_registry_key_is_validated(value, message) -> None:
    with pytest.raises(CytoatlasError, match=message):
        tiny_config("x.h5ad", sample_columns=value)


def test_the_registry_key_reaches_the_config() -> None:
    assert tiny_config("x.h5ad").sample_columns == ()
    assert tiny_config("x.h5ad", sample_columns=["disease", "age"]).sample_columns == ("disease", "age")
