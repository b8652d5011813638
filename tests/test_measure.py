"""`measure`: a checkpoint fine-tuned by plain TRL (full and LoRA) against its base, on a tiny model.

The probes' forgetting is checked against an independent one-text-at-a-time NLL loop, the completed
row against the predictor's own fold-in. Tasks are synthetic (labelled); the upstream examples are
docstrings of Python's standard library.
"""

import numpy as np
import pytest
from conftest import configs
from datasets import Dataset
from trl import ModelConfig, SFTConfig, SFTTrainer

from hf_forgetting import ForgettingMatrix, MFPredictor, cli
from hf_forgetting.collect import collect_forgetting_matrix
from hf_forgetting.format.forgetting_csv import read_forgetting_csv
from hf_forgetting.format.predicted_row import read_predicted_row
from hf_forgetting.measure import MeasureArguments, measure_forgetting
from hf_forgetting.modeling import load_checkpoint, load_model_and_tokenizer


def naive_forgetting(base_path, checkpoint, texts, max_length):
    """NLL after minus before, each text alone through the model's own loss: the independent reference."""
    import torch

    def nll(model, tokenizer):
        model.eval()
        with torch.no_grad():
            return np.array([float(model(input_ids=ids, labels=ids).loss)
                             for ids in (torch.tensor([tokenizer(t)["input_ids"][:max_length]]) for t in texts)])

    base, tokenizer = load_model_and_tokenizer(str(base_path))
    tuned, _ = load_checkpoint(str(checkpoint), str(base_path))
    return nll(tuned, tokenizer) - nll(base, tokenizer)


def fine_tune(base_path, output_dir, peft_config=None):
    """A fine-tune made elsewhere: plain TRL, saved with save_model."""
    rows = Dataset.from_list([{"prompt": f"Shout {w}{i}:", "completion": f" {w.upper()}!"}
                              for i, w in enumerate("alpha beta gamma delta epsilon zeta eta theta".split() * 2)])
    model, tokenizer = load_model_and_tokenizer(str(base_path))
    args = SFTConfig(output_dir=str(output_dir), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-2, bf16=False,
                     use_cpu=True, report_to="none", save_strategy="no", disable_tqdm=True, max_length=32)
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=peft_config)
    trainer.train()
    trainer.save_model()
    return output_dir


