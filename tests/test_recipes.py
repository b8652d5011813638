"""Every recipe and accelerate config parses into the real config classes, so a typo fails here."""

from pathlib import Path

import pytest
import yaml
from trl import ModelConfig, SFTConfig, TrlParser

from hf_forgetting.cli.train import TrainArguments
from hf_forgetting.collect import CollectArguments
from hf_forgetting.data import EMBEDDED_TASKS
from hf_forgetting.data import _split_filter as split_filter
from hf_forgetting.replay import ReplayConfig
from hf_forgetting.replay.experiment import ReplayExperimentArguments

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
COLLECT = sorted(RECIPES.glob("*/collect/*.yaml"))
REPLAY = sorted(RECIPES.glob("*/replay/*.yaml"))
ACCELERATE = sorted((RECIPES / "accelerate_configs").glob("*.yaml"))
MODELS = sorted(path.parent for path in RECIPES.glob("*/collect"))
# GPU recipes ask for bf16, which TrainingArguments refuses on a machine without a GPU unless
# use_cpu is set; CI has no GPU, so parsing adds it (the rest of the recipe is checked as written).
ON_CPU = ["--use_cpu", "true"]


def _id(path):
    return str(path.relative_to(RECIPES))


def test_the_expected_recipes_exist():
    assert {m.name for m in MODELS} >= {"smollm2-135m-instruct", "smollm2-135m", "smollm2-360m", "olmo-1b", "pythia-1b"}
    assert {p.stem for p in ACCELERATE} >= {"cpu", "cpu_2proc", "ddp", "fsdp", "deepspeed_zero3"}
    for model in MODELS:
        stages = {p.parent.name for p in model.glob("*/*.yaml")}
        assert stages >= {"collect", "replay"} and stages <= {"adapt", "collect", "replay"}, model
        assert any("online" in p.read_text() for p in (model / "replay").glob("*.yaml")), f"{model}: no online replay recipe"


@pytest.mark.parametrize("recipe", COLLECT, ids=_id)
def test_collect_recipes_parse_and_flags_override(recipe):
    parser = TrlParser((CollectArguments, SFTConfig, ModelConfig))
    args, training, model = parser.parse_args_and_config(["--config", str(recipe), "--max_steps", "7", *ON_CPU])
    assert training.max_steps == 7  # the command line overrides the recipe
    assert model.model_name_or_path and args.tasks
    for task in args.tasks:
        source, column, value = split_filter(task)
        assert task in EMBEDDED_TASKS or "/" in source, task
        assert (column is None) == (value is None)
    if training.chat_template_path:
        assert (ROOT / training.chat_template_path).is_file(), training.chat_template_path
    if model.model_name_or_path.startswith("embedded:"):
        assert training.bf16 is False and training.gradient_checkpointing is False  # runs on a CPU


@pytest.mark.parametrize("model", ["olmo-1b", "pythia-1b"])
def test_paper_recipes_use_the_papers_training_settings(model):
    parser = TrlParser((CollectArguments, SFTConfig, ModelConfig))
    args, training, _ = parser.parse_args_and_config(["--config", str(RECIPES / model / "collect" / "config_paper.yaml"), *ON_CPU])
    assert training.learning_rate == 2e-6 and training.max_steps == 1000 and training.max_length == 1024
    assert training.per_device_train_batch_size * training.gradient_accumulation_steps == 8
    assert training.bf16 is True and len(args.tasks) == 19 and args.num_upstream_examples == 10000


@pytest.mark.parametrize("recipe", REPLAY, ids=_id)
def test_replay_recipes_parse(recipe):
    arguments = ReplayExperimentArguments if "experiment" in recipe.stem else TrainArguments
    parser = TrlParser((arguments, ReplayConfig, ModelConfig))
    stage_args, replay, model = parser.parse_args_and_config(["--config", str(recipe), "--replay_ratio", "0.5", *ON_CPU])
    assert replay.replay_ratio == 0.5
    if arguments is TrainArguments:
        assert replay.replay_strategy in ("predicted", "online")
        assert stage_args.task and (stage_args.predictor_dir or stage_args.replay_scores_file)


