"""Activity inference against secactpy 0.3.1, the closed form against brute force, and the demo's planted truth."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import cytoatlas
from cytoatlas._activity import activity, activity_path, load_signatures
from cytoatlas._activity.ridge import RidgeModel, exact_test, standardise_columns
from cytoatlas.cli import main
from cytoatlas.demo import demo_config
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.results import unique_symbols


@pytest.fixture(scope="module")
def pb_files(demo_h5ad: Path, tmp_path_factory) -> dict[str, Path]:
    """Level L2 of the 6,000-cell demo atlas: cell type, sample x cell type and bootstrap files."""
    out = tmp_path_factory.mktemp("pb")
    paths = cytoatlas.pseudobulk(demo_config(demo_h5ad), out, levels=["L2"], n_bootstrap=40, bootstrap_seed=1)
    return {p.name.removeprefix("demo_pseudobulk_l2").removesuffix(".h5ad").lstrip("_") or "main": p for p in paths}


@pytest.fixture(scope="module")
def exact_out(pb_files: dict[str, Path], tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("act")
    activity(list(pb_files.values()), out, signatures=["cytosig", "secact"], centre="within:cell_type")
    return out


def _expression(path: Path) -> pd.DataFrame:
    """The pseudobulk as secactpy takes it: genes (symbols) x columns."""
    pb = ad.read_h5ad(path)
    return pd.DataFrame(pb.X.T.astype(np.float64), index=pb.var["gene_symbol"].astype(str).to_numpy(),
                        columns=pb.obs_names)


def _secactpy(expr: pd.DataFrame, sig: str, n_rand: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    import secactpy  # the `parity` extra: not a dependency, and absent from the numpy 2 environments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return secactpy.secact_activity_inference(expr, sig_matrix=sig, n_rand=n_rand, seed=seed, verbose=False)


@pytest.mark.parity
@pytest.mark.parametrize("sig", ["cytosig", "secact"])
def test_beta_and_exact_z_match_secactpy(pb_files: dict[str, Path], exact_out: Path, sig: str) -> None:
    ref = _secactpy(_expression(pb_files["main"]), sig, n_rand=1000)
    ours = ad.read_h5ad(activity_path(exact_out, pb_files["main"], sig))
    assert list(ours.var_names) == list(ref["beta"].index)  # SecAct: grouped, expanded back, sorted
    assert list(ours.obs_names) == list(ref["beta"].columns)
    beta_ref = ref["beta"].to_numpy().T
    np.testing.assert_allclose(ours.layers["beta"], beta_ref, rtol=1e-9, atol=1e-12 * np.abs(beta_ref).max())
    # exact z is the limit of secactpy's 1,000-permutation estimate: equal up to its Monte-Carlo error,
    # whose sd is ~sqrt((1 + z^2 / 2) / n_rand) (mean and sd of the permutation null both estimated)
    z, z_ref = ours.X, ref["zscore"].to_numpy().T
    assert np.corrcoef(z.ravel(), z_ref.ravel())[0, 1] >= 0.999
    mc_sd = np.sqrt((1 + z**2 / 2) / 1000)
    assert np.all(np.abs(z - z_ref) <= 5 * mc_sd)
    assert np.abs(z - z_ref).max() > 0  # two different estimators, not a copy
    assert ours.uns["method"] == "exact" and ours.uns["signature"]["name"] == sig


def test_closed_form_is_the_permutation_distribution() -> None:
    """Brute force over all 7! gene permutations: mean and variance of beta equal the closed form."""
    rng = np.random.default_rng(3)
    x = standardise_columns(rng.normal(size=(7, 3)))
    y = rng.normal(size=(7, 2)) * [1.0, 3.0] + [0.0, 2.0]  # unscaled: the general formula, not just z = b/|T|
    model = RidgeModel.fit(x, lambda_=0.7)
    t = np.linalg.solve(x.T @ x + 0.7 * np.eye(3), x.T)  # T formed independently
    np.testing.assert_allclose(model.projection(), t, rtol=1e-10)
    perms = np.array(list(itertools.permutations(range(7))))
    betas = np.stack([t @ y[p] for p in perms])
    res = exact_test(model, y)
    np.testing.assert_allclose(res["beta"], t @ y)
    np.testing.assert_allclose(res["se"], betas.std(axis=0), rtol=1e-10)
    np.testing.assert_allclose(res["zscore"], (t @ y - betas.mean(axis=0)) / betas.std(axis=0), rtol=1e-9)
    # with secactpy's scaling the z is beta / sqrt(diag(T T'))
    ys = standardise_columns(y)
    np.testing.assert_allclose(exact_test(model, ys)["zscore"], (t @ ys) / np.sqrt(np.diag(t @ t.T))[:, None],
                               rtol=1e-10)


def test_constant_column_gives_zero_not_nan() -> None:
    model = RidgeModel.fit(standardise_columns(np.random.default_rng(0).normal(size=(20, 4))))
    res = exact_test(model, standardise_columns(np.ones((20, 1))))
    assert np.all(res["zscore"] == 0) and np.all(res["pvalue"] == 1)


def test_planted_responses_are_the_top_activity(tmp_path: Path) -> None:
    from cytoatlas.demo_atlas import write_demo_atlas

    # enough cells that every planted (donor, cell type) pair, dendritic cells included, is a group
    atlas = write_demo_atlas(tmp_path / "atlas.h5ad", n_cells=24_000, n_donors=12, seed=2)
    paths = cytoatlas.pseudobulk(demo_config(atlas), tmp_path / "pb", levels=["L2"], n_bootstrap=0)
    samples = next(p for p in paths if p.name.endswith("_samples.h5ad"))
    (path,) = activity([samples], tmp_path / "act", signatures=["cytosig"], centre="within:cell_type")
    act = ad.read_h5ad(path)
    assert act.uns["centre"] == "within:cell_type"
    truth = ad.read_h5ad(atlas, backed="r").uns["planted_responses"]
    top = act.var_names.to_numpy()[np.argmax(act.X, axis=1)]
    for cytokine, l2, donors in zip(truth["cytokine"], truth["cell_type_l2"], truth["donors"], strict=True):
        planted = ((act.obs["cell_type"] == l2) & act.obs["donor"].isin(donors.split(","))).to_numpy()
        same_type = (act.obs["cell_type"] == l2).to_numpy() & ~planted
        assert planted.sum() >= 3 and same_type.sum() >= 3, (cytokine, l2)
        # the planted cytokine leads the planted groups' mean activity, and most of them one by one
        assert act.var_names[np.argmax(act.X[planted].mean(axis=0))] == cytokine, (cytokine, l2)
        assert (top[planted] == cytokine).mean() >= 0.7, (cytokine, l2)
        # and leads nowhere else: not the unaffected donors of that cell type, rarely any other group
        assert act.var_names[np.argmax(act.X[same_type].mean(axis=0))] != cytokine, (cytokine, l2)
        assert (top[~planted] == cytokine).mean() <= 0.2, (cytokine, l2)


def test_within_centring_equals_each_group_alone(pb_files: dict[str, Path], exact_out: Path, tmp_path: Path) -> None:
    whole = ad.read_h5ad(activity_path(exact_out, pb_files["samples"], "cytosig"))
    pb = ad.read_h5ad(pb_files["samples"])
    for cell_type in pb.obs["cell_type"].unique()[:3]:
        part = tmp_path / f"part_{cell_type.replace(' ', '_')}.h5ad"
        pb[pb.obs["cell_type"] == cell_type].copy().write_h5ad(part)
        (alone_path,) = activity([part], tmp_path, signatures=["cytosig"])
        alone = ad.read_h5ad(alone_path)
        rows = whole.obs["cell_type"] == cell_type
        np.testing.assert_allclose(whole.X[rows.to_numpy()], alone.X, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(whole.layers["beta"][rows.to_numpy()], alone.layers["beta"], rtol=1e-9, atol=1e-15)


def test_main_file_gets_bootstrap_intervals(pb_files: dict[str, Path], exact_out: Path) -> None:
    main_act = ad.read_h5ad(activity_path(exact_out, pb_files["main"], "cytosig"))
    boot = ad.read_h5ad(activity_path(exact_out, pb_files["resampled"], "cytosig"))
    for layer in ("z_ci_low", "z_ci_high", "z_boot_sd", "z_boot_mean"):
        assert layer in main_act.layers
    resampled = main_act.obs["n_boot"].to_numpy() > 0
    assert resampled.any()
    # recompute one row's interval from the bootstrap file
    i = int(np.flatnonzero(resampled)[0])
    z = boot.X[(boot.obs["cell_type"] == main_act.obs["cell_type"].iloc[i]).to_numpy()]
    np.testing.assert_allclose(main_act.layers["z_ci_low"][i], np.quantile(z, 0.025, axis=0))
    np.testing.assert_allclose(main_act.layers["z_boot_sd"][i], z.std(axis=0, ddof=1))
    assert np.isnan(main_act.layers["z_ci_low"][~resampled]).all()  # not resampled: NaN, never 0
    low, high, z_main = (main_act.layers[k][resampled] for k in ("z_ci_low", "z_ci_high", "z_boot_mean"))
    assert np.all(low <= high)
    inside = (main_act.X[resampled] >= low) & (main_act.X[resampled] <= high)
    assert inside.mean() >= 0.8
    table = pd.read_csv(activity_path(exact_out, pb_files["main"], "cytosig").with_name(
        "demo_pseudobulk_l2_cytosig_activity_ci.csv"))
    assert len(table) == main_act.n_obs * main_act.n_vars
    assert set(table.columns) >= {"cell_type", "signature", "z", "z_ci_low", "z_ci_high", "z_boot_sd", "n_boot"}


def test_intervals_narrow_as_donors_increase(tmp_path: Path) -> None:
    from cytoatlas.demo_atlas import write_demo_atlas

    widths = []
    for n_donors in (6, 30):
        atlas = write_demo_atlas(tmp_path / f"a{n_donors}.h5ad", n_cells=9_000, n_donors=n_donors, seed=5)
        paths = cytoatlas.pseudobulk(demo_config(atlas), tmp_path / f"pb{n_donors}", levels=["L1"], n_bootstrap=30,
                                     min_samples=5)
        main_file = next(p for p in paths if p.name.endswith("_l1.h5ad"))
        (act_file,) = [p for p in activity(paths, tmp_path / f"act{n_donors}", signatures=["cytosig"])
                       if p.name == activity_path(".", main_file, "cytosig").name]
        act = ad.read_h5ad(act_file)
        widths.append(np.nanmedian(act.layers["z_ci_high"] - act.layers["z_ci_low"]))
    assert widths[1] < 0.8 * widths[0], widths


def test_duplicate_symbols_keep_the_most_expressed() -> None:
    symbols = np.array(["A", "B", "A", "", "C", "B"], dtype=object)
    means = np.array([1.0, 2.0, 3.0, 9.0, 0.5, 2.0])
    assert unique_symbols(symbols, means).tolist() == [1, 2, 4]  # A: the 2nd (higher), B: tie -> first
    assert unique_symbols(symbols, None).tolist() == [0, 1, 4]


def _lincytosig_like(path: Path) -> pd.DataFrame:
    """A synthetic matrix of LinCytoSig's form: CytoSig columns per cell type, perturbed."""
    cyto = load_signatures("cytosig")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(cyto.matrix, index=cyto.genes)[[list(cyto.signatures).index(c) for c in ("IFNG", "IL4")]]
    cols = {}
    for cell_type in ("Monocyte", "B_Cell", "T_CD4", "Hepatocyte"):
        for j, c in enumerate(("IFNG", "IL4")):
            cols[f"{cell_type}__{c}"] = frame.iloc[:, j].to_numpy() + rng.normal(0, 0.05, len(frame))
    df = pd.DataFrame(cols, index=frame.index)
    df.to_csv(path, sep="\t")
    return df