@pytest.fixture(scope="module")
def collected(data_files, tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("measure")
    collect_forgetting_matrix(*configs(data_files, tiny_checkpoint, root / "collect", num_upstream_examples=10))
    return root / "collect"  # a collect output folder: measure finds its matrix/


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_measure_a_plain_trl_fine_tune_and_complete_its_row(lora, collected, data_files, tiny_checkpoint, tmp_path):
    from peft import LoraConfig

    tuned = fine_tune(tiny_checkpoint, tmp_path / "tuned", LoraConfig(r=4, target_modules=["q_proj", "v_proj"]) if lora else None)
    assert (tuned / "adapter_config.json").exists() == lora
    args = MeasureArguments(checkpoint=str(tuned), matrix=str(collected), k=4, output_dir=str(tmp_path / "out"), top=3)
    matrix = ForgettingMatrix.load(collected / "matrix")
    result = measure_forgetting(args, ModelConfig(model_name_or_path=str(tiny_checkpoint)))

    texts = {row["example_id"]: row["text"] for row in Dataset.from_json(data_files["upstream"])}
    expected = naive_forgetting(tiny_checkpoint, tuned, [texts[i] for i in result.probe_ids], max_length=48)
    np.testing.assert_allclose(result.probe_forgetting, expected, atol=1e-4)
    assert np.abs(expected).max() > 1e-3  # the fine-tune moved the probes
    reference = MFPredictor(rank=2).fit(matrix).predict(result.probe_ids, result.probe_forgetting)
    np.testing.assert_allclose(result.predicted, reference, rtol=1e-6)

    ids, row = read_forgetting_csv(tmp_path / "out" / "forgetting.csv")
    assert ids == matrix.example_ids and np.allclose(row, reference, atol=1e-5)
    measured_ids, measured = read_forgetting_csv(tmp_path / "out" / "measured.csv")
    assert measured_ids == result.probe_ids and np.allclose(measured, expected, atol=1e-4)
    parquet_ids, parquet_row, _, metadata = read_predicted_row(tmp_path / "out" / "forgetting_row.parquet")
    assert parquet_ids == ids and metadata["probe_ids"] == result.probe_ids and metadata["checkpoint"] == str(tuned)
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "4 upstream probes" in summary and summary.count("\n| ") == 2 + 3  # header, rule and the top 3
    assert (tmp_path / "out" / "histogram.png").stat().st_size > 1000


def test_measure_from_the_command_line_chains_into_predict(collected, tiny_checkpoint, tmp_path, capsys):
    tuned = fine_tune(tiny_checkpoint, tmp_path / "tuned")
    argv = ["measure", "--model_name_or_path", str(tiny_checkpoint), "--checkpoint", str(tuned), "--matrix",
            str(collected / "matrix"), "--k", "5", "--output_dir", str(tmp_path / "out")]
    assert cli.main(argv) == 0
    assert "5 upstream probes" in capsys.readouterr().out
    assert cli.main(["fit", str(collected / "matrix"), "--rank", "2", "--output_dir", str(tmp_path / "predictor")]) == 0
    # measure's measured.csv is predict's --known: the steps chain
    assert cli.main(["predict", str(tmp_path / "predictor"), "--known", str(tmp_path / "out" / "measured.csv"),
                     "--output", str(tmp_path / "predicted.csv")]) == 0
    np.testing.assert_allclose(read_forgetting_csv(tmp_path / "predicted.csv")[1],
                               read_forgetting_csv(tmp_path / "out" / "forgetting.csv")[1], atol=1e-5)


def test_without_a_matrix_or_predictor_only_the_probes_are_measured(data_files, tiny_checkpoint, tmp_path):
    tuned = fine_tune(tiny_checkpoint, tmp_path / "tuned")
    args = MeasureArguments(checkpoint=str(tuned), upstream_dataset=data_files["upstream"], num_upstream_examples=12, k=6,
                            output_dir=str(tmp_path / "out"))
    result = measure_forgetting(args, ModelConfig(model_name_or_path=str(tiny_checkpoint)))
    assert result.predicted is None and len(result.probe_ids) == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["measured.csv", "summary.md"]
    assert "to complete the row of all 12 upstream examples" in result.summary


def test_a_checkpoint_saved_without_its_tokenizer_gets_the_base_models(tiny_checkpoint, tmp_path):
    """`model.save_pretrained(folder)` alone (no tokenizer files) is a usable checkpoint."""
    import torch

    model, _ = load_model_and_tokenizer(str(fine_tune(tiny_checkpoint, tmp_path / "tuned")))
    model.save_pretrained(tmp_path / "weights-only")
    tuned, tokenizer = load_checkpoint(str(tmp_path / "weights-only"), str(tiny_checkpoint))
    _, base_tokenizer = load_model_and_tokenizer(str(tiny_checkpoint), tokenizer_only=True)
    assert tokenizer.get_vocab() == base_tokenizer.get_vocab()
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), model.state_dict().values()))


def test_bad_measure_arguments():
    with pytest.raises(ValueError, match="k and top must be >= 1"):
        MeasureArguments(checkpoint="c", k=0)


def test_a_checkpoint_that_is_not_a_fine_tune_of_the_base_is_refused(data_files, tiny_checkpoint, tiny_tokenizer, tmp_path):
    """A random model of the same shape (another seed), one with another vocabulary, and truncated weights."""
    from conftest import build_model

    build_model(len(tiny_tokenizer), seed=7).save_pretrained(tmp_path / "random")
    build_model(len(tiny_tokenizer) + 64).save_pretrained(tmp_path / "other-vocab")
    fine_tune(tiny_checkpoint, tmp_path / "truncated")
    weights = tmp_path / "truncated" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    base = ModelConfig(model_name_or_path=str(tiny_checkpoint))

    def measure(checkpoint):
        return measure_forgetting(MeasureArguments(checkpoint=str(checkpoint), upstream_dataset=data_files["upstream"],
                                                   num_upstream_examples=12, k=6, output_dir=str(tmp_path / "out")), base)

    with pytest.raises(ValueError, match=r"random is not a fine-tune of .*: its weights are as unrelated to the base's"):
        measure(tmp_path / "random")
    with pytest.raises(ValueError, match=r"other-vocab is not a fine-tune of .*weights differ in name or shape \(model.embed_tokens"):
        measure(tmp_path / "other-vocab")
    from hf_forgetting.modeling import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match=r"Cannot load the model .*truncated.*: Error while deserializing header"):
        measure(tmp_path / "truncated")
