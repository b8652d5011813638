"""What did *my* fine-tuned model forget? `measure_forgetting` answers for any checkpoint.

k upstream probes (default 30, drawn with a seed) are scored under the base model and under the
fine-tuned checkpoint (full weights or a LoRA adapter, trained anywhere); their forgetting (NLL
after minus NLL before, the scorer's convention) is folded into a predictor to complete the whole
upstream row. Written to `output_dir`:

- `forgetting.csv`: the predicted row, `example_id,forgetting` (what `predict`, `train` and the
  Space read); `measured.csv`: the k measured probes in the same schema;
- `forgetting_row.parquet`: the predicted row with the probes in its metadata (`format.predicted_row`);
- `histogram.png`: the predicted row, the measured probes marked;
- `summary.md`: one paragraph and the top-N most forgotten examples with their text.

The upstream examples come from a forgetting matrix (its columns, reloaded from the sources its
metadata names; an MF predictor is fitted on it unless one is given) or from `UpstreamArguments`
(then a predictor over the same examples completes the row; without one, only the probes are measured).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from accelerate import PartialState

from .completion import ForgettingPredictor, MFPredictor
from .completion.calibration import CompletedRow
from .data.arguments import UpstreamArguments
from .data.matrix_sources import collect_settings, example_text, load_matrix_upstream
from .files import atomic_write_text
from .format.forgetting_csv import write_forgetting_csv
from .format.predicted_row import write_predicted_row
from .matrix import ForgettingMatrix
from .modeling import load_checkpoint, load_model_and_tokenizer, model_identity
from .monitor import probe_indices
from .scoring import score_examples

if TYPE_CHECKING:
    from datasets import Dataset

DEFAULT_SCORE_MAX_LENGTH = 128
# A fine-tune's weights stay aligned with the base's (cosine near 1); an unrelated model's are orthogonal (near 0).
MIN_FINE_TUNE_SIMILARITY = 0.3
IMPLAUSIBLE_SHIFT = 2.0  # nats of mean |forgetting| over the probes


@dataclass
class MeasureArguments(UpstreamArguments):
    """What to measure: the fine-tuned checkpoint (the base model is `model_name_or_path`), the upstream
    examples (a matrix's, or the shared `UpstreamArguments`), the probes and the predictor.

    Args:
        checkpoint (`str`):
            The fine-tuned model: a folder or Hub id, full weights or a LoRA / PEFT adapter of the base model.
        matrix (`str`, *optional*):
            A forgetting matrix (folder or Hub dataset repo) of the same base model: its upstream examples
            are measured, and an MF predictor fitted on it completes the row unless `predictor` is given.
        predictor (`str`, *optional*):
            A saved predictor (folder or Hub repo) over the same upstream examples.
        k (`int`, *optional*, defaults to `30`):
            Upstream probes measured.
        seed (`int`, *optional*, defaults to `0`):
            Seed of the probe draw.
        score_max_length (`int`, *optional*):
            Tokens scored per probe (default: the matrix's or predictor's, as its entries were measured).
        top (`int`, *optional*, defaults to `20`):
            Most forgotten examples listed with their text.
        output_dir (`str`, *optional*, defaults to `"forgetting-measured"`):
            Where the outputs go.
    """

    checkpoint: str = field(kw_only=True, metadata={"help": "The fine-tuned model: folder or Hub id, full weights or a LoRA adapter."})
    matrix: str | None = field(default=None, metadata={"help": "A forgetting matrix (folder or Hub repo): its upstream examples and an MF predictor."})
    predictor: str | None = field(default=None, metadata={"help": "A saved predictor (folder or Hub repo) over the same upstream examples."})
    k: int = field(default=30, metadata={"help": "Upstream probes measured before and after."})
    seed: int = field(default=0, metadata={"help": "Seed of the probe draw."})
    score_max_length: int | None = field(default=None, metadata={"help": "Tokens scored per probe (default: the matrix's)."})
    top: int = field(default=20, metadata={"help": "Most forgotten examples listed with their text."})
    output_dir: str = field(default="forgetting-measured", metadata={"help": "Where the outputs go."})

    def __post_init__(self):
        super().__post_init__()
        if self.k < 1 or self.top < 1:
            raise ValueError(f"k and top must be >= 1; got k={self.k}, top={self.top}")
        if self.score_max_length is not None and self.score_max_length < 2:
            raise ValueError(f"score_max_length must be >= 2; got {self.score_max_length}")


@dataclass
class MeasuredForgetting:
    """The probes' measured forgetting and, with a predictor, the completed row (aligned with `example_ids` and
    with `upstream`, the upstream examples themselves: what `ReplayTrainer(replay_dataset=...)` takes), with
    a 95% interval for each value in `completed`."""

    upstream: Dataset
    example_ids: list[str]
    probe_ids: list[str]
    probe_forgetting: np.ndarray
    predicted: np.ndarray | None
    summary: str
    files: dict[str, Path]
    completed: CompletedRow | None = None  # the predicted row's intervals and what the probes say about it


def measure_forgetting(args: MeasureArguments, model_args) -> MeasuredForgetting:
    """Measure `args.checkpoint` against the base model `model_args` and write the outputs (module docstring)."""
    matrix = _load_matrix(args.matrix) if args.matrix else None
    upstream = load_matrix_upstream(matrix) if matrix is not None else args.load_upstream()
    example_ids = list(upstream["example_id"])
    predictor = _predictor(args, matrix, example_ids)
    length = args.score_max_length or _recorded_length(matrix, predictor)
    probes = upstream.select(probe_indices(len(upstream), args.k, args.seed))

    device = PartialState().device
    base, tokenizer = load_model_and_tokenizer(model_args, device=device)
    before = score_examples(base, tokenizer, probes, max_length=length, show_progress=False)
    base_weights = weight_sample(base)
    del base
    probes, before = _scorable(probes, before, "has no token to score")
    tuned, _ = load_checkpoint(args.checkpoint, model_args)
    check_fine_tune_of(base_weights, tuned, args.checkpoint, model_args.model_name_or_path)
    after = score_examples(tuned.to(device), tokenizer, probes, max_length=length, show_progress=False)
    probes, forgetting = _scorable(probes, (after - before).astype(np.float64), f"has a non-finite NLL under {args.checkpoint}")
    if np.abs(forgetting).mean() > IMPLAUSIBLE_SHIFT:
        warnings.warn(f"The probes' NLL moved by {np.abs(forgetting).mean():.2f} nats on average under {args.checkpoint}: far "
                      "more than fine-tuning moves it; is it a fine-tune of this base model, scored with its tokenizer?", stacklevel=2)
    probe_ids = list(probes["example_id"])
    completed = predictor.complete_row(probe_ids, forgetting) if predictor is not None else None
    predicted = completed.values if completed is not None else None

    output_dir = Path(args.output_dir)
    files = {"measured.csv": write_forgetting_csv(output_dir / "measured.csv", probe_ids, forgetting)}
    if predicted is not None:
        files["forgetting.csv"] = write_forgetting_csv(output_dir / "forgetting.csv", example_ids, predicted,
                                                       completed.lower, completed.upper)
        measured = {"probe_ids": probe_ids, "probe_forgetting": forgetting.tolist(), "base_model": model_args.model_name_or_path,
                    "checkpoint": args.checkpoint, "score_max_length": length}
        files["forgetting_row.parquet"] = write_predicted_row(output_dir / "forgetting_row.parquet", example_ids, predicted, 0, measured)
        files["histogram.png"] = _histogram(predicted, forgetting, output_dir / "histogram.png")
    summary = _summary(args, model_args, upstream, probe_ids=probe_ids, forgetting=forgetting, completed=completed,
                       predictor=predictor, length=length)
    files["summary.md"] = atomic_write_text(output_dir / "summary.md", summary)
    return MeasuredForgetting(upstream, example_ids, probe_ids, forgetting, predicted, summary, files, completed)


def weight_sample(model, per_tensor: int = 4096) -> dict[str, tuple[tuple[int, ...], np.ndarray]]:
    """Each weight's shape and a fixed sample of its entries (a few MB for any model), to compare a checkpoint with."""
    return {name: (tuple(tensor.shape), weight_sample_of(tensor, min(per_tensor, tensor.numel())))
            for name, tensor in _base_weights(model).items()}


