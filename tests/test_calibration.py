"""Predictions calibrated to the new task's own probes, on synthetic matrices (labelled synthetic).

The known tasks are fine-tuned at one strength; a new task's row is the same kind of row at 0.2x, 1x or
3x that strength (a weaker or stronger fine-tune), or pure noise (probes with no signal). Every
predictor that uses example effects must then predict at least as well as the probes' own mean.
"""

import numpy as np
import pytest

from hf_forgetting import AdditivePredictor, ForgettingMatrix, KNNPredictor, MFPredictor
from hf_forgetting.completion.calibration import anchor_to_probes, fold_in_with_loading

M, N, K, NOISE = 40, 400, 30, 0.01


def strength_matrix(rng):
    """Forgetting-like rows: a shared example effect (forgettability), rank-2 structure, seed noise."""
    effect = np.abs(rng.normal(0.04, 0.03, size=N))
    structure = 0.02 * rng.normal(size=(M + 10, 2)) @ rng.normal(size=(2, N))
    truth = 0.01 * rng.normal(size=(M + 10, 1)) + effect[None, :] * rng.uniform(0.7, 1.3, size=(M + 10, 1)) + structure
    values = truth + rng.normal(0, NOISE, truth.shape)
    names = [f"task{i}" for i in range(M + 10)], [f"ex{j}" for j in range(N)]
    return ForgettingMatrix(values[:M], names[0][:M], names[1]), values[M:]


def relative_errors(predictor, strength, seed=0):
    """RMSE on the unrevealed entries of 10 new rows scaled by `strength`, and the probe mean's."""
    rng = np.random.default_rng(seed)
    matrix, new_rows = strength_matrix(rng)
    predictor.fit(matrix)
    errors, baseline = [], []
    for row in new_rows * strength:
        known = rng.choice(N, K, replace=False)
        hidden = np.setdiff1d(np.arange(N), known)
        predicted = predictor.predict([matrix.example_ids[j] for j in known], row[known])
        errors.append(np.sqrt(np.mean((predicted[hidden] - row[hidden]) ** 2)))
        baseline.append(np.sqrt(np.mean((row[known].mean() - row[hidden]) ** 2)))
    return float(np.mean(errors)), float(np.mean(baseline))


@pytest.mark.parametrize("make", [MFPredictor, KNNPredictor, AdditivePredictor], ids=lambda make: make.__name__)
def test_a_weaker_or_stronger_fine_tune_is_predicted_as_well_as_one_of_the_matrixs_strength(make):
    ratios = {}
    for strength in (0.2, 1.0, 3.0):
        error, probe_mean = relative_errors(make(), strength)
        ratios[strength] = error / probe_mean
    assert all(ratio < 0.8 for ratio in ratios.values()), ratios  # well below the probes' own mean, at every strength
    assert max(ratios.values()) < 1.5 * min(ratios.values()), ratios  # the same relative accuracy


def test_the_loading_is_fitted_from_the_probes_and_shrunk_toward_one():
    rng = np.random.default_rng(0)
    matrix, new_rows = strength_matrix(rng)
    predictor = MFPredictor(rank=2).fit(matrix)
    assert 0.5 <= predictor.loading_prior <= 30
    known = rng.choice(N, K, replace=False)
    ids = [matrix.example_ids[j] for j in known]
    loadings = [predictor.task_fit(known, row[known])[1] for row in (0.2 * new_rows[0], new_rows[0], 3 * new_rows[0])]
    assert loadings[0] < 0.45 < 0.7 < loadings[1] < 1.3 < 2.2 < loadings[2], loadings
    # with no probe on the example effects (all b_j = 0 where measured), the prior keeps the loading at 1
    design = np.stack([np.ones(5), np.zeros(5)], axis=1)
    assert fold_in_with_loading(design, np.full(5, 0.2), 1.0, predictor.loading_prior)[1] == pytest.approx(1.0)
    assert np.isfinite(predictor.predict(ids, 0.2 * new_rows[0][known])).all()


def test_probes_without_signal_are_predicted_at_their_mean_and_said_to_be_within_noise():
    """Pure measurement noise around 0: the row must not claim forgetting the probes do not show."""
    rng = np.random.default_rng(1)
    matrix, _ = strength_matrix(rng)
    predictor = MFPredictor(rank=2).fit(matrix)
    known = rng.choice(N, K, replace=False)
    probes = rng.normal(0, 0.005, size=K)
    completed = predictor.complete_row([matrix.example_ids[j] for j in known], probes)
    assert completed.probe_weight < 0.3 and completed.forgetting_within_noise
    spread = np.abs(completed.values - probes.mean()).max()
    assert spread <= 0.3 * np.abs(matrix.values).max()  # not the matrix's +0.1-0.2 nats
    assert (completed.lower <= completed.values).all() and (completed.values <= completed.upper).all()
    unanchored = predictor._row_function()(known, probes)
    assert np.abs(unanchored - probes.mean()).max() > spread  # what anchoring removed


def test_intervals_cover_about_95_percent_of_unrevealed_entries():
    rng = np.random.default_rng(2)
    matrix, new_rows = strength_matrix(rng)
    predictor = MFPredictor(rank=2).fit(matrix)
    covered = []
    for strength in (0.2, 1.0, 3.0):
        for row in new_rows * strength:
            known = rng.choice(N, K, replace=False)
            hidden = np.setdiff1d(np.arange(N), known)
            completed = predictor.complete_row([matrix.example_ids[j] for j in known], row[known])
            covered.append(np.mean((completed.lower[hidden] <= row[hidden]) & (row[hidden] <= completed.upper[hidden])))
    assert 0.85 <= np.mean(covered) <= 0.99, np.mean(covered)


