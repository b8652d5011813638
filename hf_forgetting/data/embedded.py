"""The embedded offline default: real upstream text and real fine-tuning tasks from registry packages.

Upstream examples (raw text, ``example_id`` + ``text`` + ``source``):
- ``squad_shifts``: the 9,750 SQuAD-shifts passages (new Wikipedia, NYT, Reddit, Amazon reviews,
  SQuAD dev) from the ``bigbench==1.0.0`` sdist;
- ``austen``: paragraphs of Jane Austen's six novels from Debian's ``r-cran-janeaustenr``;
- ``squad_shifts_qa``: the first question of each passage as extractive QA (``prompt``,
  ``completion``, ``answers``), for the binary exact-match variant.

Tasks (prompt/completion, ``example_id`` + ``prompt`` + ``completion``): twelve BIG-bench JSON tasks,
Amazon fine-food review sentiment (Debian ``r-cran-modeldata``) and WordNet noun definitions
(Debian ``wordnet-base``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .. import sources
from .rdata_lazyload import read_lazyload

BIGBENCH_ROOT = "bigbench-1.0.0/bigbench/benchmark_tasks"
BIGBENCH_TASKS = (
    "qa_wikidata",
    "cryptonite",
    "word_unscrambling",
    "word_sorting",
    "hyperbaton",
    "sports_understanding",
    "strategyqa",
    "vitaminc_fact_verification",
    "formal_fallacies_syllogisms_negation",
    "disfl_qa",
    "international_phonetic_alphabet_transliterate",
    "date_understanding",
)
SQUAD_SHIFTS_FILES = {
    "new_wiki": "new_wiki_v1.0.json",
    "nyt": "nyt_v1.0.json",
    "reddit": "reddit_v1.0.json",
    "amazon": "amazon_reviews_v1.0.json",
    "squad_dev": "squaddev_v1.1.json",
}
AUSTEN_BOOKS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
R_LIBRARY = "usr/lib/R/site-library"


def _bigbench_dir() -> Path:
    members = [f"{BIGBENCH_ROOT}/{name}/task.json" for name in BIGBENCH_TASKS]
    members += [f"{BIGBENCH_ROOT}/squad_shifts/{file}" for file in SQUAD_SHIFTS_FILES.values()]
    return sources.extracted("bigbench", members=members) / BIGBENCH_ROOT


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read JSON ({error})") from error


# ---------------------------------------------------------------------------------------------
# Upstream text
# ---------------------------------------------------------------------------------------------


def squad_shifts_passages() -> list[dict]:
    """Every SQuAD-shifts passage once, id'd by its domain and the id of its first question."""
    root = _bigbench_dir() / "squad_shifts"
    rows = []
    for domain, file in SQUAD_SHIFTS_FILES.items():
        for article in _read_json(root / file)["data"]:
            for paragraph in article["paragraphs"]:
                first_question = paragraph["qas"][0]["id"]
                rows.append(
                    {
                        "example_id": f"squad_shifts/{domain}/{first_question}",
                        "text": paragraph["context"].strip(),
                        "source": f"squad_shifts/{domain}",
                    }
                )
    return rows


def austen_paragraphs(min_chars: int = 200) -> list[dict]:
    """Paragraphs (blank-line separated) of Austen's six novels with at least ``min_chars`` characters."""
    database = sources.extracted("janeaustenr") / R_LIBRARY / "janeaustenr/data/Rdata"
    books = read_lazyload(database, list(AUSTEN_BOOKS))
    rows = []
    for book in AUSTEN_BOOKS:
        paragraphs, current = [], []
        for line in list(books[book]) + [""]:
            if str(line).strip():
                current.append(str(line).strip())
            elif current:
                paragraphs.append(" ".join(current))
                current = []
        for index, paragraph in enumerate(paragraphs):
            if len(paragraph) >= min_chars:
                rows.append({"example_id": f"austen/{book}/{index}", "text": paragraph, "source": f"austen/{book}"})
    return rows


