"""Predictors on synthetic low-rank-plus-noise matrices (labelled synthetic) where the truth is known.

Each predictor is fitted on 50 training rows; for 10 held-out rows it sees k = 30 noisy entries and
must recover the noise-free truth of the other entries.
"""

import json

import numpy as np
import pytest

from hf_forgetting import (
    AdditivePredictor,
    ColumnMeanPredictor,
    ForgettingMatrix,
    ForgettingPredictor,
    KNNPredictor,
    LogisticMFPredictor,
    MFPredictor,
    TensorPredictor,
    evaluate_predictor,
)
from hf_forgetting.completion import NotFittedError
from hf_forgetting.completion.evaluation import binary_metrics, top_fraction_precision

NOISE = 0.05
M, N, K = 60, 600, 30


def make_matrix(truth, rng, metric="nll_increase"):
    values = truth + rng.normal(0, NOISE, truth.shape) if metric == "nll_increase" else truth
    return ForgettingMatrix(values, [f"task{i}" for i in range(len(values))], [f"ex{j}" for j in range(truth.shape[1])], metric)


def low_rank_truth(rng, rank=3):
    return 0.3 * rng.normal(size=(M, rank)) @ rng.normal(size=(rank, N)) + 0.5 * rng.normal(size=(M, 1)) + 0.5 * rng.normal(size=(1, N))


def heldout_rmse(predictor, matrix, truth, rng):
    train = ForgettingMatrix(matrix.values[:50], matrix.task_ids[:50], matrix.example_ids)
    predictor.fit(train)
    errors = []
    for row in range(50, M):
        known = rng.choice(N, K, replace=False)
        predicted = predictor.predict([matrix.example_ids[j] for j in known], matrix.values[row, known])
        hidden = np.setdiff1d(np.arange(N), known)
        errors.append(np.sqrt(np.mean((predicted[hidden] - truth[row, hidden]) ** 2)))
    return float(np.mean(errors))


def test_mf_recovers_a_low_rank_matrix_to_the_noise_floor():
    rng = np.random.default_rng(0)
    truth = low_rank_truth(rng)
    matrix = make_matrix(truth, rng)
    assert heldout_rmse(MFPredictor(rank=3), matrix, truth, rng) < NOISE
    assert heldout_rmse(ColumnMeanPredictor(), matrix, truth, rng) > 5 * NOISE  # the task matters


def test_additive_recovers_an_additive_matrix():
    rng = np.random.default_rng(1)
    truth = 0.2 + rng.normal(size=(M, 1)) + rng.normal(size=(1, N))
    matrix = make_matrix(truth, rng)
    assert heldout_rmse(AdditivePredictor(), matrix, truth, rng) < 2 * NOISE
    assert heldout_rmse(ColumnMeanPredictor(), matrix, truth, rng) > 10 * NOISE


def test_knn_recovers_clustered_tasks():
    """Tasks come in 3 clusters (identical up to an offset): neighbours are informative."""
    rng = np.random.default_rng(2)
    prototypes = rng.normal(size=(3, N))
    truth = prototypes[np.arange(M) % 3] + 0.3 * rng.normal(size=(M, 1))
    matrix = make_matrix(truth, rng)
    knn = heldout_rmse(KNNPredictor(k=5), matrix, truth, rng)
    additive = heldout_rmse(AdditivePredictor(), matrix, truth, rng)
    assert knn < 2 * NOISE < additive


def test_missing_training_entries_are_tolerated():
    rng = np.random.default_rng(3)
    truth = low_rank_truth(rng)
    values = truth + rng.normal(0, NOISE, truth.shape)
    values[:50][rng.random((50, N)) < 0.3] = np.nan
    matrix = ForgettingMatrix(values, [f"t{i}" for i in range(M)], [f"e{j}" for j in range(N)])
    for predictor in (MFPredictor(rank=3), KNNPredictor(), AdditivePredictor()):
        assert np.isfinite(heldout_rmse(predictor, matrix, truth, rng))
    assert heldout_rmse(MFPredictor(rank=3), matrix, truth, rng) < 1.5 * NOISE


