"""The forgetting monitor's predicted row at the end of each task's run against the measured row,
over the tasks of a collected matrix.

    python benchmarks/monitor_check.py outputs/smollm2-135m-instruct/collect-demo/matrix

At the end of a run the monitor folds the probes' measured forgetting into a predictor; the probes
are entries of the row the collection measures on every example (tests/test_collect.py checks that
they agree to 1e-4). So its end-of-run prediction for every task of a collected matrix follows from
the matrix itself: for each task, a predictor fitted on the other tasks (leave one task out, as a
new task would meet it), folded in with the monitor's own probe draw (`probe_indices`, the
collection's seed). `hf-forgetting collect --monitor_probes 30 --monitor_predictor ...` records the
same numbers live. Prints one row per task and the mean.
"""

from __future__ import annotations

import argparse

import numpy as np

from hf_forgetting import ForgettingMatrix
from hf_forgetting.completion import predictor_class
from hf_forgetting.completion.evaluation import row_agreement, split_rows
from hf_forgetting.monitor import probe_indices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("matrix")
    parser.add_argument("--predictor", default="mf")
    parser.add_argument("--probes", type=int, default=30)
    parser.add_argument("--seed", type=int, help="Probe draw seed (default: the collection's training seed)")
    args = parser.parse_args()

    matrix = ForgettingMatrix.load(args.matrix)
    seed = args.seed if args.seed is not None else matrix.metadata.get("settings", {}).get("training", {}).get("seed", 0)
    probes = probe_indices(len(matrix.example_ids), args.probes, seed)
    print(f"{args.matrix}: {len(matrix.task_ids)} tasks x {len(matrix.example_ids)} examples; predictor {args.predictor} "
          f"fitted on the other tasks; {len(probes)} probes (seed {seed})\n")
    print("| task | probe mean | predicted mean | measured mean | RMSE | Pearson r | top-10% precision |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    results = []
    for task, truth in zip(matrix.task_ids, matrix.values):
        others, _ = split_rows(matrix, [task])
        predictor = predictor_class(args.predictor)().fit(others)
        predicted = predictor.predict([matrix.example_ids[j] for j in probes], truth[probes])
        result = row_agreement(truth, predicted[predictor.column_indices(matrix.example_ids)])
        results.append(result)
        print(f"| {task} | {np.mean(truth[probes]):+.4f} | {result['predicted_mean']:+.4f} | {result['measured_mean']:+.4f} | "
              f"{result['rmse']:.4f} | {result['pearson']:.3f} | {result['top10pct_precision']:.2f} |")
    mean = {key: float(np.mean([r[key] for r in results])) for key in ("rmse", "pearson", "top10pct_precision")}
    print(f"| **mean** | | | | {mean['rmse']:.4f} | {mean['pearson']:.3f} | {mean['top10pct_precision']:.2f} |")


if __name__ == "__main__":
    main()
