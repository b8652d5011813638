"""``hf-forgetting demo``: the embedded default end to end (collect, analyse, evaluate, fit) from any directory."""

from __future__ import annotations

from dataclasses import dataclass, field

from .parsing import check_at_least, parse_stage, recipe_settings


@dataclass
class DemoArguments:
    output_root: str = field(
        default="outputs/smollm2-135m-instruct", metadata={"help": "Folder of the demo's outputs (collect-demo/, predictor/)."}
    )
    collect_jobs: int | None = field(
        default=None,
        metadata={"help": "Collection jobs run side by side, each on its share of the CPU cores and every n-th task "
                          "(default: 2 on a CPU with 2 or more cores, 1 with an accelerator)."},
    )

    def __post_init__(self):
        if self.collect_jobs is not None:
            check_at_least(self, collect_jobs=1)


def main(argv: list[str]) -> int:
    """The four stages on the packaged demo recipe, and a table of where the time went
    (``<output_root>/demo_time.md``)."""
    from pathlib import Path

    from ..files import atomic_write_text
    from ..matrix import ForgettingMatrix
    from ..recipes import recipe_path
    from ..stage_times import StageClock, breakdown_markdown, collection_split
    from . import analyze, evaluate, fit
    from .collect import collect_in_jobs, default_collect_jobs

    args = parse_stage(DemoArguments, argv, "demo")
    root = Path(args.output_root)
    collected = root / "collect-demo"
    recipe = recipe_path("collect", "config_demo.yaml")
    clock = StageClock()
    with clock("fetch and conversion of the embedded model and data"):
        _fetch_sources(recipe)
    with clock("collection"):
        jobs = args.collect_jobs or default_collect_jobs()
        collect_in_jobs(recipe, collected, jobs)
    with clock("analysis"):
        analyze.main([str(collected / "matrix"), "--output_dir", str(collected / "analysis")])
    with clock("evaluation"):
        evaluate.main([str(collected / "matrix"), "--output", str(collected / "evaluation.json")])
    with clock("fitting the predictor"):
        fit.main([str(collected / "matrix"), "--predictor", "mf", "--output_dir", str(root / "predictor")])
    split = collection_split(ForgettingMatrix.load(collected / "matrix"), since=clock.started_at, jobs=jobs)
    table = breakdown_markdown(clock.seconds, collection="collection", split=split)
    atomic_write_text(root / "demo_time.md", table + "\n")
    print(f"Where the demo's time went ({root / 'demo_time.md'}):\n{table}")
    return 0


def _fetch_sources(recipe) -> None:
    """Fetch, verify and convert what a collection recipe's embedded model and data need (cached after the
    first run), so that the demo's time for it is told apart from training."""
    from ..data import load_task, load_upstream
    from ..modeling import resolve_model_path

    settings = recipe_settings(["--config", str(recipe)])
    resolve_model_path(settings["model_name_or_path"])
    load_upstream(settings["upstream_dataset"])
    for task in settings["tasks"]:
        load_task(task)