def test_logistic_mf_on_a_binary_matrix_beats_column_means():
    rng = np.random.default_rng(4)
    logits = 2 * rng.normal(size=(M, 2)) @ rng.normal(size=(2, N)) - 0.5
    probability = 1 / (1 + np.exp(-logits))
    matrix = make_matrix((rng.random(probability.shape) < probability).astype(float), rng, metric="em_drop")
    tasks = matrix.task_ids[50:]
    logistic = evaluate_predictor(LogisticMFPredictor(rank=2), matrix, tasks, k=K, seeds=[0, 1])
    baseline = evaluate_predictor(ColumnMeanPredictor(), matrix, tasks, k=K, seeds=[0, 1])
    from hf_forgetting.completion.evaluation import auc_roc

    oracle = np.mean([auc_roc(matrix.values[i] > 0, probability[i]) for i in range(50, M)])  # true probabilities
    assert logistic["metrics"]["auc"] > oracle - 0.06
    assert logistic["metrics"]["auc"] > baseline["metrics"]["auc"] + 0.2
    assert logistic["metrics"]["f1"] > baseline["metrics"]["f1"]
    row = LogisticMFPredictor(rank=2).fit(matrix).predict(matrix.example_ids[:30], matrix.values[0, :30])
    assert ((row >= 0) & (row <= 1)).all()


def test_tensor_predictor_uses_other_models_rows_of_the_same_task():
    rng = np.random.default_rng(5)
    models, tasks, rank = 3, 30, 3
    a, b, c = rng.normal(size=(models, rank)), rng.normal(size=(tasks, rank)), rng.normal(size=(N, rank))
    truth = 0.3 * np.einsum("mr,tr,nr->mtn", a, b, c)
    noisy = truth + rng.normal(0, NOISE, truth.shape)
    ids, names = [f"e{j}" for j in range(N)], [f"t{i}" for i in range(tasks)]
    matrices = {
        f"model{m}": ForgettingMatrix(noisy[m, : (25 if m == 2 else tasks)], names[: (25 if m == 2 else tasks)], ids)
        for m in range(models)
    }
    predictor = TensorPredictor(rank=3).fit(matrices)
    with_names, without = [], []
    for t in range(25, tasks):
        known = rng.choice(N, 10, replace=False)
        hidden = np.setdiff1d(np.arange(N), known)
        ids_known = [ids[j] for j in known]
        guess = predictor.predict(ids_known, noisy[2, t, known], model="model2", task=names[t])
        blind = predictor.predict(ids_known, noisy[2, t, known])
        with_names.append(np.sqrt(np.mean((guess[hidden] - truth[2, t, hidden]) ** 2)))
        without.append(np.sqrt(np.mean((blind[hidden] - truth[2, t, hidden]) ** 2)))
    assert np.mean(with_names) < NOISE < np.mean(without)


ALL = [
    lambda: AdditivePredictor(reg=2.0),
    lambda: ColumnMeanPredictor(),
    lambda: KNNPredictor(k=7),
    lambda: MFPredictor(rank=2, iterations=5),
    lambda: LogisticMFPredictor(rank=2, steps=20),
    lambda: TensorPredictor(rank=2, iterations=10),
]


@pytest.fixture
def small_matrix():
    rng = np.random.default_rng(6)
    values = rng.normal(size=(8, 40))
    values[values < -1.5] = np.nan
    return ForgettingMatrix(values, [f"t{i}" for i in range(8)], [f"e{j}" for j in range(40)])


@pytest.mark.parametrize("make", ALL, ids=lambda make: type(make()).__name__)
def test_save_load_round_trip_gives_identical_predictions(make, small_matrix, tmp_path):
    predictor = make().fit(small_matrix)
    known = small_matrix.example_ids[::4]
    values = np.linspace(-1, 1, len(known))
    predictor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "predictor.json").read_text())["predictor_class"] == type(predictor).__name__
    loaded = type(predictor).from_pretrained(tmp_path)
    np.testing.assert_array_equal(loaded.predict(known, values), predictor.predict(known, values))
    assert type(ForgettingPredictor.from_pretrained(tmp_path)) is type(predictor)
    assert loaded.get_config() == predictor.get_config()