def check_fine_tune_of(base: dict, tuned, checkpoint: str, base_name: str) -> None:
    """Refuse a checkpoint that is not a fine-tune of the base: other weights or shapes (another architecture or
    vocabulary), or weights as unrelated to the base's as another model's (``base``: :func:`weight_sample`)."""
    weights = _base_weights(tuned)
    missing = sorted(set(base) - set(weights))
    reshaped = [name for name in base if name in weights and tuple(weights[name].shape) != base[name][0]]
    if missing or reshaped:
        example = reshaped[0] if reshaped else missing[0]
        detail = (f"{example} has shape {tuple(weights[example].shape)}, the base's {base[example][0]}" if reshaped
                  else f"it lacks {example}")
        raise ValueError(f"{checkpoint} is not a fine-tune of {base_name}: {len(missing) + len(reshaped)} weights differ in "
                         f"name or shape ({detail}); another architecture or vocabulary?")
    similarities = []
    for name, (_, sampled) in base.items():
        now = weight_sample_of(weights[name], len(sampled))
        norms = np.linalg.norm(sampled) * np.linalg.norm(now)
        if norms > 0:
            similarities.append(float(sampled @ now) / norms)
    similarity = float(np.median(similarities)) if similarities else 1.0
    if similarity < MIN_FINE_TUNE_SIMILARITY:
        raise ValueError(f"{checkpoint} is not a fine-tune of {base_name}: its weights are as unrelated to the base's as another "
                         f"model's (median cosine similarity over tensors {similarity:.2f}; a fine-tune keeps it near 1)")


