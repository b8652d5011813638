"""``hf-forgetting train``: fine-tune on a task with targeted replay of upstream examples (`ReplayTrainer`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.arguments import MonitorArguments, TaskArguments, UpstreamArguments
from .parsing import parse_training_stage


@dataclass
class TrainArguments(UpstreamArguments, TaskArguments, MonitorArguments):
    """What `train` fine-tunes on and replays: the task, the upstream pool (the shared fields of
    `UpstreamArguments` and `TaskArguments`), what is known of its forgetting, and the forgetting
    monitor (`MonitorArguments`, off unless `monitor_probes` > 0)."""

    task: str = field(kw_only=True, metadata={"help": "Task to fine-tune on: embedded name, local file or Hub id."})
    replay_scores_file: str | None = field(
        default=None, metadata={"help": "CSV example_id,forgetting (e.g. written by `predict`): replay by these scores."}
    )
    predictor_dir: str | None = field(default=None, metadata={"help": "A saved predictor (predicted / online strategies)."})
    known: str | None = field(default=None, metadata={"help": "CSV example_id,forgetting of measured entries (predicted)."})


def main(argv: list[str]) -> int:
    from trl import ModelConfig

    from ..completion import ForgettingPredictor
    from ..format.forgetting_csv import read_forgetting_csv
    from ..modeling import load_model_and_tokenizer, peft_config
    from ..replay import ReplayConfig, ReplayTrainer
    from ..training_data import prepare_training_rows

    args, replay_args, model_args = parse_training_stage((TrainArguments, ReplayConfig, ModelConfig), "train", argv)
    upstream = args.load_upstream()
    scores = _replay_scores(args.replay_scores_file, upstream["example_id"]) if args.replay_scores_file else None
    predictor = ForgettingPredictor.from_pretrained(args.predictor_dir) if args.predictor_dir else None
    known = read_forgetting_csv(args.known) if args.known else None
    model, tokenizer = load_model_and_tokenizer(model_args)
    prepared = prepare_training_rows(args.load_task(args.task), tokenizer, replay_args.max_length)
    prepared.check(args.task, replay_args.max_length, args.min_train_fraction, args.allow_hollow_rows)
    print(f"Training on {prepared.kept} of {prepared.requested} examples of {args.task} ({prepared.prompt_truncated} with a shortened prompt)")
    trainer = ReplayTrainer(
        model=model, args=replay_args, train_dataset=prepared.dataset, processing_class=tokenizer,
        peft_config=peft_config(model_args), replay_dataset=upstream, replay_scores=scores,
        replay_predictor=predictor, replay_known=known,
    )
    monitor = _add_monitor(args, upstream, trainer, replay_args.seed)
    trainer.train(resume_from_checkpoint=replay_args.resume_from_checkpoint)
    trainer.save_model()
    _print_outcome(trainer, monitor, replay_args.output_dir)
    return 0


def _replay_scores(scores_file: str, example_ids: list[str]) -> list[float]:
    """The scores of ``scores_file`` in the order of ``example_ids``; every upstream example needs one."""
    from ..format.forgetting_csv import read_forgetting_csv

    ids, values = read_forgetting_csv(scores_file)
    lookup = dict(zip(ids, values))
    missing = [i for i in example_ids if i not in lookup]
    if missing:
        raise ValueError(f"{scores_file}: no score for {len(missing)} upstream examples, e.g. {missing[:3]}")
    return [lookup[i] for i in example_ids]


def _add_monitor(args: TrainArguments, upstream, trainer, seed: int):
    """The forgetting monitor on upstream examples that are never replayed (all of them without replay), or None."""
    from ..monitor import ForgettingMonitorCallback

    heldout = set(trainer.heldout_ids)
    probes = upstream.filter(lambda row: row["example_id"] in heldout) if heldout else upstream
    monitor = ForgettingMonitorCallback.from_arguments(args, probes, trainer, seed=seed)
    if monitor is not None:
        trainer.add_callback(monitor)
    return monitor


def _print_outcome(trainer, monitor, output_dir: str) -> None:
    from pathlib import Path

    if monitor is not None and monitor.history:
        print(f"Forgetting monitor: probe mean {monitor.history[-1]['forgetting/probe_mean']:+.4f} at step "
              f"{monitor.history[-1]['step']}; plot {Path(output_dir) / 'forgetting_monitor.png'}")
    heldout_note = f"; {len(trainer.heldout_ids)} upstream examples held out (never replayed)" if trainer.heldout_ids else ""
    print(f"Model saved to {output_dir}{heldout_note}")
