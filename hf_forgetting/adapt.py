"""Adapt a base model to the upstream examples: continued language-model training on them.

Replay can only *undo* forgetting when the upstream examples are data the base model was trained on
(in the paper: OLMo's Dolma, the instruct model's Tulu). The embedded SmolLM2 never saw the
SQuAD-shifts and Austen passages, so replaying them teaches new text instead. This stage makes the
faithful setting offline: it continues training the base model on the upstream examples (the
matrix's columns, plus optionally more passages of the same sources) until their NLL flattens, and
saves the result as a base checkpoint that collection and replay recipes name.

The output folder is a cache: ``adapt.json`` records the settings before training starts, a finished
folder of the same settings is reused once its saved files match the sizes and checksums recorded
with them, a killed run resumes from its last checkpoint, and a folder of
other (or unrecorded) settings is refused.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import concatenate_datasets

from .data.arguments import UpstreamArguments
from .files import atomic_write_text, file_inventory, inventory_problem
from .modeling import load_model_and_tokenizer, peft_config
from .run_settings import check_training_settings, in_native_precision, result_settings
from .scoring import score_examples
from .training_data import prepare_training_rows
from .training_guard import ParameterUpdateGuard

ADAPT_FILE = "adapt.json"


@dataclass
class AdaptArguments(UpstreamArguments):
    """The upstream examples to adapt to (the shared fields of `UpstreamArguments`), and a check set.

    Args:
        extra_upstream_examples (`int`, *optional*, defaults to `0`):
            More passages of the same sources to train on, beyond the upstream examples themselves.
        check_examples (`int`, *optional*, defaults to `100`):
            Passages of the same sources used in no training, scored before and after: adaptation must
            lower their NLL too (it learned the sources, not only the passages).
        score_max_length (`int`, *optional*, defaults to `64`):
            Tokens scored per passage (as the collection scores them).
    """

    extra_upstream_examples: int = field(default=0, metadata={"help": "More passages of the same sources to train on."})
    check_examples: int = field(default=100, metadata={"help": "Unseen passages of the same sources, scored before and after."})
    score_max_length: int = field(default=64, metadata={"help": "Tokens scored per passage."})

    def __post_init__(self):
        super().__post_init__()
        if self.extra_upstream_examples < 0 or self.check_examples < 1:
            raise ValueError("extra_upstream_examples must be >= 0 and check_examples >= 1")


def adapt_base_model(args: AdaptArguments, training_args, model_args) -> dict:
    """Adapt (or reuse the adapted) base model into `training_args.output_dir`; returns the report."""
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    check_training_settings(training_args)
    training_args = in_native_precision(training_args)
    output_dir = Path(training_args.output_dir)
    settings = _settings(args, training_args, model_args)
    report_path = output_dir / ADAPT_FILE
    if report_path.exists():
        report = _read_report(report_path)
        if report.get("settings") != settings:
            raise ValueError(f"{output_dir} holds a model adapted with other settings; use a new output_dir or delete it")
        if "nll_after" in report:
            problem = inventory_problem(output_dir, report.get("files") or {}) if report.get("files") else "no file list"
            if problem:
                raise ValueError(f"{output_dir} is a finished adaptation whose saved model cannot be reused ({problem}); "
                                 f"delete {report_path} to adapt again")
            print(f"Reusing the adapted model in {output_dir}")
            return report
    elif output_dir.exists() and any(output_dir.iterdir()):
        raise ValueError(f"{output_dir} is not empty and records no adapt settings; use a new output_dir or delete it")
    output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report_path, json.dumps({"settings": settings}, indent=2))  # checkpoints below are of these settings
    train_set, check_set = _passages(args)
    model, tokenizer = load_model_and_tokenizer(model_args)
    before = {name: _mean_nll(model, tokenizer, data, args) for name, data in (("trained", train_set), ("unseen", check_set))}
    rows = prepare_training_rows(train_set, tokenizer, training_args.max_length)
    # With an eval_strategy, the unseen passages' loss is logged as it goes: the curve shows when it flattens.
    check_rows = prepare_training_rows(check_set, tokenizer, training_args.max_length).dataset
    trainer = SFTTrainer(model=model, args=training_args, train_dataset=rows.dataset, processing_class=tokenizer,
                         eval_dataset=check_rows if training_args.eval_strategy != "no" else None,
                         peft_config=peft_config(model_args), callbacks=[ParameterUpdateGuard()])
    last = get_last_checkpoint(str(output_dir)) if output_dir.exists() else None
    result = trainer.train(resume_from_checkpoint=last)
    trainer.save_model(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    tuned = trainer.accelerator.unwrap_model(trainer.model)
    after = {name: _mean_nll(tuned, tokenizer, data, args) for name, data in (("trained", train_set), ("unseen", check_set))}
    report = {
        "settings": settings, "train_loss": float(result.training_loss), "steps": int(result.global_step),
        "trained_passages": len(train_set), "unseen_passages": len(check_set),
        "nll_before": before, "nll_after": after, "curve": _curve(trainer.state.log_history), **rows.counts(),
        "files": file_inventory(output_dir, _saved_files(output_dir)),
    }
    atomic_write_text(report_path, json.dumps(report, indent=2))
    print(f"Adapted {model_args.model_name_or_path} on {len(train_set)} upstream passages: mean NLL of the trained "
          f"passages {before['trained']:.3f} -> {after['trained']:.3f}, of {len(check_set)} unseen passages of the same "
          f"sources {before['unseen']:.3f} -> {after['unseen']:.3f}. Saved to {output_dir}")
    for point in report["curve"]:
        print("  " + ", ".join(f"{name} {value:.3f}" if name != "epoch" else f"epoch {value:.2f}" for name, value in point.items()))
    return report


def _read_report(path: Path) -> dict:
    """The adapt.json of a folder, or a one-line error naming it."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a readable adapt record ({error}); delete it to adapt again") from None
    if not isinstance(report, dict):
        raise ValueError(f"{path}: not a readable adapt record (a JSON {type(report).__name__}, not an object); "
                         "delete it to adapt again")
    return report


