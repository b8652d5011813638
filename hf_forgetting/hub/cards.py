"""Dataset cards of matrix and predictor repos, rendered from the templates in ``templates/`` with
huggingface_hub's card classes (``DatasetCard.from_template``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..format.matrix import EXAMPLES_FILE, FORMAT_VERSION, ROWS_FOLDER, MatrixHeader, TaskRow

TEMPLATES = Path(__file__).parent / "templates"
PAPER_CITATION = """@inproceedings{jin2025demystifying,
  title     = {Demystifying Language Model Forgetting with Low-rank Example Associations},
  author    = {Jin, Xisen and Ren, Xiang},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2025},
  note      = {arXiv:2406.14026}
}"""
TAGS = ["forgetting", "hf-forgetting", "continual-learning", "catastrophic-forgetting"]


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def matrix_card(
    header: MatrixHeader,
    rows: Sequence[TaskRow],
    repo_id: str,
    contributors: dict[str, int] | None = None,
    license: str | None = None,  # noqa: A002 - the dataset-card field's name
) -> str:
    """The README.md (YAML front matter + body) of a matrix repo holding ``rows``."""
    from huggingface_hub import DatasetCard, DatasetCardData

    meta = header.metadata
    settings = meta.get("settings", {})
    task_ids = [row.task_id for row in rows]
    values = np.stack([row.values for row in rows]) if rows else np.zeros((0, header.num_examples), np.float32)
    observed = values[~np.isnan(values)]
    data = DatasetCardData(
        license=license or meta.get("license") or "other",
        pretty_name=f"Forgetting matrix: {meta.get('base_model', 'unknown model')}",
        tags=TAGS,
        size_categories=[size_category(len(rows))],  # the number of dataset rows, one per task
        source_datasets=[str(meta.get("upstream_dataset", "unknown"))],
        configs=[
            {"config_name": "rows", "data_files": f"{ROWS_FOLDER}/*.parquet", "default": True},
            {"config_name": "examples", "data_files": EXAMPLES_FILE},
        ],
        base_model=meta.get("base_model"),
        base_model_revision=meta.get("base_model_revision"),
        fine_tuning_tasks=task_ids,
        metric=header.metric,
        forgetting_matrix={"num_tasks": len(rows), "num_examples": header.num_examples, "format_version": FORMAT_VERSION},
    )
    return str(
        DatasetCard.from_template(
            data,
            template_path=str(TEMPLATES / "matrix_card.md"),
            repo_id=repo_id,
            base_model=meta.get("base_model", "unknown model"),
            base_model_revision=meta.get("base_model_revision"),
            upstream_dataset=meta.get("upstream_dataset", "unknown"),
            metric=header.metric,
            num_tasks=len(rows),
            num_examples=header.num_examples,
            observed_fraction=f"{(~np.isnan(values)).mean():.1%}" if values.size else "0.0%",
            stats=(
                f"mean {np.mean(observed):+.4f}, std {np.std(observed):.4f}, positive {np.mean(observed > 0):.0%}"
                if observed.size
                else None
            ),
            tasks=", ".join(f"`{t}`" for t in task_ids[:40]) + (" ..." if len(task_ids) > 40 else ""),
            method="LoRA" if settings.get("model", {}).get("use_peft") else "full fine-tuning",
            training=settings.get("training", {}),
            world_size=settings.get("world_size", 1),
            contributors=sorted((contributors or {}).items()),
            citation=PAPER_CITATION,
        )
    )


def predictor_card(predictor_class: str, config: dict, metric: str, num_examples: int, repo_id: str) -> str:
    """The README.md of a predictor repo."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(
        license="other",
        pretty_name=f"{predictor_class} forgetting predictor",
        tags=["forgetting", "hf-forgetting", "forgetting-predictor"],
        predictor_class=predictor_class,
        metric=metric,
        num_examples=num_examples,
    )
    return str(
        DatasetCard.from_template(
            data,
            template_path=str(TEMPLATES / "predictor_card.md"),
            repo_id=repo_id,
            predictor_class=predictor_class,
            num_examples=f"{num_examples:,}",
            config=json.dumps(config),
            citation=PAPER_CITATION,
        )
    )
