"""Load test of the forgetting-explorer Space: N concurrent /predict queries through gradio_client.

Serves the Space on 127.0.0.1 (nothing else is contacted), warms it up with one query, then
measures (1) the same queries one at a time and (2) all of them at once from N client threads,
each answer checked against MFPredictor.predict run directly. Prints latency percentiles.

    python benchmarks/bench_space.py [--clients 20] [--matrix embedded]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
SPACE_APP = Path(__file__).resolve().parents[1] / "spaces" / "forgetting-explorer" / "app.py"


def load_space():
    spec = importlib.util.spec_from_file_location("forgetting_explorer_app", SPACE_APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_predictions(path: str) -> np.ndarray:
    with open(path, newline="") as handle:
        return np.array([float(row["predicted"]) for row in csv.DictReader(handle)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--matrix", default="embedded", help="Matrix source the queries use.")
    parser.add_argument("--concurrency-limit", type=int, default=8, help="The Space's queue concurrency.")
    args = parser.parse_args()

    from gradio_client import Client

    space = load_space()
    app = space.build_app().queue(default_concurrency_limit=args.concurrency_limit)
    _, url, _ = app.launch(prevent_thread_lock=True, server_port=free_port(), quiet=True)
    workspace = space.WORKSPACES.get(args.matrix, "")
    matrix = workspace.matrix
    rng = np.random.default_rng(0)
    queries = []
    for i in range(args.clients):
        columns = rng.choice(matrix.shape[1], 30, replace=False)
        values = matrix.values[i % matrix.shape[0], columns].astype(float)
        queries.append(([matrix.example_ids[j] for j in columns], values))
    clients = [Client(url, verbose=False) for _ in range(args.clients)]

    def ask(index: int) -> tuple[float, bool]:
        ids, values = queries[index]
        table = {"headers": ["example_id", "value"], "data": [[i, v] for i, v in zip(ids, values)]}
        started = time.perf_counter()
        *_, csv_path = clients[index].predict(args.matrix, "", table, None, 20, api_name="/predict")
        elapsed = time.perf_counter() - started
        correct = np.allclose(read_predictions(csv_path), workspace.predictor.predict(ids, values), rtol=1e-5, atol=1e-6)
        return elapsed, correct

    ask(0)  # warm-up: the first query opens nothing new but compiles plotting paths
    sequential = [ask(i) for i in range(args.clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        concurrent = list(pool.map(ask, range(args.clients)))
    wall = time.perf_counter() - started
    app.close()

    print(f"\nforgetting-explorer /predict, matrix {args.matrix!r} ({matrix.shape[0]} x {matrix.shape[1]}), "
          f"{os.cpu_count()} CPU cores, queue concurrency {args.concurrency_limit}")
    print("| mode | queries | correct | p50 latency (s) | p95 latency (s) | wall (s) | queries/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    seq_wall = sum(t for t, _ in sequential)
    for name, results, total in (("one at a time", sequential, seq_wall), (f"{args.clients} concurrent", concurrent, wall)):
        latencies = np.array([t for t, _ in results])
        print(
            f"| {name} | {len(results)} | {sum(ok for _, ok in results)} | {np.percentile(latencies, 50):.3f} | "
            f"{np.percentile(latencies, 95):.3f} | {total:.2f} | {len(results) / total:.1f} |"
        )
    if not all(ok for _, ok in sequential + concurrent):
        raise SystemExit("Some answers differ from MFPredictor.predict")


if __name__ == "__main__":
    main()
