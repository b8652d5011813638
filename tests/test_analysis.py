"""low_rank_report on synthetic matrices (labelled synthetic) whose structure is known exactly."""

import numpy as np
import pytest

from hf_forgetting import ForgettingMatrix, low_rank_report
from hf_forgetting.analysis import additive_fit, low_rank_fit, r_squared, report_markdown


def synthetic(values):
    m, n = values.shape
    return ForgettingMatrix(values, [f"task{i}" for i in range(m)], [f"ex{j}" for j in range(n)])


def test_r2_by_rank_matches_numpy_svd_on_a_full_matrix():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(12, 3)) @ rng.normal(size=(3, 40)) + 0.1 * rng.normal(size=(12, 40))
    report = low_rank_report(synthetic(values), max_rank=5)
    u, s, vt = np.linalg.svd(values, full_matrices=False)
    for k in range(1, 6):
        fit = (u[:, :k] * s[:k]) @ vt[:k]
        expected = 1 - np.mean((values - fit) ** 2) / np.var(values)
        assert report["r2"][k] == pytest.approx(expected, abs=1e-5)
    assert report["r2"][3] > 0.95 > report["r2"][2]
    # the rank-1 multiplicative fit u_i v_j, by alternating least squares (not the SVD the report uses)
    u = np.ones(12)
    for _ in range(500):
        v = values.T @ u / (u @ u)
        u = values @ v / (v @ v)
    expected = 1 - np.mean((values - np.outer(u, v)) ** 2) / np.var(values)
    assert report["rank1_multiplicative_r2"] == pytest.approx(expected, abs=1e-6)
    assert report["singular_values"] == pytest.approx(list(s), rel=1e-5)


def test_additive_structure_is_recognised_and_row_column_means_are_partial():
    rng = np.random.default_rng(1)
    values = 0.3 + rng.normal(size=(10, 1)) + rng.normal(size=(1, 30))
    report = low_rank_report(synthetic(values), max_rank=3)
    assert report["additive_r2"] == pytest.approx(1.0, abs=1e-9)
    assert 0 < report["row_mean_r2"] < 1 and 0 < report["column_mean_r2"] < 1
    assert report["row_mean_r2"] + report["column_mean_r2"] == pytest.approx(1.0, abs=1e-9)


def test_missing_entries_are_imputed_not_counted():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(15, 2)) @ rng.normal(size=(2, 60))
    values = truth.copy()
    values[rng.random(values.shape) < 0.2] = np.nan
    report = low_rank_report(synthetic(values), max_rank=4)
    assert report["r2"][2] > 0.999
    assert report["observed_fraction"] == pytest.approx(np.mean(~np.isnan(values)))
    fit = low_rank_fit(values, 2)
    assert np.sqrt(np.mean((fit - truth)[np.isnan(values)] ** 2)) < 0.05  # gaps recovered too


def test_additive_fit_with_gaps_matches_least_squares():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(6, 9))
    values[rng.random(values.shape) < 0.3] = np.nan
    mu, rows, cols = additive_fit(values, iterations=500)
    observed = np.argwhere(~np.isnan(values))
    design = np.zeros((len(observed), 1 + 6 + 9))
    design[:, 0] = 1
    design[np.arange(len(observed)), 1 + observed[:, 0]] = 1
    design[np.arange(len(observed)), 7 + observed[:, 1]] = 1
    target = values[~np.isnan(values)]
    reference, *_ = np.linalg.lstsq(design, target, rcond=None)
    fitted = mu + rows[observed[:, 0]] + cols[observed[:, 1]]
    np.testing.assert_allclose(fitted, design @ reference, atol=1e-6)


def test_components_name_the_extremes():
    values = np.zeros((4, 6))
    values[0, :3] = 5.0  # task0 forgets ex0-ex2 strongly
    report = low_rank_report(synthetic(values + 0.01), max_rank=2)
    first = report["components"][0]
    assert first["top_tasks"][0] == "task0" and set(first["top_examples"][:3]) == {"ex0", "ex1", "ex2"}


def test_r_squared_and_errors():
    assert np.isnan(r_squared(np.ones((2, 2)), np.ones((2, 2))))
    with pytest.raises(ValueError, match="at least 2 observed"):
        low_rank_report(synthetic(np.full((2, 2), np.nan)))


def test_r2_is_reported_against_chance_and_on_hidden_entries():
    """Synthetic rank-2 matrix plus noise (labelled synthetic): its structure beats the row-permuted
    null at low rank and predicts hidden entries; pure noise gains R^2 with rank like its null and
    predicts nothing it did not see."""
    rng = np.random.default_rng(0)
    structured = rng.normal(size=(12, 2)) @ rng.normal(size=(2, 200)) + 0.1 * rng.normal(size=(12, 200))
    names = [f"t{i}" for i in range(12)], [f"e{j}" for j in range(200)]
    report = low_rank_report(ForgettingMatrix(structured, *names), max_rank=6)
    assert report["r2"][2] > 0.95 and report["null_r2"][2] < report["r2"][2] - 0.4 and report["heldout_r2"][2] > 0.9
    noise = low_rank_report(ForgettingMatrix(rng.normal(size=(12, 200)), *names), max_rank=6)
    assert abs(noise["r2"][3] - noise["null_r2"][3]) < 0.05  # rank alone buys this R^2
    assert noise["heldout_r2"][3] < 0.05
    quick = low_rank_report(ForgettingMatrix(structured, *names), max_rank=3, null_seeds=0, heldout_folds=0)
    assert quick["null_r2"] == {} and quick["heldout_r2"] == {}


