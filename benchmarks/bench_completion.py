"""Benchmark: our fit-once / fold-in predictors against scikit-surprise refitted per test task (the paper's way).

    python benchmarks/bench_completion.py                        # synthetic 67 x 5,000 + the demo matrix if present
    python benchmarks/bench_completion.py --matrix outputs/smollm2-135m-instruct/collect-demo/matrix

For every test task and seed, both sides see the same training rows and the same k known entries
of the test row. Surprise refits from scratch on training rows + known entries and predicts the
hidden entries (BaselineOnly, KNNBaseline user-based MSD, SVD with 5 factors); ours is fitted once
and folds the known entries in. Printed: RMSE of each method family, the RMSE ratio ours/surprise,
and the time per new task with the ratio surprise/ours. A second table times our fold-in alone at
M = 100 tasks and N = 141,871 and 10^6 examples (synthetic; fold-in time does not depend on the
values).

The synthetic matrix is labelled as such: low rank (3) plus additive effects plus noise.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hf_forgetting import AdditivePredictor, ForgettingMatrix, KNNPredictor, MFPredictor
from hf_forgetting.completion.evaluation import default_test_tasks, split_rows


def synthetic_matrix(tasks: int, examples: int, seed: int = 0) -> ForgettingMatrix:
    rng = np.random.default_rng(seed)
    values = (
        0.03 * rng.normal(size=(tasks, 3)) @ rng.normal(size=(3, examples))
        + 0.03 * rng.normal(size=(tasks, 1))
        + 0.03 * rng.normal(size=(1, examples))
        + 0.01 * rng.normal(size=(tasks, examples))
    )
    return ForgettingMatrix(values, [f"task{i}" for i in range(tasks)], [f"ex{j}" for j in range(examples)],
                            metadata={"synthetic": True})


def surprise_algorithms():
    from surprise import SVD, BaselineOnly, KNNBaseline

    return {
        "additive": lambda: BaselineOnly(verbose=False),
        "knn": lambda: KNNBaseline(k=40, sim_options={"name": "msd", "user_based": True}, verbose=False),
        "mf": lambda: SVD(n_factors=5, random_state=0),
    }


OURS = {"additive": AdditivePredictor, "knn": KNNPredictor, "mf": MFPredictor}


def surprise_predict(make, train: ForgettingMatrix, known_columns, known_values, hidden_columns):
    """Refit from scratch on the training rows plus the new row's known entries; predict its hidden entries."""
    import pandas as pd
    from surprise import Dataset, Reader

    rows, columns = np.nonzero(~np.isnan(train.values))
    frame = pd.DataFrame({"user": rows, "item": columns, "rating": train.values[rows, columns]})
    new_user = len(train.task_ids)
    extra = pd.DataFrame({"user": new_user, "item": known_columns, "rating": known_values})
    frame = pd.concat([frame, extra], ignore_index=True)
    low, high = float(frame.rating.min()), float(frame.rating.max())
    data = Dataset.load_from_df(frame[["user", "item", "rating"]], Reader(rating_scale=(low, high)))
    algorithm = make()
    algorithm.fit(data.build_full_trainset())
    return np.array([algorithm.predict(new_user, int(j)).est for j in hidden_columns])


