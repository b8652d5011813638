"""Predictions for a fine-tune weaker or stronger than the matrix's: the demo matrix, leave one task out.

Each task's row is held out, multiplied by a factor to stand for a weaker (x0.2) or stronger (x3)
fine-tune than the matrix's recipe, and completed from k = 30 revealed entries (3 reveals per task) by
each predictor fitted on the other 11 rows. Printed per predictor and strength: RMSE on the unrevealed
entries, its ratio to predicting every entry at the revealed entries' mean (the probe-mean baseline),
the top-10% precision against the column-mean ranking's, and how often the 95% intervals cover the truth.

    python benchmarks/bench_calibration.py [--matrix spaces/forgetting-explorer/data/smollm2-135m-instruct-demo]

Rows collected at other strengths (not scaled copies) are compared by `hf-forgetting evaluate --test_matrix`.
"""

from __future__ import annotations

import argparse

import numpy as np

from hf_forgetting import AdditivePredictor, ColumnMeanPredictor, ForgettingMatrix, KNNPredictor, MFPredictor
from hf_forgetting.completion.evaluation import split_rows, top_fraction_precision

PREDICTORS = (MFPredictor, KNNPredictor, AdditivePredictor, ColumnMeanPredictor)
STRENGTHS = (0.2, 1.0, 3.0)


def evaluate(matrix: ForgettingMatrix, cls, strength: float, k: int = 30, reveals: int = 3) -> dict:
    records = {"rmse": [], "probe_mean": [], "top10": [], "column_top10": [], "coverage": []}
    for index, task in enumerate(matrix.task_ids):
        train, test = split_rows(matrix, [task])
        predictor = cls().fit(train)
        column_means = np.nanmean(train.values, axis=0)
        row = test.values[0].astype(np.float64) * strength
        for seed in range(reveals):
            known = np.random.default_rng([seed, index]).choice(len(row), k, replace=False)
            hidden = np.setdiff1d(np.arange(len(row)), known)
            completed = predictor.complete_row([matrix.example_ids[j] for j in known], row[known])
            truth, guess = row[hidden], completed.values[hidden]
            records["rmse"].append(np.sqrt(np.mean((guess - truth) ** 2)))
            records["probe_mean"].append(np.sqrt(np.mean((row[known].mean() - truth) ** 2)))
            records["top10"].append(top_fraction_precision(truth, guess, 0.1))
            records["column_top10"].append(top_fraction_precision(truth, column_means[hidden], 0.1))
            records["coverage"].append(np.mean((completed.lower[hidden] <= truth) & (truth <= completed.upper[hidden])))
    return {name: float(np.mean(values)) for name, values in records.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", default="spaces/forgetting-explorer/data/smollm2-135m-instruct-demo")
    args = parser.parse_args()
    matrix = ForgettingMatrix.load(args.matrix)
    print(f"{matrix!r}: each row held out, scaled, completed from 30 revealed entries (3 reveals per task)\n")
    print("| predictor | row strength | RMSE | probe-mean RMSE | ratio | top-10% precision | column-mean top-10% | 95% coverage |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for cls in PREDICTORS:
        for strength in STRENGTHS:
            r = evaluate(matrix, cls, strength)
            print(f"| {cls.__name__} | x{strength:g} | {r['rmse']:.4f} | {r['probe_mean']:.4f} | {r['rmse'] / r['probe_mean']:.2f} | "
                  f"{r['top10']:.3f} | {r['column_top10']:.3f} | {r['coverage']:.2f} |")


if __name__ == "__main__":
    main()