def squad_shifts_questions() -> list[dict]:
    """The first question of every SQuAD-shifts passage as an extractive QA example (prompt, answers),
    for the binary exact-match variant; ``completion`` is the first reference answer."""
    root = _bigbench_dir() / "squad_shifts"
    rows = []
    for domain, file in SQUAD_SHIFTS_FILES.items():
        for article in _read_json(root / file)["data"]:
            for paragraph in article["paragraphs"]:
                question = paragraph["qas"][0]
                answers = [answer["text"].strip() for answer in question["answers"]]
                rows.append(
                    {
                        "example_id": f"squad_shifts_qa/{domain}/{question['id']}",
                        "prompt": f"{paragraph['context'].strip()}\n\nQuestion: {question['question'].strip()}\nAnswer:",
                        "completion": f" {answers[0]}",
                        "answers": answers,
                        "source": f"squad_shifts/{domain}",
                    }
                )
    return rows


UPSTREAM_SOURCES: dict[str, Callable[[], list[dict]]] = {
    "squad_shifts": squad_shifts_passages,
    "austen": austen_paragraphs,
    "squad_shifts_qa": squad_shifts_questions,
}
EMBEDDED_UPSTREAM_MIX = ("squad_shifts", "austen")


# ---------------------------------------------------------------------------------------------
# Tasks
# ---------------------------------------------------------------------------------------------


def _bigbench_target(example: dict) -> str:
    if "target_scores" in example:
        return max(example["target_scores"].items(), key=lambda item: item[1])[0]
    target = example["target"]
    return target[0] if isinstance(target, list) else target


def bigbench_task(name: str) -> list[dict]:
    """A BIG-bench JSON task as prompt/completion pairs (``Q: input\\nA:`` -> `` target``)."""
    task = _read_json(_bigbench_dir() / name / "task.json")
    rows = []
    for index, example in enumerate(task["examples"]):
        question = example["input"].strip()
        if task.get("append_choices_to_input", True) and "target_scores" in example:
            question += "\nOptions: " + ", ".join(example["target_scores"])
        rows.append(
            {
                "example_id": f"bigbench/{name}/{index}",
                "prompt": f"Q: {question}\nA:",
                "completion": " " + str(_bigbench_target(example)).strip(),
            }
        )
    return rows


def fine_food_sentiment() -> list[dict]:
    """Amazon fine-food reviews labelled ``great`` or ``other`` (modeldata's ``small_fine_foods``)."""
    database = sources.extracted("modeldata") / R_LIBRARY / "modeldata/data/Rdata"
    frames = read_lazyload(database, ["training_data", "testing_data"])
    rows = []
    for split, frame in frames.items():
        for index, (review, score) in enumerate(zip(frame["review"], frame["score"])):
            rows.append(
                {
                    "example_id": f"fine_food_sentiment/{split}/{index}",
                    "prompt": f"Review: {str(review).strip()}\nIs this review great or other?\nAnswer:",
                    "completion": f" {score}",
                }
            )
    return rows


def wordnet_definitions() -> list[dict]:
    """The first lemma of each WordNet noun synset with its gloss (definition part only)."""
    data_noun = sources.extracted("wordnet") / "usr/share/wordnet/data.noun"
    rows = []
    with open(data_noun, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith(" ") or "|" not in line:
                continue  # licence header
            fields, gloss = line.split("|", 1)
            parts = fields.split()
            offset, lemma = parts[0], parts[4].replace("_", " ")
            definition = gloss.split(";")[0].strip()
            if definition and not definition.startswith('"'):
                rows.append(
                    {
                        "example_id": f"wordnet_definitions/{offset}",
                        "prompt": f"Define the word '{lemma}'.\nDefinition:",
                        "completion": f" {definition}",
                    }
                )
    return rows


TASK_SOURCES: dict[str, Callable[[], list[dict]]] = {
    **{name: (lambda name=name: bigbench_task(name)) for name in BIGBENCH_TASKS},
    "fine_food_sentiment": fine_food_sentiment,
    "wordnet_definitions": wordnet_definitions,
}