def _saved_files(output_dir: Path) -> list[str]:
    """The files of the saved model and tokenizer at the top of `output_dir` (checkpoints and the record aside)."""
    return sorted(path.name for path in output_dir.iterdir() if path.is_file() and path.name != ADAPT_FILE)


def _passages(args: AdaptArguments):
    """(passages to train on: the upstream examples + extra ones, passages of the same sources never trained on)."""
    upstream = args.load_upstream()
    everything = dataclasses.replace(args, num_upstream_examples=None).load_upstream()  # the same shuffle, all of it
    chosen = set(upstream["example_id"])
    rest = everything.filter(lambda row: row["example_id"] not in chosen)
    extra = rest.select(range(min(args.extra_upstream_examples, len(rest))))
    check = rest.select(range(len(extra), min(len(rest), len(extra) + args.check_examples)))
    train = concatenate_datasets([upstream, extra]) if len(extra) else upstream
    return train, check


def _curve(log_history: list[dict]) -> list[dict]:
    """Per logged epoch: the training loss and, where evaluated, the unseen passages' loss (token mean)."""
    curve: dict[float, dict] = {}
    for entry in log_history:
        for name in ("loss", "eval_loss"):
            if name in entry and "epoch" in entry:
                curve.setdefault(round(entry["epoch"], 2), {"epoch": round(entry["epoch"], 2)})[name] = float(entry[name])
    return list(curve.values())


def _mean_nll(model, tokenizer, dataset, args: AdaptArguments) -> float:
    return float(np.nanmean(score_examples(model, tokenizer, dataset, max_length=args.score_max_length, show_progress=False)))


def _settings(args, training_args, model_args) -> dict:
    return json.loads(json.dumps({"adapt": dataclasses.asdict(args), "training": result_settings(training_args),
                                  "model": dataclasses.asdict(model_args)}, default=str))