def weight_sample_of(tensor, count: int) -> np.ndarray:
    flat = tensor.detach().reshape(-1)
    return flat[np.linspace(0, flat.numel() - 1, num=count, dtype=np.int64)].float().cpu().numpy()


def _base_weights(model) -> dict:
    """The model's own weights by name (a PEFT model's base weights under their names in the base, without its adapters)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    weights = {}
    for name, tensor in model.named_parameters():
        if "lora_" in name or ".modules_to_save." in name:
            continue
        weights[name.replace(".base_layer.", ".").replace(".original_module.", ".")] = tensor
    return weights


def _scorable(probes: Dataset, values: np.ndarray, problem: str) -> tuple[Dataset, np.ndarray]:
    """The probes whose value is finite, with a warning naming those dropped; an error when none is left."""
    finite = np.isfinite(values)
    if finite.all():
        return probes, values
    dropped = [probes[int(i)]["example_id"] for i in np.flatnonzero(~finite)]
    if not finite.any():
        raise ValueError(f"Every one of the {len(dropped)} probes {problem}: nothing was measured")
    warnings.warn(f"{len(dropped)} of {len(values)} probes dropped: each {problem} (e.g. {dropped[:3]})", stacklevel=3)
    return probes.select(np.flatnonzero(finite).tolist()), values[finite]


def _load_matrix(source: str) -> ForgettingMatrix:
    path = Path(source)
    if (path / "matrix").is_dir():
        path = path / "matrix"  # a collect output folder
    return ForgettingMatrix.load(path) if path.exists() else ForgettingMatrix.from_hub(source)


def _predictor(args: MeasureArguments, matrix: ForgettingMatrix | None, example_ids: list[str]) -> ForgettingPredictor | None:
    if args.predictor:
        predictor = ForgettingPredictor.from_pretrained(args.predictor)
        if predictor.example_ids != example_ids:
            raise ValueError(f"The predictor {args.predictor!r} was fitted on other upstream examples than the ones measured "
                             f"({len(predictor.example_ids)} vs {len(example_ids)}; give its --matrix)")
    elif matrix is not None:
        predictor = MFPredictor.fitted_on(matrix)
    else:
        return None
    if predictor.metric != "nll_increase":
        raise ValueError(f"measure compares NLLs; the predictor was fitted on {predictor.metric!r}")
    return predictor


def _recorded_length(matrix: ForgettingMatrix | None, predictor: ForgettingPredictor | None) -> int:
    """The score_max_length the matrix's entries were measured with (else the predictor's, else 128)."""
    if matrix is not None:
        length = collect_settings(matrix).get("score_max_length")
        if length:
            return length
    if predictor is not None and predictor.source.get("score_max_length"):
        return predictor.source["score_max_length"]
    return DEFAULT_SCORE_MAX_LENGTH


def _histogram(predicted: np.ndarray, measured: np.ndarray, path: Path) -> Path:
    from .plots import pyplot

    plt = pyplot()
    figure, axes = plt.subplots(figsize=(6, 3.4), constrained_layout=True)
    bins = np.histogram_bin_edges(np.concatenate([predicted, measured]), bins=40)
    axes.hist(predicted, bins=bins, color="#c0392b", alpha=0.75, label=f"predicted, all {len(predicted)} examples")
    axes.hist(measured, bins=bins, color="black", histtype="step", linewidth=1.5, label=f"measured probes ({len(measured)})")
    axes.axvline(0, color="gray", linewidth=0.8)
    axes.set(xlabel="forgetting (increase in mean token NLL)", ylabel="upstream examples",
             title="What the fine-tuned model forgot (predicted from the probes)")
    axes.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def _summary(args, model_args, upstream, *, probe_ids, forgetting, completed, predictor, length) -> str:
    """The paragraph and the top-N table (texts read for those N examples only; `upstream` is in column order)."""
    example_ids = upstream["example_id"]
    base = model_args.model_name_or_path
    lines = [f"# Forgetting of `{args.checkpoint}` against `{base}`", ""]
    measured = (f"{len(probe_ids)} upstream probes (scored on {length} tokens) forget {forgetting.mean():+.4f} nats on average "
                f"(SD {forgetting.std():.4f}; {np.mean(forgetting > 0):.0%} forgotten, i.e. NLL up).")
    if completed is None:
        lines += [measured + " Give a matrix or predictor of this base model (`--matrix`, `--predictor`) to complete "
                  f"the row of all {len(example_ids)} upstream examples.", ""]
        return "\n".join(lines)
    predicted = completed.values
    top = np.argsort(-predicted, kind="stable")[: args.top]
    lines += [
        measured + f" Completed by {type(predictor).__name__} over {len(example_ids)} examples: predicted mean "
        f"{predicted.mean():+.4f}, {np.mean(predicted > 0):.0%} predicted forgotten. " + " ".join(completed.sentences()), "",
        f"The {len(top)} predicted to be forgotten most (replay them first: `hf-forgetting train --replay_strategy predicted "
        "--replay_scores_file forgetting.csv`):", "",
        "| rank | example_id | predicted | 95% interval | text |", "| ---: | --- | ---: | --- | --- |",
    ]
    for rank, j in enumerate(top, start=1):
        text = " ".join(example_text(upstream[int(j)]).split())
        lines.append(f"| {rank} | {example_ids[j]} | {predicted[j]:+.4f} | {completed.interval_text(int(j))} | "
                     f"{text[:160].replace('|', '/')}{'...' if len(text) > 160 else ''} |")
    if predictor.source.get("base_model") and model_identity(predictor.source["base_model"]) != model_identity(base):
        lines += ["", f"_Note: the predictor's matrix was measured on `{predictor.source['base_model']}`, not `{base}`._"]
    return "\n".join(lines) + "\n"
