"""interpolate_weights (WiSE-FT) on the tiny random Llama, against the interpolation written out per tensor."""

import copy

import pytest
import torch
from conftest import build_model

from hf_forgetting.interpolation import interpolate_weights


def _fine_tuned(base, seed=1):
    """A copy of `base` with every parameter moved (a stand-in for training)."""
    tuned = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in tuned.parameters():
            parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
    return tuned


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 1.0])
def test_every_parameter_is_the_base_plus_alpha_times_the_change(tiny_tokenizer, alpha):
    base = build_model(len(tiny_tokenizer))
    tuned = _fine_tuned(base)
    expected = {name: base_p + alpha * (tuned_p - base_p)
                for (name, tuned_p), base_p in zip(tuned.state_dict().items(), base.state_dict().values())}
    result = interpolate_weights(tuned, base, alpha)
    assert result is tuned
    for name, value in result.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)
    if alpha == 0:
        ids = torch.tensor([[1, 5, 9, 3]])
        torch.testing.assert_close(result(ids).logits, base(ids).logits)


def test_a_lora_model_is_merged_and_its_delta_scaled(tiny_tokenizer):
    from peft import LoraConfig, get_peft_model

    base = build_model(len(tiny_tokenizer))
    lora = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.1)  # a trained adapter (B starts at zero)
    merged_full = copy.deepcopy(lora).merge_and_unload()
    result = interpolate_weights(lora, base, alpha=0.5)
    assert not hasattr(result, "peft_config")
    for (name, value), full, start in zip(result.state_dict().items(), merged_full.state_dict().values(), base.state_dict().values()):
        torch.testing.assert_close(value, start + 0.5 * (full - start), rtol=0, atol=1e-6, msg=name)


def test_another_architecture_or_a_bad_alpha_is_refused_and_changes_nothing(tiny_tokenizer):
    base = build_model(len(tiny_tokenizer))
    tuned = _fine_tuned(base)
    before = copy.deepcopy(tuned.state_dict())
    with pytest.raises(ValueError, match=r"parameter 'model\.embed_tokens\.weight' of shape .* is of shape"):
        interpolate_weights(tuned, build_model(len(tiny_tokenizer) + 8))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        interpolate_weights(tuned, base, alpha=1.5)
    for name, value in tuned.state_dict().items():
        assert torch.equal(value, before[name]), name