def test_lincytosig_groups_are_matched_and_unmapped_reported(pb_files: dict[str, Path], tmp_path: Path) -> None:
    sig_file = tmp_path / "LinCytoSig.tsv.gz"
    _lincytosig_like(sig_file)
    (path,) = activity([pb_files["main"]], tmp_path / "out", signatures=["lincytosig"], signature_files=[sig_file],
                       cell_type_map={"NK": "T_CD4"})
    act = ad.read_h5ad(path)
    assert act.n_vars == 8 and set(act.var["cell_type"]) == {"Monocyte", "B_Cell", "T_CD4", "Hepatocyte"}
    mapped = dict(zip(act.obs["cell_type"], act.obs["signature_cell_type"], strict=True))
    assert mapped["Monocytes"] == "Monocyte" and mapped["B"] == "B_Cell" and mapped["CD4 T"] == "T_CD4"
    assert mapped["NK"] == "T_CD4"  # the user's override wins
    assert "Dendritic cells" in list(act.uns["cell_types"]["unmapped"])
    matched = act.layers["matched"]
    for i, ct in enumerate(act.obs["signature_cell_type"]):
        assert matched[i].tolist() == [v == ct for v in act.var["cell_type"]]


def _no_outputs(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize(("case", "message"), [
    ("no_overlap", "of the 3 nooverlap genes"),
    ("duplicate_genes", "duplicated gene name"),
    ("nan", "missing (NaN)"),
    ("unmapped_override", "not a cell type of the signature file"),
    ("not_pseudobulk", "not a cytoatlas pseudobulk file"),
    ("bad_centre_column", "no such obs column"),
    ("lincytosig_without_file", "not redistributable"),
])
def test_bad_input_is_refused_and_nothing_written(pb_files: dict[str, Path], demo_h5ad: Path, tmp_path: Path,
                                                  case: str, message: str) -> None:
    out = tmp_path / "out"
    files, kwargs = [pb_files["main"]], {"signatures": ["cytosig"]}
    if case == "no_overlap":
        f = tmp_path / "nooverlap.tsv"
        pd.DataFrame({"S1": [1.0, 2.0, 3.0]}, index=["XYZ1", "XYZ2", "XYZ3"]).to_csv(f, sep="\t")
        kwargs = {"signature_files": [f], "signatures": ["nooverlap"]}
    elif case in ("duplicate_genes", "nan"):
        f = tmp_path / f"{case}.tsv"
        values = [1.0, np.nan, 3.0] if case == "nan" else [1.0, 2.0, 3.0]
        genes = ["CD4", "CD8A", "CD4"] if case == "duplicate_genes" else ["CD4", "CD8A", "IL7R"]
        pd.DataFrame({"S1": values}, index=genes).to_csv(f, sep="\t")
        kwargs = {"signature_files": [f], "signatures": [case]}
    elif case == "unmapped_override":
        f = tmp_path / "LinCytoSig.tsv"
        _lincytosig_like(f)
        kwargs = {"signature_files": [f], "signatures": ["lincytosig"], "cell_type_map": {"B": "Plasma_Cell"}}
    elif case == "not_pseudobulk":
        files = [demo_h5ad]
    elif case == "bad_centre_column":
        files, kwargs["centre"] = [pb_files["samples"]], "within:tissue"
    elif case == "lincytosig_without_file":
        kwargs = {"signatures": ["lincytosig"]}
    with pytest.raises(CytoatlasError, match=message.replace("(", r"\(").replace(")", r"\)")):
        activity(files, out, **kwargs)
    assert _no_outputs(out)


def test_cli_activity_and_signatures(pb_files: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert main(["activity", str(pb_files["main"]), "--signatures", "cytosig", "--out", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == activity_path(tmp_path, pb_files["main"], "cytosig") and path.is_file()
    assert main(["activity", "--out", str(tmp_path / "x"), "--centre", "inside"]) == 2
    assert "centre must be" in capsys.readouterr().err
    assert main(["signatures"]) == 0
    listing = capsys.readouterr().out
    assert "cytosig" in listing and "4,881" in listing and "secact" in listing and "1,170" in listing


def test_signature_cache_is_used_and_equal(monkeypatch) -> None:
    first = load_signatures("cytosig")
    import cytoatlas._activity.signatures as signatures

    monkeypatch.setattr(signatures, "read_signature_file", lambda *a, **k: pytest.fail("cache not used"))
    again = load_signatures("cytosig")
    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert list(first.signatures) == list(again.signatures) and first.version == again.version


def test_cli_atlas_mode_uses_the_registry(demo_h5ad: Path, tmp_path: Path, capsys) -> None:
    """`--atlas` takes every pseudobulk file of OUT/pseudobulk and the entry's signature files and cell-type map."""
    sig_file = tmp_path / "LinCytoSig.tsv.gz"
    _lincytosig_like(sig_file)
    reg = tmp_path / "reg.toml"
    reg.write_text(f'[atlas.demo]\nh5ad = "{demo_h5ad}"\nsample_col = "sample"\nsignature_files = ["{sig_file}"]\n'
                   '[atlas.demo.levels]\nL1 = "cell_type_l1"\n[atlas.demo.cell_type_map]\n"Myeloid" = "Monocyte"\n')
    out = tmp_path / "results"
    assert main(["pseudobulk", "--registry", str(reg), "--atlas", "demo", "--out", str(out / "pseudobulk"),
                 "--n-bootstrap", "10"]) == 0
    capsys.readouterr()
    assert main(["activity", "--registry", str(reg), "--atlas", "demo", "--out", str(out),
                 "--signatures", "cytosig,lincytosig"]) == 0
    written = sorted(Path(p).name for p in capsys.readouterr().out.split())
    stems = ["demo_pseudobulk_l1", "demo_pseudobulk_l1_resampled", "demo_pseudobulk_l1_samples"]
    assert written == sorted([f"{s}_{k}_activity.h5ad" for s in stems for k in ("cytosig", "lincytosig")]
                             + ["demo_pseudobulk_l1_cytosig_activity_ci.csv",
                                "demo_pseudobulk_l1_lincytosig_activity_ci.csv"])
    lin = ad.read_h5ad(out / "activity" / "demo_pseudobulk_l1_lincytosig_activity.h5ad")
    assert dict(zip(lin.obs["cell_type"], lin.obs["signature_cell_type"], strict=True))["Myeloid"] == "Monocyte"
    assert main(["activity", "--atlas", "demo", "--registry", str(reg), "--out", str(tmp_path / "empty")]) == 2
    assert "run `cytoatlas pseudobulk" in capsys.readouterr().err


@pytest.mark.parity
@pytest.mark.parametrize(("sig", "n_rand"), [("cytosig", 1000), ("secact", 100)])
def test_permutation_method_reproduces_secactpy(pb_files: dict[str, Path], tmp_path: Path, sig: str,
                                                n_rand: int) -> None:
    ref = _secactpy(_expression(pb_files["main"]), sig, n_rand=n_rand, seed=3)
    (path,) = activity([pb_files["main"]], tmp_path, signatures=[sig], method="permutation", n_rand=n_rand,
                     permutation_seed=3)
    ours = ad.read_h5ad(path)
    assert list(ours.var_names) == list(ref["beta"].index)
    np.testing.assert_allclose(ours.X, ref["zscore"].to_numpy().T, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.layers["se"], ref["se"].to_numpy().T, rtol=1e-6, atol=0)
    np.testing.assert_array_equal(ours.layers["pvalue"], ref["pvalue"].to_numpy().T)
    assert ours.uns["method"] == "permutation" and ours.uns["n_rand"] == n_rand and ours.uns["seed"] == 3
