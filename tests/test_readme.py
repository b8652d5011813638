"""The README's and the guides' code runs as written.

Their Python blocks run top to bottom as one script (a reader's session: the README's quick start, then the
guides in READER_PAGES' order), in a fresh folder holding what they assume: the shipped demo matrix at its
repository path, and, for the Hub block, a Hub-compatible server on which the user `you` may write. The predict
guide's `analyze` / `evaluate` / `fit` / `predict` commands run on the shipped matrix. Paths and links they
name exist.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_forgetting import ForgettingMatrix
from hf_forgetting.format.forgetting_csv import write_forgetting_csv
from hf_forgetting.testing.hub_server import HubServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The pages whose Python blocks continue the README's quick start, in the order a reader runs them.
READER_PAGES = [README, *(ROOT / "docs" / "guides" / f"{page}.md" for page in ("predict", "hub", "monitor", "replay"))]
DEMO_MATRIX = "spaces/forgetting-explorer/data/smollm2-135m-instruct-demo"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_blocks(language: str, pages=(README,)) -> list[str]:
    return [body for page in pages for lang, body in FENCE.findall(page.read_text()) if lang == language]


def reader_folder(tmp_path: Path) -> Path:
    """A working folder with the repository paths the README names (the shipped matrix)."""
    shutil.copytree(ROOT / DEMO_MATRIX, tmp_path / DEMO_MATRIX)
    return tmp_path


def commands(block: str) -> list[list[str]]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_the_readme_has_python_blocks_and_every_local_link_exists():
    assert len(readme_blocks("python")) >= 2 and len(readme_blocks("python", READER_PAGES)) >= 6
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not link.startswith("http")]
    assert local and all((ROOT / link).exists() for link in local), [link for link in local if not (ROOT / link).exists()]
    for page in (ROOT / "docs").rglob("*.md"):
        for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            assert link.startswith("http") or (page.parent / link).exists(), f"{page.name}: {link}"


@pytest.mark.slow
def test_the_readme_analyse_commands_run_as_written(tmp_path):
    """`analyze`, `evaluate`, `fit` and `predict` of the predict guide, on the shipped matrix; the
    measured CSV `predict` reads is what `measure` writes (here: 30 entries of a known row)."""
    folder = reader_folder(tmp_path)
    block = next(b for b in readme_blocks("bash", READER_PAGES) if "hf-forgetting predict" in b)
    matrix = ForgettingMatrix.load(folder / DEMO_MATRIX)
    write_forgetting_csv(folder / "forgetting-measured" / "measured.csv", matrix.example_ids[:30], matrix.values[0, :30])
    cli = Path(sys.executable).with_name("hf-forgetting")
    for argv in commands(block):
        assert argv[0] == "hf-forgetting"
        result = subprocess.run([str(cli), *argv[1:]], cwd=folder, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stderr[-3000:]}"
    assert (folder / "analysis" / "heatmap.png").exists() and (folder / "predictor" / "predictor.json").exists()
    ids, values = zip(*[line.split(",") for line in (folder / "predicted.csv").read_text().splitlines()[1:]])
    assert list(ids) == matrix.example_ids and np.isfinite(np.array(values, dtype=float)).all()


@pytest.mark.integration
@pytest.mark.needs_source("bigbench")
def test_the_readme_python_blocks_run_as_written(tmp_path):
    """Every Python block, in order, as one script: the quick start on the embedded model (a plain TRL
    fine-tune, `measure_forgetting`, `ReplayTrainer`), scoring, analysis, the Hub, the monitor, replay."""
    folder = reader_folder(tmp_path)
    script = folder / "readme.py"
    script.write_text("\n".join(readme_blocks("python", READER_PAGES)))
    with HubServer({"hf_you_token": "you"}) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_you_token", "HF_HUB_DISABLE_XET": "1"}
        env.pop("OMP_NUM_THREADS", None)  # a reader's session uses every core (the tests run one at a time)
        result = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]
    measured = folder / "forgetting-measured"
    assert {"forgetting.csv", "measured.csv", "summary.md", "histogram.png"} <= {p.name for p in measured.iterdir()}
    assert (folder / "predictor" / "predictor.json").exists() and (folder / "elsewhere").is_dir()
    assert "forgetting/probe_mean" in result.stdout  # the monitor's last measurement was printed
    # the quick start's ReplayTrainer replays from the whole upstream set of the measured matrix, and says so
    quick_start = re.search(r"ReplayTrainer: replay pool (\d+) of (\d+) upstream examples \((\d+) held out\)", result.stdout)
    assert quick_start and quick_start.groups() == ("200", "200", "0"), result.stdout[-3000:]
    check_quick_start_prediction_against_the_scored_truth(folder)


def check_quick_start_prediction_against_the_scored_truth(folder: Path):
    """The quick start's predicted row against every upstream passage scored under the base and the fine-tune:
    on the passages it did not measure, no worse than predicting each at the probes' mean."""
    from hf_forgetting import score_examples
    from hf_forgetting.data.matrix_sources import load_matrix_upstream
    from hf_forgetting.format.forgetting_csv import read_forgetting_csv
    from hf_forgetting.modeling import EMBEDDED_MODEL, load_checkpoint, load_model_and_tokenizer

    matrix = ForgettingMatrix.load(folder / DEMO_MATRIX)
    upstream = load_matrix_upstream(matrix)
    base, tokenizer = load_model_and_tokenizer(EMBEDDED_MODEL)
    before = score_examples(base, tokenizer, upstream, max_length=64, show_progress=False)
    tuned, _ = load_checkpoint(str(folder / "my-finetune"), EMBEDDED_MODEL)
    truth = score_examples(tuned, tokenizer, upstream, max_length=64, show_progress=False) - before
    ids, predicted = read_forgetting_csv(folder / "forgetting-measured" / "forgetting.csv")
    probe_ids, probes = read_forgetting_csv(folder / "forgetting-measured" / "measured.csv")
    assert ids == matrix.example_ids
    unprobed = np.array([i not in set(probe_ids) for i in ids])
    rmse = np.sqrt(np.mean((predicted[unprobed] - truth[unprobed]) ** 2))
    probe_mean_rmse = np.sqrt(np.mean((probes.mean() - truth[unprobed]) ** 2))
    assert rmse <= probe_mean_rmse * 1.02, (rmse, probe_mean_rmse)