def test_anchoring_against_a_naive_leave_one_out_and_with_too_few_probes():
    rng = np.random.default_rng(3)
    effect = rng.normal(size=50)
    columns = np.arange(0, 50, 5)
    values = 0.5 * effect[columns] + rng.normal(0, 0.3, size=10)

    def fold_in(cols, vals):  # a predictor that says "twice the effect"
        return vals.mean() + 2 * (effect - effect[cols].mean())

    completed = anchor_to_probes(fold_in, columns, values)
    deviations, errors = [], []
    for i in range(10):
        others = [j for j in range(10) if j != i]
        anchor = values[others].mean()
        deviations.append(fold_in(columns[others], values[others])[columns[i]] - anchor)
        errors.append(values[i] - anchor)
    weight = np.clip(np.dot(deviations, errors) / np.dot(deviations, deviations), 0, 1)
    assert completed.probe_weight == pytest.approx(weight)
    np.testing.assert_allclose(completed.values, values.mean() + weight * (fold_in(columns, values) - values.mean()), rtol=1e-5)
    few = anchor_to_probes(fold_in, columns[:3], values[:3])
    assert few.probe_weight == 1.0 and np.isnan(few.lower).all()


def test_the_new_rows_protocol_leaves_each_rows_task_out_and_compares_with_both_baselines(tmp_path, capsys):
    from hf_forgetting import cli
    from hf_forgetting.completion.evaluation import evaluate_on_new_rows

    rng = np.random.default_rng(4)
    matrix, new_rows = strength_matrix(rng)
    # the new rows: two unseen tasks, and task0 of the matrix again, each at 0.2x and 3x
    rows = np.vstack([new_rows[0], new_rows[1], matrix.values[0], ] * 2) * np.repeat([0.2, 3.0], 3)[:, None]
    tasks = ["new0", "new1", "task0"] * 2
    strengths = ["x0.2"] * 3 + ["x3"] * 3
    tested = ForgettingMatrix(rows, [f"{t}@{s}" for t, s in zip(tasks, strengths)], matrix.example_ids,
                              metadata={"row_tasks": tasks, "row_strengths": strengths})
    fitted_on = []

    class RecordingMF(MFPredictor):
        def fit(self, data, **kwargs):
            fitted_on.append(list(data.task_ids))
            return super().fit(data, **kwargs)

    result = evaluate_on_new_rows([RecordingMF, AdditivePredictor], matrix, tested, k=K, seeds=range(3))
    assert fitted_on == [matrix.task_ids, matrix.task_ids, matrix.task_ids[1:]]  # task0's row is not in its own fit
    assert set(result["groups"]) == {"x0.2", "x3"} and result["groups"]["x3"]["rows"] == 3
    for group in result["groups"].values():
        assert group["RecordingMF"]["rmse"] < 0.8 * group["probe_mean_rmse"]
        assert group["RecordingMF"]["top10pct_precision"] > group["column_mean_top10"] - 0.05
    matrix.save(tmp_path / "matrix")
    tested.save(tmp_path / "new")
    assert cli.main(["evaluate", str(tmp_path / "matrix"), "--test_matrix", str(tmp_path / "new"), "--num_seeds", "2",
                     "--predictors", "additive", "mf"]) == 0
    out = capsys.readouterr().out
    assert "| x0.2 | 3 |" in out and "MFPredictor RMSE (x probe mean)" in out and "column-mean top-10%" in out


def test_on_the_shipped_strength_shift_rows_every_default_predictor_beats_the_probe_mean():
    """Real rows (benchmarks/data): 4 tasks at x0.25, x1, x4 and LoRA, fitted on the shipped demo matrix."""
    from pathlib import Path

    from hf_forgetting.completion.evaluation import evaluate_on_new_rows

    root = Path(__file__).resolve().parents[1]
    matrix = ForgettingMatrix.load(root / "spaces" / "forgetting-explorer" / "data" / "smollm2-135m-instruct-demo")
    new_rows = ForgettingMatrix.load(root / "benchmarks" / "data" / "smollm2-135m-instruct-strength-shift")
    assert set(new_rows.metadata["row_strengths"]) == {"x0.25", "x1", "x4", "lora"}
    result = evaluate_on_new_rows([MFPredictor, KNNPredictor, AdditivePredictor], matrix, new_rows, k=K, seeds=range(10))
    for strength, group in result["groups"].items():
        for name in ("MFPredictor", "KNNPredictor", "AdditivePredictor"):
            assert group[name]["rmse"] < 0.95 * group["probe_mean_rmse"], (strength, name, group)


@pytest.mark.parametrize("make", [MFPredictor, KNNPredictor, AdditivePredictor], ids=lambda make: make.__name__)
def test_the_uncalibrated_row_holds_the_loading_at_one_and_is_not_anchored(make):
    """What replay orders by: the row at the matrix's strength, against a naive fold-in with the loading fixed."""
    rng = np.random.default_rng(7)
    matrix, new_rows = strength_matrix(rng)
    predictor = make().fit(matrix)
    known = rng.choice(N, K, replace=False)
    ids, weak = [matrix.example_ids[j] for j in known], 0.2 * new_rows[0][known]
    uncalibrated = predictor.predict(ids, weak, calibrated=False)
    calibrated = predictor.predict(ids, weak)
    assert np.std(uncalibrated) > 2 * np.std(calibrated)  # the matrix's strength, not the weak row's
    if make is AdditivePredictor:  # mu + offset + b_j with the offset's ridge, by hand
        residual = weak - predictor.mu - predictor.example_bias[known]
        offset = residual.sum() / (K + predictor.reg)
        np.testing.assert_allclose(uncalibrated, predictor.mu + offset + predictor.example_bias, atol=1e-6)