@pytest.mark.parametrize("config", ACCELERATE, ids=_id)
def test_accelerate_configs_load_with_accelerate(config):
    from accelerate.commands.config.config_args import load_config_from_file

    loaded = load_config_from_file(str(config))
    raw = yaml.safe_load(config.read_text())
    assert loaded.num_processes == raw["num_processes"]
    assert str(loaded.distributed_type).split(".")[-1] == raw["distributed_type"]


def test_the_two_process_cpu_config_uses_the_torchrun_launcher():
    """MULTI_CPU without mpirun, or use_cpu in the accelerate config, makes accelerate start ONE process."""
    raw = yaml.safe_load((RECIPES / "accelerate_configs" / "cpu_2proc.yaml").read_text())
    assert raw["distributed_type"] == "MULTI_GPU" and raw["num_processes"] == 2 and raw["use_cpu"] is False


@pytest.mark.parametrize("model", MODELS, ids=lambda p: p.name)
def test_each_recipe_folder_says_how_to_launch_it_and_what_it_costs(model):
    readme = (model / "README.md").read_text()
    assert "accelerate launch" in readme and "-m hf_forgetting" in readme
    assert "cost" in readme.lower()


def test_embedded_recipes_ship_inside_the_package():
    from hf_forgetting.recipes import recipe_path

    packaged = recipe_path("collect", "config_demo.yaml")
    assert packaged.parent.parent.parent.name == "recipes" and "hf_forgetting" in packaged.parts
    assert (RECIPES / "smollm2-135m-instruct").resolve() == packaged.parent.parent.resolve()  # one copy, linked
    with pytest.raises(FileNotFoundError, match="No packaged recipe 'collect/nope.yaml'"):
        recipe_path("collect", "nope.yaml")


def test_adapt_recipe_parses_into_the_adapt_stage_dataclasses():
    from hf_forgetting.adapt import AdaptArguments

    recipe = RECIPES / "smollm2-135m-instruct" / "adapt" / "config_adapt.yaml"
    parser = TrlParser((AdaptArguments, SFTConfig, ModelConfig))
    args, training, model = parser.parse_args_and_config(["--config", str(recipe), "--use_cpu", "true"])
    collect = yaml.safe_load((RECIPES / "smollm2-135m-instruct" / "collect" / "config_demo.yaml").read_text())
    assert (args.num_upstream_examples, args.upstream_seed) == (collect["num_upstream_examples"], collect["upstream_seed"])
    adapted = yaml.safe_load((RECIPES / "smollm2-135m-instruct" / "collect" / "config_adapted.yaml").read_text())
    assert adapted["model_name_or_path"] == training.output_dir  # the collection starts from the adapted base


@pytest.mark.parametrize("experiment, collection", [
    ("replay/config_experiment.yaml", "collect/config_demo.yaml"),
    ("replay/config_experiment_adapted.yaml", "collect/config_adapted.yaml"),
])
def test_each_replay_experiment_fine_tunes_as_its_matrix_was_collected(experiment, collection):
    """The experiment refuses settings other than the matrix's: its shipped recipes must not differ."""
    import numpy as np

    from hf_forgetting import ForgettingMatrix
    from hf_forgetting.collect import run_settings
    from hf_forgetting.replay.experiment import check_matrix_training_settings
    from hf_forgetting.run_settings import in_native_precision

    folder = RECIPES / "smollm2-135m-instruct"
    collect_args, training, model = TrlParser((CollectArguments, SFTConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(folder / collection), *ON_CPU])
    matrix = ForgettingMatrix(np.zeros((2, 3)), ["a", "b"], ["x", "y", "z"],
                              metadata={"settings": run_settings(collect_args, in_native_precision(training), model)})
    experiment_args, replay, experiment_model = TrlParser((ReplayExperimentArguments, ReplayConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(folder / experiment), *ON_CPU])
    assert check_matrix_training_settings(experiment_args, matrix, replay, experiment_model) == []
    assert replay.replay_heldout_size == collect_args.num_upstream_examples // 2
    changed = TrlParser((ReplayExperimentArguments, ReplayConfig, ModelConfig)).parse_args_and_config(
        ["--config", str(folder / experiment), *ON_CPU, "--learning_rate", "3e-4"])
    with pytest.raises(ValueError, match="training.learning_rate"):
        check_matrix_training_settings(changed[0], matrix, changed[1], changed[2])
