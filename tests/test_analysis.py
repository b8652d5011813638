"""low_rank_report on synthetic matrices (labelled synthetic) whose structure is known exactly."""

import numpy as np
import pytest

from hf_forgetting import ForgettingMatrix, low_rank_report
from hf_forgetting.analysis import additive_fit, low_rank_fit, r_squared


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