@pytest.mark.parametrize("make", ALL, ids=lambda make: type(make()).__name__)
def test_bad_known_entries_are_clear_errors(make, small_matrix):
    predictor = make()
    with pytest.raises(NotFittedError):
        predictor.predict(["e0"], [0.1])
    predictor.fit(small_matrix)
    with pytest.raises(KeyError, match="not in the fitted matrix"):
        predictor.predict(["e0", "nope"], [0.1, 0.2])
    with pytest.raises(ValueError, match="2 known example ids but 3 known values"):
        predictor.predict(["e0", "e1"], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="finite"):
        predictor.predict(["e0", "e1"], [0.1, np.nan])
    with pytest.raises(ValueError, match=r"forgetting measurements, \|value\| <= 1e\+06; got 1e\+308"):
        predictor.predict(["e0", "e1"], [0.1, 1e308])  # finite, but every prediction would overflow
    with pytest.raises(ValueError, match="only 40 examples"):
        predictor.predict([f"e{j}" for j in range(41)], np.zeros(41))
    with pytest.raises(ValueError, match="duplicates"):
        predictor.predict(["e0", "e0"], [0.1, 0.2])
    with pytest.raises(ValueError, match="At least one"):
        predictor.predict([], [])


@pytest.mark.parametrize("make", [lambda: MFPredictor(rank=999, iterations=2), lambda: LogisticMFPredictor(rank=999, steps=2)])
def test_a_rank_beyond_the_matrix_is_fitted_at_what_it_holds_and_the_setting_is_kept(make, small_matrix, tmp_path):
    """Rank 999 on an 8 x 40 matrix would be unidentified and cost minutes and gigabytes: 8 factors are
    fitted, and `rank` stays the user's setting, so the same predictor refitted on a larger matrix gets more."""
    predictor = make()
    with pytest.warns(UserWarning, match="rank 999 reduced to 8: a 8 x 40 matrix holds no more"):
        predictor.fit(small_matrix)
    assert predictor.rank == 999 and predictor.get_config()["rank"] == 999
    assert predictor.fitted_rank == 8 and predictor.example_factors.shape == (40, 8)
    predictor.save_pretrained(tmp_path)
    loaded = type(predictor).from_pretrained(tmp_path)
    assert (loaded.rank, loaded.fitted_rank) == (999, 8)
    np.testing.assert_allclose(loaded.predict(["e1", "e2"], [0.1, 0.2]), predictor.predict(["e1", "e2"], [0.1, 0.2]))
    wider = ForgettingMatrix(np.vstack([small_matrix.values] * 2), task_ids=[f"t{i}" for i in range(16)],
                             example_ids=small_matrix.example_ids, metric=small_matrix.metric)
    with pytest.warns(UserWarning, match="rank 999 reduced to 16"):
        assert predictor.fit(wider).fitted_rank == 16


@pytest.mark.parametrize("make", [lambda: MFPredictor(iterations=0), lambda: MFPredictor(iterations=-1)])
def test_mf_without_als_sweeps_is_refused_when_built(make):
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        make()


def test_malformed_saved_predictors_are_refused(small_matrix, tmp_path):
    from safetensors.numpy import save_file

    MFPredictor(rank=2, iterations=3).fit(small_matrix).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="holds a MFPredictor, not a KNNPredictor"):
        KNNPredictor.from_pretrained(tmp_path)
    save_file({"example_bias": np.zeros(3)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'example_bias' has shape \(3,\)"):
        MFPredictor.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x80\x04pickle?")
    with pytest.raises(ValueError, match="cannot read"):
        MFPredictor.from_pretrained(tmp_path)
    MFPredictor(rank=2, iterations=3).fit(small_matrix).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "predictor.json").read_text())
    (tmp_path / "predictor.json").write_text(json.dumps({**config, "example_ids": ["a"] * 40}))
    with pytest.raises(ValueError, match="predictor.json: example_ids must be unique"):
        MFPredictor.from_pretrained(tmp_path)
    (tmp_path / "predictor.json").write_text(json.dumps({**config, "config": {"rank": 2, "bogus": 1}}))
    with pytest.raises(ValueError, match="malformed predictor files"):
        MFPredictor.from_pretrained(tmp_path)
    (tmp_path / "predictor.json").write_text(json.dumps({**config, "predictor_class": "os.system"}))
    with pytest.raises(ValueError, match="not a predictor this version can read"):
        ForgettingPredictor.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="predictor.json"):
        MFPredictor.from_pretrained(tmp_path / "missing")