def test_heatmap_shows_clipping_and_example_sources():
    """Synthetic values: 3 cells far beyond the rest, examples of two sources."""
    from hf_forgetting.plots import heatmap_figure, pyplot

    rng = np.random.default_rng(0)
    values = rng.normal(0, 0.05, size=(6, 40))
    values[0, :3] = 5.0
    ids = [f"{'reddit' if j % 2 else 'austen'}/{j}" for j in range(40)]
    figure = heatmap_figure(ForgettingMatrix(values, [f"task{i}" for i in range(6)], ids))
    colorbar = [axes for axes in figure.axes if axes.get_label() == "<colorbar>"][0]
    assert "3 cells beyond" in colorbar.get_ylabel()
    legend_texts = [text.get_text() for axes in figure.axes if axes.get_legend() for text in axes.get_legend().get_texts()]
    assert sorted(legend_texts) == ["austen", "reddit"]
    pyplot().close(figure)
    plain = heatmap_figure(synthetic(rng.normal(size=(4, 10))))
    colorbar = [axes for axes in plain.axes if axes.get_label() == "<colorbar>"][0]
    assert "beyond" in colorbar.get_ylabel()  # the 99th percentile clips the largest 1% of a normal sample too
    assert not [axes for axes in plain.axes if axes.get_legend()]  # ids without a source: no strip
    pyplot().close(plain)


def test_the_demo_matrix_report_is_the_one_recorded_before_the_scale_rewrite():
    """The shipped demo matrix's report, to every printed digit (3 decimals), as the previous implementation
    (a full SVD per rank and per imputation step) computed it: tests/data/demo_low_rank_report.json."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    recorded = json.loads((root / "tests" / "data" / "demo_low_rank_report.json").read_text())
    matrix = ForgettingMatrix.load(root / "spaces" / "forgetting-explorer" / "data" / "smollm2-135m-instruct-demo")
    report = low_rank_report(matrix, max_rank=9)
    for curve in ("r2", "null_r2", "heldout_r2"):
        assert {int(k): round(v, 3) for k, v in recorded[curve].items()} == {k: round(v, 3) for k, v in report[curve].items()}, curve
    for name in ("additive_r2", "rank1_multiplicative_r2", "row_mean_r2", "column_mean_r2"):
        assert round(report[name], 3) == round(recorded[name], 3), name
    np.testing.assert_allclose(report["singular_values"], recorded["singular_values"], rtol=1e-6)
    for got, want in zip(report["components"], recorded["components"]):
        assert round(got["energy"], 3) == round(want["energy"], 3)
        assert all(got[key] == want[key] for key in ("top_tasks", "bottom_tasks", "top_examples", "bottom_examples"))


def naive_hard_impute(values, rank, iterations=200, tol=1e-8):
    """The reference: a full SVD of the filled matrix at every step, gaps refilled from the additive fit."""
    observed = ~np.isnan(values)
    mu, rows, cols = additive_fit(values)
    filled = np.where(observed, values, mu + rows[:, None] + cols[None, :])
    previous, fit = np.inf, filled
    for _ in range(iterations):
        u, s, vt = np.linalg.svd(filled, full_matrices=False)
        fit = (u[:, :rank] * s[:rank]) @ vt[:rank]
        loss = np.mean((values[observed] - fit[observed]) ** 2)
        filled = np.where(observed, values, fit)
        if previous - loss < tol * max(previous, 1e-12):
            break
        previous = loss
    return fit


@pytest.mark.parametrize("shape", [(6, 30000), (30000, 6)], ids=["wide", "tall"])
def test_large_matrices_are_imputed_through_the_gram_matrix_as_a_full_svd_would(shape):
    """Synthetic rank-2 matrix with 2% of entries missing, large enough for the Gram path."""
    from hf_forgetting.fits import low_rank_fits, thin_svd

    rng = np.random.default_rng(5)
    values = rng.normal(size=(shape[0], 2)) @ rng.normal(size=(2, shape[1])) + 0.05 * rng.normal(size=shape)
    values[rng.random(shape) < 0.02] = np.nan
    fits = low_rank_fits(values, [1, 2, 3])
    for rank, fit in fits.items():
        np.testing.assert_allclose(fit, naive_hard_impute(values, rank), atol=1e-6)
    complete = np.nan_to_num(values)
    u, s, vt = thin_svd(complete)
    np.testing.assert_allclose(s, np.linalg.svd(complete, compute_uv=False), rtol=1e-8)
    np.testing.assert_allclose((u * s) @ vt, complete, atol=1e-8)


def test_reference_curves_of_a_wide_matrix_use_a_seeded_column_subsample():
    rng = np.random.default_rng(6)
    values = rng.normal(size=(8, 2)) @ rng.normal(size=(2, 3000)) + 0.1 * rng.normal(size=(8, 3000))
    matrix = ForgettingMatrix(values, [f"t{i}" for i in range(8)], [f"e{j}" for j in range(3000)])
    sampled = low_rank_report(matrix, max_rank=3, reference_columns=1000)
    assert sampled["reference_columns"] == 1000 and sampled == low_rank_report(matrix, max_rank=3, reference_columns=1000)
    whole = low_rank_report(matrix, max_rank=3)
    assert whole["reference_columns"] == 3000 and whole["r2"] == sampled["r2"]  # the main curve uses every example
    assert abs(whole["heldout_r2"][2] - sampled["heldout_r2"][2]) < 0.05
    assert "seeded subsample of 1,000 examples" in report_markdown(sampled, matrix)
