"""Parsing a stage's options: TRL's ``TrlParser`` (``--config recipe.yaml``, flags override it), with the
recipe's values checked against the dataclasses' types and short help for the training stages."""

from __future__ import annotations

# The Trainer options most recipes set, named in the short help; `--help-trainer` lists all of them.
COMMON_TRAINER_OPTIONS = (
    "--output_dir", "--max_steps", "--num_train_epochs", "--per_device_train_batch_size", "--gradient_accumulation_steps",
    "--learning_rate", "--lr_scheduler_type", "--max_length", "--bf16", "--seed", "--save_strategy", "--report_to",
)

RECIPE_HELP = "--config RECIPE.yaml reads the options from a recipe; flags given as well override it."


def parse_stage(dataclass_type, argv: list[str], stage: str, positional: str | tuple[str, ...] = ()):
    """TrlParser semantics (--config YAML, flags override), plus optional leading positional arguments."""
    names = (positional,) if isinstance(positional, str) else positional
    leading = []
    for name in names:
        if argv and not argv[0].startswith("-"):
            leading += [f"--{name}", argv[0]]
            argv = argv[1:]
    argv = [*leading, *argv]
    check_recipe_types(argv, (dataclass_type,))
    (args,) = stage_parser((dataclass_type,), stage).parse_args_and_config(argv)
    return args


def parse_training_stage(dataclass_types: tuple, stage: str, argv: list[str]):
    """Parse a stage that trains, `(own arguments, training config, ModelConfig)`: `--help` shows the
    options the training config adds to SFTConfig (the replay options of `ReplayConfig`), the stage's own
    and the model's, and names the Trainer options that `--help-trainer` lists in full."""
    parser = stage_parser(dataclass_types, stage)
    if "--help-trainer" in argv:
        parser.print_help()
        raise SystemExit(0)
    if "-h" in argv or "--help" in argv:
        _print_training_help(dataclass_types, stage)
        raise SystemExit(0)
    check_recipe_types(argv, dataclass_types)
    return parser.parse_args_and_config(without_accelerator(argv))


def _print_training_help(dataclass_types: tuple, stage: str) -> None:
    import textwrap
    from dataclasses import fields

    from trl import SFTConfig

    own, training, model = dataclass_types
    added = [_options_of(training, f"replay ({training.__name__})", exclude=SFTConfig)]
    sections = (*(added if training is not SFTConfig else []), _options_of(own, f"{stage} ({own.__name__})"),
                _options_of(model, "model (trl.ModelConfig)"))
    trainer = (f"training: the options of {training.__name__} (transformers.TrainingArguments + TRL), e.g. "
               f"{', '.join(COMMON_TRAINER_OPTIONS)}; all {len(fields(training))} of them with "
               f"`hf-forgetting {stage} --help-trainer`.")
    epilog = textwrap.fill(trainer, 100) + "\n\n" + RECIPE_HELP
    usage = f"hf-forgetting {stage} [--config RECIPE.yaml] [--option value ...]"
    stage_parser(sections, stage, epilog, usage=usage).print_help()


def _options_of(cls, group: str, exclude=None):
    """A help-only copy of dataclass `cls` in its own argument group: its fields, less those of `exclude`."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    skipped = {f.name for f in dataclasses.fields(exclude)} if exclude else set()
    specs = []
    own_first = sorted(dataclasses.fields(cls), key=lambda spec: spec.name not in vars(cls).get("__annotations__", {}))
    for spec in own_first:
        if spec.name in skipped or not spec.init:
            continue
        default = ({"default": spec.default} if spec.default is not dataclasses.MISSING
                   else {"default_factory": spec.default_factory} if spec.default_factory is not dataclasses.MISSING else {})
        specs.append((spec.name, hints[spec.name], dataclasses.field(metadata=spec.metadata, **default)))
    options = dataclasses.make_dataclass(cls.__name__, specs, kw_only=True)
    options._argument_group_name = group
    return options


def stage_parser(dataclass_types: tuple, stage: str, epilog: str | None = None, usage: str | None = None):
    """TRL's parser for a stage (`--config recipe.yaml`, flags override it); a bad value is one line
    naming the flag, not the whole usage block (hundreds of lines for the training stages)."""
    import argparse

    from trl import TrlParser

    class StageParser(TrlParser):
        def error(self, message):
            self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")

    return StageParser(dataclass_types, prog=f"hf-forgetting {stage}", formatter_class=argparse.RawDescriptionHelpFormatter,
                       usage=usage, epilog=epilog or RECIPE_HELP)


def without_accelerator(argv: list[str]) -> list[str]:
    """Training arguments as given, plus ``--use_cpu true`` on a machine without an accelerator.

    Recipes say ``bf16: true`` as on a GPU; transformers refuses bf16 on a CPU unless `use_cpu` is set,
    and then trains in CPU bf16 autocast (fp32 weights), so one recipe runs on both.
    """
    from ..modeling import has_accelerator

    if has_accelerator() or any(arg.startswith("--use_cpu") for arg in argv) or "use_cpu" in recipe_settings(argv):
        return argv  # an explicit choice, on the command line or in the recipe, stays
    return [*argv, "--use_cpu", "true"]


def check_recipe_types(argv: list[str], dataclass_types) -> None:
    """Refuse a recipe value of the wrong kind (``max_steps: [2]``, ``num_upstream_examples: "ten"``) in one line
    naming the setting: argparse does not convert or check a recipe's values, and the dataclasses would fail on them
    with a TypeError far from the recipe."""
    import typing

    settings = recipe_settings(argv)
    for cls in dataclass_types:
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - annotations this check cannot resolve are left to the dataclass
            continue
        for name, value in settings.items():
            if name in hints and not _is_of_type(value, hints[name]):
                raise ValueError(f"recipe setting {name}: {value!r:.80} is not {_type_name(hints[name])}")


def _is_of_type(value, hint) -> bool:
    """Whether a YAML value fits a field's annotation (scalars, None, lists of scalars; other kinds pass)."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_of_type(value, option) for option in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (typing.Any,)
        return isinstance(value, list) and all(_is_of_type(v, item) for v in value)
    if isinstance(value, str) and hint in (int, float, bool):  # argparse converts it as a flag's value, or says why not
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return True


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def recipe_settings(argv: list[str]) -> dict:
    """The settings of the recipe named by ``--config`` (empty without one; a bad file is TrlParser's to report)."""
    import yaml

    for flag, value in zip(argv, argv[1:]):
        if flag == "--config":
            try:
                with open(value) as file:
                    settings = yaml.safe_load(file)
            except (OSError, yaml.YAMLError):
                return {}
            return settings if isinstance(settings, dict) else {}
    return {}


def check_at_least(args, **minimums) -> None:
    for name, minimum in minimums.items():
        if getattr(args, name) < minimum:
            raise ValueError(f"{name} must be >= {minimum}; got {getattr(args, name)}")