def test_evaluation_protocol_draws_without_replacement_independently(small_matrix):
    seen = []

    class Recording(ColumnMeanPredictor):
        def predict(self, known_example_ids, known_values, **side_information):
            seen.append(tuple(known_example_ids))
            return super().predict(known_example_ids, known_values, **side_information)

    result = evaluate_predictor(Recording(), small_matrix, ["t6", "t7"], k=5, seeds=[0, 1, 2])
    assert len(seen) == 6 and all(len(set(s)) == 5 for s in seen)
    assert len(set(seen)) == 6  # different per task and per seed
    assert set(result["per_task"]) == {"t6", "t7"} and result["num_seeds"] == 3
    assert {"rmse", "f1", "precision", "recall", "auc", "top1pct_precision"} <= set(result["metrics"])
    again = evaluate_predictor(Recording(), small_matrix, ["t6", "t7"], k=5, seeds=[0, 1, 2])
    assert again["metrics"] == result["metrics"]  # reproducible


def test_evaluation_scores_only_unrevealed_entries():
    """A predictor that echoes the known values and predicts 0 elsewhere: its error is the hidden RMSE."""
    values = np.arange(2 * 20, dtype=float).reshape(2, 20) / 10
    matrix = ForgettingMatrix(values, ["a", "b"], [f"e{j}" for j in range(20)])

    class Echo(ColumnMeanPredictor):
        def _fold_in(self, columns, known):
            row = np.zeros(len(self.example_ids))
            row[columns] = known
            return row

    result = evaluate_predictor(Echo(), matrix, ["b"], k=5, seeds=[0])
    rng = np.random.default_rng([0, 0])
    known = rng.choice(np.arange(20), size=5, replace=False)
    hidden = np.setdiff1d(np.arange(20), known)
    assert result["metrics"]["rmse"] == pytest.approx(np.sqrt(np.mean(values[1, hidden] ** 2)))


def test_evaluation_errors(small_matrix):
    with pytest.raises(ValueError, match="smaller k"):
        evaluate_predictor(AdditivePredictor(), small_matrix, ["t7"], k=40)
    with pytest.raises(KeyError, match="not in the matrix"):
        evaluate_predictor(AdditivePredictor(), small_matrix, ["zzz"])
    with pytest.raises(ValueError, match="leave at least one"):
        evaluate_predictor(AdditivePredictor(), small_matrix, small_matrix.task_ids)


def test_binary_metrics_and_top_precision():
    truth = np.array([1, 1, 0, 0, 1.0])
    scores = np.array([0.9, 0.2, 0.6, 0.1, 0.8])
    metrics = binary_metrics(truth, scores)
    assert metrics["precision"] == pytest.approx(2 / 3) and metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["auc"] == pytest.approx(5 / 6)
    assert top_fraction_precision(np.arange(200.0), np.arange(200.0)) == 1.0
    assert top_fraction_precision(np.arange(200.0), -np.arange(200.0)) == 0.0


def test_mf_half_steps_against_one_ridge_solve_per_row():
    """The batched ridge of MF's alternating steps (synthetic numbers): each row's solution is the plain ridge
    solution over its observed entries, whether the mask is given or (nothing missing) left out."""
    from hf_forgetting.completion.mf import _batched_ridge

    rng = np.random.default_rng(0)
    design, targets, offsets = rng.normal(size=(50, 4)), rng.normal(size=(7, 50)), rng.normal(size=50)
    mask = (rng.random((7, 50)) > 0.3).astype(float)
    solved = _batched_ridge(design, targets * mask, offsets, mask, 0.5)
    for row in range(7):
        kept = mask[row] > 0
        x, y = design[kept], (targets[row] - offsets)[kept]
        np.testing.assert_allclose(solved[row], np.linalg.solve(x.T @ x + 0.5 * np.eye(4), x.T @ y), atol=1e-10)
    np.testing.assert_allclose(_batched_ridge(design, targets, offsets, None, 0.5),
                               _batched_ridge(design, targets, offsets, np.ones((7, 50)), 0.5), atol=1e-12)


@pytest.mark.parametrize("state, value", [("residual_variance", 0.0), ("residual_variance", -1.0), ("loading_prior", 0.0)])
def test_a_saved_knn_with_a_variance_or_prior_that_is_not_positive_is_refused(state, value, small_matrix, tmp_path):
    from hf_forgetting.errors import PredictorFormatError

    KNNPredictor(k=3).fit(small_matrix).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "predictor.json").read_text())
    config["state"][state] = value
    (tmp_path / "predictor.json").write_text(json.dumps(config))
    with pytest.raises(PredictorFormatError, match=f"state '{state}' must be > 0; got {value}"):
        KNNPredictor.from_pretrained(tmp_path)
