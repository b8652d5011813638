"""Load test of the forgetting-explorer Space: N concurrent /predict queries over gradio's HTTP API.

The Space runs as it is deployed, `python spaces/forgetting-explorer/app.py`, in its own process on
127.0.0.1 (nothing else is contacted); the benchmark waits until its start-up (the zero-shot
warm-up included) is over, warms it up with one query, then measures

0. the server time of one query: the endpoint's function (prediction, table, plot data, CSV) called
   in this process on the same matrix;
1. the queries one at a time through the client;
2. all of them at once from N client threads,

every answer (its CSV, downloaded) checked against MFPredictor.predict run here. The clients speak
gradio's documented HTTP API (`POST /gradio_api/call/predict`, then the event stream) with httpx:
gradio_client costs ~160 ms of CPU per query on this machine, four times the server's ~37 ms, so on
2 cores it would measure the client. The goals (issue 14): at most 0.15 s of
server time for one query; for 20 concurrent clients p95 latency at most 1.5 s and at least 15
queries/s, on the 2-core CPU.

    python benchmarks/bench_space.py [--clients 20] [--concurrency-limit 8]
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
SPACE_APP = Path(__file__).resolve().parents[1] / "spaces" / "forgetting-explorer" / "app.py"
READY = ("zero-shot estimates ready", "zero-shot warm-up skipped")


def load_space():
    spec = importlib.util.spec_from_file_location("forgetting_explorer_app", SPACE_APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_space(port: int, concurrency: int) -> subprocess.Popen:
    """The Space in its own process; returns once it has started and finished its warm-up."""
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "CONCURRENCY": str(concurrency)}
    server = subprocess.Popen([sys.executable, str(SPACE_APP)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    for line in server.stderr:
        if any(marker in line for marker in READY):
            return server
        if time.monotonic() > deadline:
            break
    server.kill()
    raise SystemExit(f"The Space did not start (exit code {server.poll()})")


def read_predictions(text: str) -> np.ndarray:
    return np.array([float(row["forgetting"]) for row in csv.DictReader(io.StringIO(text))])


def call_predict(http, table: dict) -> list:
    """One /predict call over gradio's HTTP API: the outputs, as the event stream's `complete` event gives them."""
    event_id = http.post("/gradio_api/call/predict", json={"data": ["embedded", "", table, None, 20]}).json()["event_id"]
    event = None
    with http.stream("GET", f"/gradio_api/call/predict/{event_id}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                if event == "error":
                    raise RuntimeError(f"/predict failed: {line}")
                return json.loads(line[5:])
    raise RuntimeError("/predict: the event stream ended without a result")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--concurrency-limit", type=int, default=8, help="The Space's queue concurrency.")
    args = parser.parse_args()

    import httpx

    space = load_space()  # in this process: the reference answers and the server time of one query
    workspace = space.WORKSPACES.get("embedded", "")
    matrix = workspace.matrix
    rng = np.random.default_rng(0)
    tables, expected = [], []
    for i in range(args.clients):
        columns = rng.choice(matrix.shape[1], 30, replace=False)
        ids, values = [matrix.example_ids[j] for j in columns], matrix.values[i % matrix.shape[0], columns].astype(float)
        tables.append({"headers": ["example_id", "value"], "data": [[e, v] for e, v in zip(ids, values)]})
        expected.append(workspace.predictor.predict(ids, values))
    server_seconds = []
    for table in tables:
        started = time.perf_counter()
        space.predict("embedded", "", table, None, 20)
        server_seconds.append(time.perf_counter() - started)

    port = free_port()
    server = start_space(port, args.concurrency_limit)
    try:
        clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) for _ in range(args.clients)]

        def ask(index: int) -> tuple[float, bool]:
            started = time.perf_counter()
            *_, csv_file = call_predict(clients[index], tables[index])
            answer = clients[index].get(csv_file["url"]).text
            elapsed = time.perf_counter() - started
            return elapsed, bool(np.allclose(read_predictions(answer), expected[index], rtol=1e-5, atol=1e-6))

        ask(0)  # warm-up
        sequential = [ask(i) for i in range(args.clients)]
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            concurrent = list(pool.map(ask, range(args.clients)))
        wall = time.perf_counter() - started
    finally:
        server.kill()

    print(f"\nforgetting-explorer /predict, embedded matrix ({matrix.shape[0]} x {matrix.shape[1]}), {os.cpu_count()} CPU cores, "
          f"the Space in its own process, queue concurrency {args.concurrency_limit}")
    print(f"server time of one query (the endpoint's function): p50 {np.percentile(server_seconds, 50):.4f} s, "
          f"p95 {np.percentile(server_seconds, 95):.4f} s")
    print("| mode | queries | correct | p50 latency (s) | p95 latency (s) | wall (s) | queries/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, results, total in (("one at a time", sequential, sum(t for t, _ in sequential)),
                                 (f"{args.clients} concurrent", concurrent, wall)):
        latencies = np.array([t for t, _ in results])
        print(f"| {name} | {len(results)} | {sum(ok for _, ok in results)} | {np.percentile(latencies, 50):.3f} | "
              f"{np.percentile(latencies, 95):.3f} | {total:.2f} | {len(results) / total:.1f} |")
    if not all(ok for _, ok in sequential + concurrent):
        raise SystemExit("Some answers differ from MFPredictor.predict")


if __name__ == "__main__":
    main()
