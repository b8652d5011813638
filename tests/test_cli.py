"""The hf-forgetting command line: stages, help, recipes parsed into the real dataclasses, clear errors."""

from pathlib import Path

import pytest
from trl import ModelConfig, SFTConfig, TrlParser

from hf_forgetting import cli, sources
from hf_forgetting.collect import CollectArguments

RECIPES = sorted(Path(__file__).parent.parent.glob("recipes/**/collect/*.yaml"))


def test_help_lists_stages(capsys):
    assert cli.main(["--help"]) == 0
    assert "collect" in capsys.readouterr().out


def test_unknown_stage(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown stage 'frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(p.relative_to(p.parents[2])) for p in RECIPES])
def test_collect_recipes_parse_into_the_config_dataclasses(recipe):
    parser = TrlParser((CollectArguments, SFTConfig, ModelConfig))
    args, training, model = parser.parse_args_and_config(["--config", str(recipe), "--max_steps", "7"])
    assert training.max_steps == 7  # the command line overrides the recipe
    assert training.bf16 is False and training.gradient_checkpointing is False  # CPU-safe
    assert len(args.tasks) >= 10 and model.model_name_or_path


def test_recipes_exist():
    assert RECIPES


def test_unfetchable_source_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_FORGETTING_CACHE", str(tmp_path))

    def refuse(source, into):
        raise sources.SourceUnavailableError(f"Could not fetch {source.requirement} (registry unreachable)")

    monkeypatch.setattr(sources, "_download", refuse)
    recipe = RECIPES[0]
    code = cli.main(["collect", "--config", str(recipe), "--output_dir", str(tmp_path / "out")])
    assert code == 1
    assert "Could not fetch" in capsys.readouterr().err