def compare(matrix: ForgettingMatrix, name: str, k: int, seeds: int, test_fraction: float) -> list[str]:
    test_tasks = default_test_tasks(matrix, test_fraction)
    train, test = split_rows(matrix, test_tasks)
    algorithms = surprise_algorithms()
    lines = []
    for family, predictor_class in OURS.items():
        started = time.perf_counter()
        predictor = predictor_class().fit(train)
        fit_seconds = time.perf_counter() - started
        errors = {"ours": [], "surprise": []}
        seconds = {"ours": [], "surprise": []}
        for row in range(len(test.task_ids)):
            observed = np.flatnonzero(~np.isnan(test.values[row]))
            for seed in range(seeds):
                rng = np.random.default_rng([seed, row])
                known = rng.choice(observed, size=k, replace=False)
                hidden = np.setdiff1d(observed, known)
                truth = test.values[row, hidden]
                started = time.perf_counter()
                ours = predictor.predict([matrix.example_ids[j] for j in known], test.values[row, known])[hidden]
                seconds["ours"].append(time.perf_counter() - started)
                started = time.perf_counter()
                theirs = surprise_predict(algorithms[family], train, known, test.values[row, known], hidden)
                seconds["surprise"].append(time.perf_counter() - started)
                errors["ours"].append(np.sqrt(np.mean((ours - truth) ** 2)))
                errors["surprise"].append(np.sqrt(np.mean((theirs - truth) ** 2)))
        ours_rmse, their_rmse = np.mean(errors["ours"]), np.mean(errors["surprise"])
        ours_ms, their_ms = np.mean(seconds["ours"]) * 1e3, np.mean(seconds["surprise"]) * 1e3
        lines.append(
            f"| {name} | {family}: {predictor_class.__name__} vs {type(algorithms[family]()).__name__} | "
            f"{ours_rmse:.5f} | {their_rmse:.5f} | {ours_rmse / their_rmse:.3f} | {ours_ms:.3f} (fit once {fit_seconds:.2f} s) | "
            f"{their_ms:,.0f} | {their_ms / ours_ms:,.0f}x |"
        )
        print(lines[-1], flush=True)
    return lines


def fold_in_timing(tasks: int, examples: int, k: int = 30, repeats: int = 20) -> str:
    rng = np.random.default_rng(0)
    values = (0.03 * rng.normal(size=(tasks, 5)) @ rng.normal(size=(5, examples))).astype(np.float32)
    matrix = ForgettingMatrix(values, [f"t{i}" for i in range(tasks)], [f"e{j}" for j in range(examples)])
    started = time.perf_counter()
    predictor = MFPredictor(rank=5, iterations=3).fit(matrix)
    fit_seconds = time.perf_counter() - started
    ids = matrix.example_ids
    timings = []
    for repeat in range(repeats):
        known = rng.choice(examples, k, replace=False)
        known_ids = [ids[j] for j in known]
        started = time.perf_counter()
        predictor.predict(known_ids, values[repeat % tasks, known])
        timings.append(time.perf_counter() - started)
    return (f"| {tasks} | {examples:,} | {k} | {np.median(timings) * 1e3:.2f} | {np.max(timings) * 1e3:.2f} | "
            f"{fit_seconds:.1f} (3 ALS sweeps) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default="outputs/smollm2-135m-instruct/collect-demo/matrix")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--synthetic-tasks", type=int, default=67)
    parser.add_argument("--synthetic-examples", type=int, default=5000)
    parser.add_argument("--skip-large", action="store_true", help="skip the N = 10^6 fold-in timing")
    args = parser.parse_args()

    print("| matrix | method family | RMSE ours | RMSE surprise | RMSE ratio | ms per new task, ours | "
          "ms per new task, surprise | time ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    synthetic = synthetic_matrix(args.synthetic_tasks, args.synthetic_examples)
    compare(synthetic, f"synthetic {args.synthetic_tasks} x {args.synthetic_examples}", args.k, args.seeds,
            test_fraction=20 / 67)
    if Path(args.matrix, "forgetting_matrix.json").exists():
        real = ForgettingMatrix.load(args.matrix)
        compare(real, f"embedded demo {real.shape[0]} x {real.shape[1]}", args.k, args.seeds, test_fraction=0.3)

    print("\n| tasks M | examples N | k | fold-in ms (median) | fold-in ms (max) | fit s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    print(fold_in_timing(100, 141_871), flush=True)
    if not args.skip_large:
        print(fold_in_timing(100, 1_000_000), flush=True)


if __name__ == "__main__":
    main()
