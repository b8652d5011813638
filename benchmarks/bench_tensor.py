"""Tensor completion across models: does knowing other models' rows of the same task help?

    python benchmarks/bench_tensor.py full=outputs/.../collect-demo/matrix lora=outputs/.../collect-demo-lora/matrix

The last matrix named is the "new model". A share of its tasks is held out; for each held-out
(model, task) slice k entries are revealed. Compared on the hidden entries (RMSE, 10 seeds):
- MFPredictor fitted on the new model's training rows only;
- TensorPredictor fitted on every observed slice (all tasks of the other models, the new model's
  training tasks), predicting with ``model=`` and ``task=`` (so the same task's rows under the other
  models inform the prior), and without them.
"""

from __future__ import annotations

import argparse

import numpy as np

from hf_forgetting import ForgettingMatrix, MFPredictor, TensorPredictor
from hf_forgetting.completion.evaluation import default_test_tasks, split_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("matrices", nargs="+", help="name=path pairs; the last is the model whose tasks are held out")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--rank", type=int, default=3)
    parser.add_argument("--test-fraction", type=float, default=0.3)
    args = parser.parse_args()

    matrices = dict(item.split("=", 1) for item in args.matrices)
    matrices = {name: ForgettingMatrix.load(path) for name, path in matrices.items()}
    new_model = list(matrices)[-1]
    test_tasks = default_test_tasks(matrices[new_model], args.test_fraction)
    train, test = split_rows(matrices[new_model], test_tasks)
    mf = MFPredictor(rank=args.rank).fit(train)
    tensor = TensorPredictor(rank=args.rank).fit({**matrices, new_model: train})
    errors = {"MFPredictor (new model's rows only)": [], "TensorPredictor with model and task": [],
              "TensorPredictor without names": []}
    for row, task in enumerate(test.task_ids):
        for seed in range(args.seeds):
            rng = np.random.default_rng([seed, row])
            known = rng.choice(len(test.example_ids), args.k, replace=False)
            hidden = np.setdiff1d(np.arange(len(test.example_ids)), known)
            ids, values, truth = [test.example_ids[j] for j in known], test.values[row, known], test.values[row, hidden]
            predictions = [
                mf.predict(ids, values),
                tensor.predict(ids, values, model=new_model, task=task),
                tensor.predict(ids, values),
            ]
            for name, prediction in zip(errors, predictions):
                errors[name].append(np.sqrt(np.mean((prediction[hidden] - truth) ** 2)))
    print(f"new model {new_model!r}; held-out tasks: {', '.join(test_tasks)}; k = {args.k}, {args.seeds} seeds, "
          f"rank {args.rank}\n")
    print("| predictor | RMSE on hidden entries |\n| --- | ---: |")
    for name, values in errors.items():
        print(f"| {name} | {np.mean(values):.4f} +- {np.std(values):.4f} |")


if __name__ == "__main__":
    main()
