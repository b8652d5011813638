"""The ``hf-forgetting`` command: one sub-command per stage, each configured by a recipe YAML.

    hf-forgetting collect --config recipes/smollm2-135m-instruct/collect/config_demo.yaml
    accelerate launch -m hf_forgetting collect --config <recipe> [--flag value ...]

Flags given on the command line override the recipe's values (TRL's ``TrlParser`` semantics). Each stage is a
module of this package with a ``main(argv)``, imported only when its stage runs, so that ``--help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

# stage -> (module of this package, one line of help)
STAGES = {
    "demo": ("demo", "the embedded default end to end: collect a 12 x 200 matrix, analyse it, compare predictors, fit one"),
    "adapt": ("adapt", "continue training the base model on the upstream examples, so that replay undoes forgetting (cached)"),
    "collect": ("collect", "fine-tune the base model on each task and record the forgetting matrix (resumable)"),
    "analyze": ("analyze", "how low-rank is a matrix: R^2 by rank, simpler models, spectrum, plots"),
    "evaluate": ("evaluate", "hold tasks out, reveal k entries each, compare predictors (RMSE / F1 / AUC table)"),
    "fit": ("fit", "fit a predictor on a matrix and save it (safetensors + JSON)"),
    "measure": ("measure", "what did my fine-tuned checkpoint (full or LoRA) forget? k probes measured, the whole row predicted"),
    "predict": ("predict", "complete a new task's row from a CSV of measured entries with a saved predictor"),
    "train": ("train", "fine-tune on a task with targeted replay of upstream examples (ReplayTrainer)"),
    "replay-experiment": ("replay_experiment", "hold tasks out of a matrix; compare no / random / predicted / ground-truth replay"),
    "push": ("push", "push a matrix (new repo, or new task rows to an existing one) or a predictor to a Hub dataset repo"),
    "pull": ("pull", "download a matrix (all contributions merged) or a predictor from a Hub dataset repo"),
}


def stage_main(stage: str):
    """The ``main(argv) -> int`` of a stage's module."""
    return importlib.import_module(f"{__name__}.{STAGES[stage][0]}").main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"hf-forgetting: unknown stage {stage!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    finished = False
    try:
        status = stage_main(stage)(rest)
        finished = True
        return status
    except _user_errors() as error:
        print(f"hf-forgetting {stage}: {_one_line(error)}", file=sys.stderr)  # bad input: a message, not a traceback
        return 1
    finally:
        _release_process_group(finished)


def _usage() -> str:
    lines = ["usage: hf-forgetting <stage> --config <recipe.yaml> [--flag value ...]", "", "stages:"]
    lines += [f"  {name:<18} {help_}" for name, (_, help_) in STAGES.items()]
    lines += ["", "`hf-forgetting <stage> --help` lists a stage's options."]
    return "\n".join(lines)


def _release_process_group(finished: bool) -> None:
    """Destroy the process group that `accelerate launch`/torchrun formed before the interpreter exits:
    left alive, gloo's worker threads can abort the process (SIGABRT, exit status -6) after all its work is
    done, and the launcher then reports the finished job as failed (a PyTorch bug: https://github.com/pytorch/pytorch/issues/179291)."""
    import torch.distributed

    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    from accelerate import PartialState

    state = PartialState()
    if finished:
        state.wait_for_everyone()  # no process closes connections another still reads from
    state.destroy_process_group()  # after an error, without waiting: the others may never arrive


def _user_errors() -> tuple[type[Exception], ...]:
    """The error types that describe bad input or an unreachable resource; anything else is a bug and
    keeps its traceback."""
    import yaml
    from huggingface_hub.errors import HfHubHTTPError

    from ..errors import HfForgettingError
    from ..hub.transport import transport_errors

    # OSError: files and network (a missing folder, an output path that is a file, a full disk, an
    # unreachable Hub), the environment rather than the code; httpx's transport errors: a refused or
    # dropped connection to the Hub
    return (HfForgettingError, HfHubHTTPError, OSError, ValueError, yaml.YAMLError, *transport_errors())


def _one_line(error: Exception) -> str:
    from ..hub.transport import transport_errors

    if isinstance(error, transport_errors()) and not isinstance(error, OSError):
        from huggingface_hub import constants

        reason = " ".join(str(error).split()) or type(error).__name__
        return (f"the connection to the Hub at {constants.ENDPOINT} failed ({type(error).__name__}: {reason[:200]}). "
                "Run the same command again once it is reachable: what already landed is kept and not sent twice.")
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) < 2000 else text[:2000] + " ..."
