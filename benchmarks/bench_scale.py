"""Paper scale on one machine: a synthetic matrix of the paper's shape through every stage that reads one.

Builds a matrix of 100 tasks x 141,871 upstream examples (synthetic, labelled as such: rank-3 structure
plus noise, float32, a few NaN entries), then runs each step in a fresh process and prints a table of
its wall time and the peak memory it added (resident set size, over the process after its imports):
save, load, the full low-rank report (R^2 by rank, additive, components, chance and hidden-entry
curves), MF fit, the evaluation protocol, the Space's opening of the matrix and one query, `measure`'s
predictor part (a row completed from 30 probes, with its intervals), `ReplayTrainer`'s set-up with the
whole upstream set as its replay pool (real text tokenised with the embedded model's tokenizer, a tiny
model), push + pull through the bundled Hub-compatible server, and a Hub repo of a few KB that declares
16 x 10^6 entries.

    python benchmarks/bench_scale.py [--tasks 100] [--examples 141871] [--steps load report ...]

Goals at 100 x 141,871 (2 cores): report <= 60 s, load <= 2 s and <= 3x the values in memory, MF fit
<= 20 s, Space opening <= 5 s and <= 1 GB, ReplayTrainer set-up <= 60 s, push + pull <= 30 s; at 10^6
examples the report <= 5 min and load <= 1 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STEPS = ("save", "load", "report", "mf_fit", "evaluate", "space", "measure", "replay_setup", "push_pull", "declared_bomb")


def synthetic_matrix(tasks: int, examples: int, seed: int = 0):
    """Rank-3 structure plus noise, float32, 1 in 10^4 entries missing (synthetic)."""
    from hf_forgetting import ForgettingMatrix

    rng = np.random.default_rng(seed)
    values = (rng.normal(0.05, 0.02, (tasks, 3)).astype(np.float32) @ rng.normal(0, 1, (3, examples)).astype(np.float32)
              + rng.normal(0, 0.01, (tasks, examples)).astype(np.float32))
    values[rng.random(values.shape) < 1e-4] = np.nan
    return ForgettingMatrix(values, [f"task{i}" for i in range(tasks)], [f"ex{j}" for j in range(examples)],
                            metadata={"base_model": "synthetic", "note": "synthetic benchmark matrix"})


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_step(step: str, folder: Path, args) -> dict:
    """One step in this process: returns its seconds and the peak memory it added."""
    from hf_forgetting import ForgettingMatrix, MFPredictor, low_rank_report

    matrix_dir = folder / "matrix"
    prepared = None
    if step in ("report", "mf_fit", "evaluate", "measure"):
        prepared = ForgettingMatrix.load(matrix_dir)
    if step == "measure":
        prepared = MFPredictor.fitted_on(prepared)
    if step == "replay_setup":
        prepared = replay_inputs(args.examples)
    baseline, started = rss_mb(), time.perf_counter()
    note = ""
    if step == "save":
        synthetic_matrix(args.tasks, args.examples).save(matrix_dir)
        note = f"{sum(p.stat().st_size for p in matrix_dir.iterdir()) / 2**20:.0f} MB folder"
    elif step == "load":
        matrix = ForgettingMatrix.load(matrix_dir)
        note = f"values {matrix.values.nbytes / 2**20:.0f} MB"
    elif step == "report":
        report = low_rank_report(prepared, max_rank=9)
        note = f"R^2 rank 3 {report['r2'][3]:.3f}, hidden {report['heldout_r2'][3]:.3f}, chance {report['null_r2'][3]:.3f}"
    elif step == "mf_fit":
        MFPredictor(rank=5).fit(prepared)
    elif step == "evaluate":
        from hf_forgetting import evaluate_predictor

        result = evaluate_predictor(MFPredictor(rank=5), prepared, prepared.task_ids[:3], k=30, seeds=range(3))
        note = f"RMSE {result['metrics']['rmse']:.4f}"
    elif step == "space":
        note = space_open_and_query(matrix_dir)
    elif step == "measure":
        rng = np.random.default_rng(0)
        probes = rng.choice(len(prepared.example_ids), 30, replace=False)
        completed = prepared.complete_row([prepared.example_ids[j] for j in probes], rng.normal(0.05, 0.02, 30))
        note = f"probe weight {completed.probe_weight:.2f}"
    elif step == "replay_setup":
        note = replay_setup(*prepared)
    elif step == "push_pull":
        note = push_pull(matrix_dir)
    elif step == "declared_bomb":
        note = declared_bomb(folder)
    seconds = time.perf_counter() - started
    return {"step": step, "seconds": seconds, "added_peak_mb": peak_mb() - baseline, "note": note}


def space_open_and_query(matrix_dir: Path) -> str:
    from hf_forgetting import explorer

    opened = time.perf_counter()
    cache = explorer.WorkspaceCache(folders={"bench": matrix_dir})
    workspace = cache.get("bench")
    explorer.matrix_markdown(workspace)
    opening = time.perf_counter() - opened
    queried = time.perf_counter()
    ids = workspace.matrix.example_ids[:30]
    prediction = explorer.predict_from_measurements(workspace, ids, np.full(30, 0.05))
    explorer.top_forgotten(workspace, prediction, 20)
    explorer.prediction_csv_text(workspace, prediction)
    return f"opening {opening:.2f} s, one query {time.perf_counter() - queried:.3f} s"


def replay_inputs(examples: int):
    """The embedded upstream passages (real text), cycled to `examples` rows, a tiny model and the real tokenizer."""
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM

    from hf_forgetting.data import load_upstream
    from hf_forgetting.modeling import EMBEDDED_MODEL, load_model_and_tokenizer

    _, tokenizer = load_model_and_tokenizer(EMBEDDED_MODEL, tokenizer_only=True)
    texts = load_upstream()["text"]
    upstream = Dataset.from_dict({"example_id": [f"ex{j}" for j in range(examples)],
                                  "text": [texts[j % len(texts)] for j in range(examples)]})
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2))
    task = Dataset.from_list([{"prompt": f"Reverse {w}:", "completion": f" {w[::-1]}"} for w in ["river", "stone", "cloud"] * 32])
    return model, tokenizer, upstream, task


def replay_setup(model, tokenizer, upstream, task) -> str:
    from hf_forgetting import ReplayConfig, ReplayTrainer

    with tempfile.TemporaryDirectory() as output:
        args = ReplayConfig(output_dir=output, replay_strategy="random", max_length=64, replay_max_length=64, report_to="none",
                            bf16=False, use_cpu=True, max_steps=1, disable_tqdm=True)
        trainer = ReplayTrainer(model=model, args=args, train_dataset=task, processing_class=tokenizer, replay_dataset=upstream)
    return f"pool {trainer.replay_pool_size:,}"


def push_pull(matrix_dir: Path) -> str:
    from hf_forgetting import ForgettingMatrix
    from hf_forgetting.testing.hub_server import HubServer

    with HubServer({"hf_bench_token": "bench"}) as hub:
        os.environ.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_bench_token", "HF_HUB_DISABLE_XET": "1"})
        matrix = ForgettingMatrix.load(matrix_dir)
        pushed = time.perf_counter()
        matrix.push_to_hub("bench/scale")
        push_seconds = time.perf_counter() - pushed
        pulled = ForgettingMatrix.from_hub("bench/scale")
        assert pulled.shape == matrix.shape
    return f"push {push_seconds:.1f} s"


def declared_bomb(folder: Path) -> str:
    """A repo of a few KB whose row file declares 16 x 10^6 entries (one row of zeros, dictionary-encoded)."""
    import pyarrow as pa

    from hf_forgetting import ForgettingMatrix
    from hf_forgetting.format.matrix import ROWS_SCHEMA, MatrixHeader, example_ids_sha256, examples_table
    from hf_forgetting.testing.hub_server import HubServer

    examples = 16_000_000
    ids = [f"e{j}" for j in range(examples)]
    repo = folder / "bomb"
    (repo / "rows").mkdir(parents=True, exist_ok=True)
    import pyarrow.parquet as pq

    pq.write_table(examples_table(ids), repo / "examples.parquet", compression="zstd")
    row = pa.table({"task_id": ["t"], "forgetting": pa.array([np.zeros(examples, np.float32)], pa.list_(pa.float32())),
                    "contributor": [""], "provenance": ["{}"], "example_ids_sha256": [example_ids_sha256(ids)]}, schema=ROWS_SCHEMA)
    pq.write_table(row, repo / "rows" / "bomb.parquet", compression="zstd")
    (repo / "forgetting_matrix.json").write_text(MatrixHeader.of("nll_increase", ids, {}).to_json())
    size = sum(p.stat().st_size for p in repo.rglob("*") if p.is_file())
    del ids, row
    with HubServer({"hf_bench_token": "bench"}) as hub:
        os.environ.update({"HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_bench_token", "HF_HUB_DISABLE_XET": "1"})
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo("bench/bomb", repo_type="dataset")
        api.upload_folder(folder_path=str(repo), repo_id="bench/bomb", repo_type="dataset")
        before = rss_mb()
        try:
            ForgettingMatrix.from_hub("bench/bomb")
            outcome = "loaded"
        except Exception as error:  # noqa: BLE001 - the outcome is what the benchmark reports
            outcome = f"refused: {str(error).splitlines()[0][:90]}"
    return f"{size / 1024:.0f} KB on disk; {outcome}; +{rss_mb() - before:.0f} MB resident after"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--examples", type=int, default=141_871)
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS)
    parser.add_argument("--folder", default=None, help="Work folder (default: a temporary one)")
    parser.add_argument("--one-step", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one_step:
        print(json.dumps(run_step(args.one_step, Path(args.folder), args)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as temporary:
        folder = Path(args.folder or temporary)
        rows = []
        for step in ["save", *[s for s in args.steps if s != "save"]]:
            command = [sys.executable, __file__, "--one-step", step, "--folder", str(folder), "--tasks", str(args.tasks),
                       "--examples", str(args.examples)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                rows.append({"step": step, "seconds": float("nan"), "added_peak_mb": float("nan"),
                             "note": "failed: " + result.stderr.strip().splitlines()[-1][:120]})
            else:
                rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"{rows[-1]['step']}: {rows[-1]['seconds']:.2f} s", file=sys.stderr, flush=True)
    print(f"\n{args.tasks} tasks x {args.examples:,} examples (synthetic), each step in a fresh process:\n")
    print("| step | seconds | peak memory added (MB) | note |\n| --- | ---: | ---: | --- |")
    for row in rows:
        print(f"| {row['step']} | {row['seconds']:.2f} | {row['added_peak_mb']:.0f} | {row['note']} |")


if __name__ == "__main__":
    main()
