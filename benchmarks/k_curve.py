"""How many upstream examples to measure: prediction error against k on a matrix, leave one task out.

Each task's row is held out; every predictor is fitted on the other rows and completes the held-out row from k
revealed entries (several reveals per k). Printed: the RMSE on the unrevealed entries per predictor and k, beside
predicting every entry at the revealed entries' mean (the probe mean, which needs no matrix); the figure goes to
docs/k_curve.png.

    python benchmarks/k_curve.py [--matrix spaces/forgetting-explorer/data/smollm2-135m-instruct-demo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hf_forgetting import AdditivePredictor, ColumnMeanPredictor, ForgettingMatrix, KNNPredictor, MFPredictor
from hf_forgetting.completion.evaluation import split_rows

PREDICTORS = (MFPredictor, KNNPredictor, AdditivePredictor, ColumnMeanPredictor)
KS = (5, 10, 20, 30, 50, 100)
PROBE_MEAN = "probe mean (no matrix)"


def k_curve(matrix: ForgettingMatrix, ks=KS, reveals: int = 5) -> dict[str, dict[int, float]]:
    """``{predictor: {k: RMSE on unrevealed entries, averaged over tasks and reveals}}``."""
    errors: dict[str, dict[int, list[float]]] = {}
    for index, task in enumerate(matrix.task_ids):
        train, test = split_rows(matrix, [task])
        row = test.values[0].astype(np.float64)
        fitted = [cls().fit(train) for cls in PREDICTORS]
        for k in ks:
            for seed in range(reveals):
                known = np.random.default_rng([seed, index, k]).choice(len(row), k, replace=False)
                hidden = np.setdiff1d(np.arange(len(row)), known)
                ids = [matrix.example_ids[j] for j in known]
                for predictor in fitted:
                    guess = predictor.predict(ids, row[known])[hidden]
                    errors.setdefault(type(predictor).__name__, {}).setdefault(k, []).append(np.sqrt(np.mean((guess - row[hidden]) ** 2)))
                probe = np.sqrt(np.mean((row[known].mean() - row[hidden]) ** 2))
                errors.setdefault(PROBE_MEAN, {}).setdefault(k, []).append(probe)
    return {name: {k: float(np.mean(v)) for k, v in by_k.items()} for name, by_k in errors.items()}


def table(curve: dict[str, dict[int, float]]) -> str:
    ks = sorted(next(iter(curve.values())))
    lines = ["| predictor | " + " | ".join(f"k = {k}" for k in ks) + " |", "| --- |" + " ---: |" * len(ks)]
    lines += [f"| {name} | " + " | ".join(f"{by_k[k]:.4f}" for k in ks) + " |" for name, by_k in curve.items()]
    return "\n".join(lines)


def plot(curve: dict[str, dict[int, float]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.0))
    for name, by_k in curve.items():
        ks = sorted(by_k)
        axes.plot(ks, [by_k[k] for k in ks], marker="o", linestyle="--" if name == PROBE_MEAN else "-", label=name)
    axes.set_xscale("log")
    axes.set_xticks(KS, [str(k) for k in KS])
    axes.set_xlabel("k: upstream examples measured on the new fine-tune")
    axes.set_ylabel("RMSE on the other examples (nats)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--matrix", default="spaces/forgetting-explorer/data/smollm2-135m-instruct-demo")
    parser.add_argument("--output", default="docs/k_curve.png")
    args = parser.parse_args()
    matrix = ForgettingMatrix.load(args.matrix)
    curve = k_curve(matrix)
    print(f"{matrix!r}; leave one task out, 5 reveals per k\n")
    print(table(curve))
    shape = f"{matrix.shape[0]} x {matrix.shape[1]}"
    print(f"\nFigure: {plot(curve, Path(args.output), f'Error against k, leave one task out ({shape} demo matrix)')}")


if __name__ == "__main__":
    main()
