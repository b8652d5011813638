"""ReplayConfig / ReplaySampler / ReplayTrainer on tiny random models.

Task data here is synthetic (string manipulation, labelled as such); upstream examples are docstrings
of Python's standard library.
"""

import numpy as np
import pytest
import torch
from conftest import build_model, stdlib_corpus
from datasets import Dataset
from scipy import stats

from hf_forgetting import ReplayConfig, ReplayTrainer
from hf_forgetting.replay import ReplaySampler, replay_probabilities
from hf_forgetting.replay.schedule import draw_order

WORDS = "list dict tuple string parser logger module object integer pattern float bytes".split()


def task_dataset(n=32):
    rows = [{"prompt": f"Reverse {WORDS[i % len(WORDS)]}{i}:", "completion": f" {WORDS[i % len(WORDS)][::-1]}"} for i in range(n)]
    return Dataset.from_list(rows)


def upstream_dataset(n=20):
    texts = stdlib_corpus()
    return Dataset.from_list([{"example_id": f"doc/{i}", "text": texts[i][:200]} for i in range(n)])


def config(tmp_path, **overrides):
    defaults = dict(
        output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3, bf16=False,
        gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True, seed=0, logging_steps=1,
        disable_tqdm=True, max_length=48, replay_ratio=1 / 4, replay_heldout_size=5, dataloader_num_workers=0,
    )
    return ReplayConfig(**(defaults | overrides))


# -- the schedule ------------------------------------------------------------------------------


def test_replayed_fraction_matches_the_ratio():
    sampler = ReplaySampler(num_task=320, num_replay=50, replay_every=32, seed=0)
    indices = list(sampler)
    replayed = [i for i in indices if i >= 320]
    assert len(replayed) == 10 and len(indices) == len(sampler) == 330
    assert sorted(i for i in indices if i < 320) == list(range(320))  # every task row once
    positions = [p for p, i in enumerate(indices) if i >= 320]
    assert positions == [33 * k + 32 for k in range(10)]  # one after every 32 task rows


def test_first_draw_frequencies_follow_softmax_over_temperature():
    scores = np.array([0.0, 0.1, 0.2, 0.3, 0.05])
    expected = replay_probabilities(scores, temperature=0.1)
    draws = [next(i for i in ReplaySampler(4, 5, 4, seed=s, temperature=0.1, scores=scores) if i >= 4) - 4
             for s in range(4000)]
    counts = np.bincount(draws, minlength=5)
    assert stats.chisquare(counts, expected * len(draws)).pvalue > 0.001
    assert counts.argmax() == 3


def test_sampling_without_replacement_and_max_selection():
    scores = np.array([0.5, 3.0, 1.0, 2.0])
    sample = [i - 8 for i in ReplaySampler(8, 4, 2, seed=1, scores=scores, temperature=10.0) if i >= 8]
    assert sorted(sample) == [0, 1, 2, 3]  # 4 draws from a pool of 4: each once
    greedy = [i - 8 for i in ReplaySampler(8, 4, 2, seed=1, scores=scores, selection="max") if i >= 8]
    assert greedy == [1, 3, 2, 0]
    assert list(draw_order(scores, 1.0, "max", np.random.default_rng(0))) == [1, 3, 2, 0]


def test_schedule_is_a_function_of_seed_epoch_and_switches():
    first = ReplaySampler(40, 9, 4, seed=3, scores=np.linspace(0, 1, 9))
    second = ReplaySampler(40, 9, 4, seed=3, scores=np.linspace(0, 1, 9))
    assert list(first) == list(second)
    second.set_epoch(1)
    assert list(first) != list(second)
    # a mid-epoch switch, replayed from saved state, gives the same order
    live = ReplaySampler(40, 9, 4, seed=3)
    iterator, seen = iter(live), []
    for _ in range(20):
        seen.append(next(iterator))
    live.set_scores(np.arange(9.0))
    seen += list(iterator)
    restored = ReplaySampler(40, 9, 4, seed=3)
    restored.load_state_dict(live.state_dict())
    assert list(restored) == seen


def test_new_scores_apply_to_the_next_replay_row_drawn():
    """A switch made while the sampler waits before a replay slot applies to that slot (not one later)."""
    sampler = ReplaySampler(num_task=8, num_replay=4, replay_every=2, seed=0, selection="max")
    iterator = iter(sampler)
    assert [next(iterator) for _ in range(2)] == [int(i) for i in np.random.default_rng([0, 0]).permutation(8)[:2]]
    sampler.set_scores(np.array([0.0, 0.0, 0.0, 10.0]))
    assert next(iterator) == 8 + 3  # the replay row right after the switch follows the new scores
    rest = list(iterator)
    assert sorted(i - 8 for i in rest if i >= 8) == [0, 1, 2]


def test_rows_of_equal_or_zero_weight_come_in_a_random_order_not_by_row_number():
    """MIR scores non-candidates -inf: once the candidates are drawn, the others must not follow row order."""
    scores = np.full(100, -np.inf)
    scores[[40, 70]] = [0.2, 0.5]
    for selection in ("max", "sample"):
        orders = [draw_order(scores, 0.1, selection, np.random.default_rng(seed)) for seed in range(3)]
        assert all(list(order[:2]) == [70, 40] for order in orders)
        rest = [list(order[2:]) for order in orders]
        assert all(sorted(r) == sorted(set(range(100)) - {40, 70}) for r in rest)
        assert all(r != sorted(r) for r in rest) and rest[0] != rest[1]


# -- the config --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"replay_ratio": 0.0}, "replay_ratio"),
        ({"replay_strategy": "everything"}, "replay_strategy"),
        ({"replay_temperature": 0.0}, "temperature"),
        ({"replay_selection": "best"}, "replay_selection"),
        ({"packing": True}, "packing=True cannot be combined with replay"),
        ({"online_warmup_fraction": 1.0}, "online_warmup_fraction"),
        ({"replay_max_length": 96}, "must not exceed max_length"),
        ({"replay_max_length": 1}, "replay_max_length must be >= 2"),
    ],
)
def test_bad_config(overrides, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        config(tmp_path, **overrides)


def test_config_defaults_follow_the_paper_and_replay_from_the_whole_pool(tmp_path):
    args = ReplayConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True)
    assert args.replay_ratio == 1 / 32 and args.replay_every == 32 and args.replay_temperature == 0.1
    assert args.replay_selection == "sample" and args.replay_heldout_size == 0
    assert args.replay_seed is None and args.resolved_replay_seed == args.seed == 42


def test_the_replay_seed_follows_seed_unless_it_was_set(tmp_path):
    import dataclasses

    args = ReplayConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, seed=1)
    assert dataclasses.replace(args, seed=7).resolved_replay_seed == 7  # split and schedule follow the new seed
    pinned = ReplayConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, seed=1, replay_seed=3)
    assert dataclasses.replace(pinned, seed=7).resolved_replay_seed == 3


def test_a_default_config_replays_from_every_upstream_example_and_says_so(tiny_tokenizer, tmp_path, capsys):
    texts = [t for t in stdlib_corpus() if len(t) > 60]
    upstream = Dataset.from_list([{"example_id": f"doc/{i}", "text": texts[i % len(texts)][:120]} for i in range(200)])
    args = ReplayConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, max_steps=1, per_device_train_batch_size=4,
                        report_to="none", save_strategy="no", disable_tqdm=True, max_length=48, replay_strategy="random")
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(64),
                            processing_class=tiny_tokenizer, replay_dataset=upstream)
    assert trainer.replay_pool_size == 200 and trainer.heldout_ids == [] and len(trainer.replay_ids) == 200
    trainer.train()
    assert ("ReplayTrainer: replay pool 200 of 200 upstream examples (0 held out), 2 replay rows per epoch "
            "(one after every 32 of 64 task rows)") in capsys.readouterr().out


def test_a_pool_smaller_than_an_epochs_replay_rows_is_named_in_a_warning(tiny_tokenizer, tmp_path):
    import warnings

    def trainer_for(**overrides):
        args = config(tmp_path, replay_strategy="random", replay_ratio=1 / 2, replay_heldout_size=15, **overrides)
        return ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                             processing_class=tiny_tokenizer, replay_dataset=upstream_dataset())

    with pytest.warns(UserWarning, match=r"One epoch draws 16 replay rows from a replay pool of 5 upstream examples: "
                                         r"each is replayed about 3.2 times per epoch.*replay_ratio \(0.5\).*replay_heldout_size \(15\)"):
        trainer_for(max_steps=-1, num_train_epochs=1).train()
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="One epoch draws")  # 2 steps of 4 rows draw 2 replay rows: none repeats
        trainer_for(max_steps=2).train()


def test_holding_out_every_upstream_example_is_refused(tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="replay_heldout_size=20 leaves no upstream example to replay: the replay dataset has 20"):
        ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=config(tmp_path, replay_heldout_size=20, replay_strategy="random"),
                      train_dataset=task_dataset(), processing_class=tiny_tokenizer, replay_dataset=upstream_dataset())


# -- the trainer -------------------------------------------------------------------------------


def record_batches(trainer):
    """The batches the trainer actually trains on, in order (the dataloader may fetch one ahead)."""
    batches, training_step = [], trainer.training_step

    def recording(model, inputs, *args, **kwargs):
        batches.append({k: v.detach().clone() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        return training_step(model, inputs, *args, **kwargs)

    trainer.training_step = recording
    return batches


def test_strategy_none_matches_sft_trainer_step_for_step(tiny_tokenizer, tmp_path):
    from trl import SFTConfig, SFTTrainer

    def losses(trainer_class, args):
        trainer = trainer_class(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                                processing_class=tiny_tokenizer)
        trainer.train()
        return [log["loss"] for log in trainer.state.log_history if "loss" in log]

    shared = dict(output_dir=str(tmp_path / "sft"), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                  bf16=False, gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True,
                  seed=0, logging_steps=1, disable_tqdm=True, max_length=48)
    sft = losses(SFTTrainer, SFTConfig(**shared))
    replay = losses(ReplayTrainer, ReplayConfig(**{**shared, "output_dir": str(tmp_path / "r")}, replay_strategy="none"))
    assert len(sft) == 4 and sft == replay


@pytest.mark.parametrize("replay_max_length", [None, 20])
def test_replay_rows_are_interleaved_masked_and_never_heldout(replay_max_length, tiny_tokenizer, tmp_path):
    upstream = upstream_dataset()
    scores = np.linspace(0, 1, len(upstream))
    args = config(tmp_path, max_steps=10, replay_max_length=replay_max_length)
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args,
                            train_dataset=task_dataset(), processing_class=tiny_tokenizer,
                            replay_dataset=upstream, replay_scores=scores)
    assert len(trainer.heldout_ids) == 5 and not set(trainer.heldout_ids) & set(trainer.replay_ids)
    indices = list(trainer.replay_sampler)
    replayed = [trainer.replay_ids[i - 32] for i in indices if i >= 32]
    assert len(replayed) == 8 and not set(replayed) & set(trainer.heldout_ids)

    batches = record_batches(trainer)
    trainer.train()
    rows = [(ids, labels) for batch in batches for ids, labels in zip(batch["input_ids"], batch["labels"])]
    kept = replay_max_length or 48  # replayed passages are cut to replay_max_length, else max_length
    texts = {tuple(tiny_tokenizer(row["text"])["input_ids"][:kept]): row for row in upstream}
    replay_rows = task_rows = 0
    for ids, labels in rows:
        real = ids[: (ids != tiny_tokenizer.pad_token_id).nonzero().max() + 1].tolist()
        trained = int((labels != -100).sum())
        if tuple(real) in texts:  # raw-text replay row: every token but the first is trained on
            replay_rows += 1
            assert labels[0] == -100 and (labels[1 : len(real)] == ids[1 : len(real)]).all()
        else:  # task row: the prompt is masked, the completion (and EOS) is not
            task_rows += 1
            assert labels[0] == -100 and 0 < trained < len(real) - 3
    assert (replay_rows, task_rows) == (8, 32)  # one epoch in 10 steps of 4: a replay row after every 4 task rows


def replay_tokens(trainer, rows, kept=48):
    """Token ids of replay rows (indices into trainer.replay_ids), cut as replayed."""
    return [tuple(trainer.processing_class(example["text"])["input_ids"][:kept]) for example in trainer.replay_examples(rows)]


def trained_replay_tokens(trainer, batches, upstream, kept=48):
    """Token ids of the replay rows in the recorded batches, in order (rows that are upstream texts)."""
    upstream_tokens = {tuple(trainer.processing_class(row["text"])["input_ids"][:kept]) for row in upstream}
    pad = trainer.processing_class.pad_token_id
    real = [tuple(ids[: (ids != pad).nonzero().max() + 1].tolist()) for batch in batches for ids in batch["input_ids"]]
    return [tokens for tokens in real if tokens in upstream_tokens]


def test_trained_replay_rows_are_the_replay_rows_of_the_batches_trained(tiny_tokenizer, tmp_path):
    upstream = upstream_dataset()
    args = config(tmp_path, max_steps=3, replay_strategy="random")  # 12 of the epoch's 40 rows
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream)
    batches = record_batches(trainer)
    trainer.train()
    trained = trainer.trained_replay_rows()
    assert replay_tokens(trainer, trained) == trained_replay_tokens(trainer, batches, upstream) and len(trained) == 2  # not the epoch's 8


def test_mir_in_training_replays_the_most_forgotten_fresh_candidates(tiny_tokenizer, tmp_path):
    """MIR with real scoring: after each refresh, the rows drawn are that refresh's candidates by decreasing
    measured forgetting (skipping rows this epoch already replayed), never the rest of the pool by row number."""
    upstream = upstream_dataset()
    args = config(tmp_path, max_steps=8, replay_strategy="mir", mir_candidates=4, mir_refresh_steps=2, replay_selection="max",
                  replay_ratio=1 / 2, learning_rate=5e-3)
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream)
    measured, score = [], trainer.score_replay_rows
    trainer.score_replay_rows = lambda rows: measured.append((list(rows), score(rows))) or measured[-1][1]
    batches = record_batches(trainer)
    trainer.train()
    base = measured[0][1]  # the whole pool, before the first update
    assert measured[0][0] == list(range(15)) and len(measured) == 1 + 4  # refreshes at steps 2, 4, 6, 8
    sampler = trainer.replay_sampler
    stream = list(sampler)
    switches = [p for _, p, _ in sampler.switches]
    trained = stream[: 8 * 4]
    used, checked = set(), 0
    for position, index in enumerate(trained):
        if index < 32:
            continue
        row = index - 32
        refresh = max(i for i, p in enumerate(switches) if p <= position)
        if refresh > 0:
            rows, values = measured[refresh]
            forgetting = {r: values[rows.index(r)] - base[r] for r in rows if r not in used}
            assert forgetting[row] == max(forgetting.values())  # the most forgotten candidate not yet replayed (ties either way)
            checked += 1
        used.add(row)
    assert checked >= 3
    assert replay_tokens(trainer, trainer.trained_replay_rows()) == trained_replay_tokens(trainer, batches, upstream)


def test_online_probes_without_a_finite_nll_are_left_out_of_the_fold_in(tiny_tokenizer, tmp_path):
    """Half the probes score NaN (as a diverged model's would): the switch completes the row from the others."""
    from hf_forgetting import ForgettingMatrix, MFPredictor

    upstream = upstream_dataset()
    ids = upstream["example_id"]
    predictor = MFPredictor(rank=2).fit(ForgettingMatrix(np.random.default_rng(1).normal(size=(5, 20)), [f"t{i}" for i in range(5)], ids))
    args = config(tmp_path, max_steps=4, replay_strategy="online", online_num_probe=8, online_warmup_fraction=0.5)
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream, replay_predictor=predictor)
    score = trainer.score_replay_rows
    trainer.score_replay_rows = lambda rows: np.where(np.asarray(rows) % 2 == 1, np.nan, score(rows))
    folded = []
    predict = predictor.predict
    predictor.predict = lambda known_ids, values, **kwargs: folded.append(list(known_ids)) or predict(known_ids, values, **kwargs)
    with pytest.warns(UserWarning, match="of 8 online probes have no finite NLL under the base model"):
        trainer.train()
    assert len(trainer.replay_sampler.switches) == 2 and np.isfinite(trainer.replay_sampler.switches[1][2]).all()
    odd = {trainer.replay_ids[r] for r in range(1, trainer.replay_pool_size, 2)}
    assert len(folded) == 1 and folded[0] and not set(folded[0]) & odd  # only the probes with a finite value


def test_predicted_scores_from_a_predictor(tiny_tokenizer, tmp_path):
    from hf_forgetting import ForgettingMatrix, MFPredictor

    upstream = upstream_dataset()
    ids = upstream["example_id"]
    rng = np.random.default_rng(0)
    matrix = ForgettingMatrix(rng.normal(size=(6, len(ids))), [f"t{i}" for i in range(6)], ids)
    predictor = MFPredictor(rank=2).fit(matrix)
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=config(tmp_path, replay_selection="max"),
                            train_dataset=task_dataset(), processing_class=tiny_tokenizer, replay_dataset=upstream,
                            replay_predictor=predictor, replay_known=(ids[:5], [0.3, -0.1, 0.0, 0.2, 0.1]))
    row = predictor.predict(ids[:5], [0.3, -0.1, 0.0, 0.2, 0.1], calibrated=False)  # replay orders by the uncalibrated row
    first = next(i for i in trainer.replay_sampler if i >= 32) - 32
    assert row[ids.index(trainer.replay_ids[first])] == max(row[ids.index(i)] for i in trainer.replay_ids)  # (ties: any of them)


def test_bad_trainer_inputs(tiny_tokenizer, tmp_path):
    common = dict(model=build_model(len(tiny_tokenizer)), train_dataset=task_dataset(), processing_class=tiny_tokenizer)
    with pytest.raises(ValueError, match="needs a replay_dataset"):
        ReplayTrainer(args=config(tmp_path), **common)
    with pytest.raises(ValueError, match="needs replay_scores"):
        ReplayTrainer(args=config(tmp_path), replay_dataset=upstream_dataset(), **common)
    with pytest.raises(ValueError, match="20 finite numbers"):
        ReplayTrainer(args=config(tmp_path), replay_dataset=upstream_dataset(), replay_scores=np.zeros(3), **common)
    with pytest.raises(ValueError, match="needs replay_predictor"):
        ReplayTrainer(args=config(tmp_path, replay_strategy="online"), replay_dataset=upstream_dataset(), **common)
    from trl import SFTConfig

    with pytest.raises(TypeError, match="ReplayConfig"):
        ReplayTrainer(args=SFTConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True), **common)


def test_resume_continues_the_same_schedule(tiny_tokenizer, tmp_path):
    upstream = upstream_dataset()

    def run(output_dir, resume=False, max_steps=8):
        args = config(output_dir, max_steps=max_steps, save_strategy="steps", save_steps=3, replay_strategy="random")
        trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                                processing_class=tiny_tokenizer, replay_dataset=upstream)
        batches = record_batches(trainer)
        trainer.train(resume_from_checkpoint=resume or None)
        return [b["input_ids"] for b in batches], trainer

    full, _ = run(tmp_path / "full")
    partial, _ = run(tmp_path / "cut", max_steps=3)  # "killed" after the checkpoint at step 3
    resumed, trainer = run(tmp_path / "cut", resume=True)
    assert len(partial) == 3 and (tmp_path / "cut" / "checkpoint-3" / "replay_state.json").exists()
    tail = resumed[-5:]  # steps 4..8 after the resume
    assert all(torch.equal(a, b) for a, b in zip(tail, full[3:]))
    assert trainer.state.global_step == 8


def test_online_switches_to_targeted_replay(tiny_tokenizer, tmp_path):
    from hf_forgetting import ForgettingMatrix, MFPredictor

    upstream = upstream_dataset()
    ids = upstream["example_id"]
    matrix = ForgettingMatrix(np.random.default_rng(1).normal(size=(5, len(ids))), [f"t{i}" for i in range(5)], ids)
    args = config(tmp_path, max_steps=10, replay_strategy="online", online_num_probe=6, online_warmup_fraction=0.2)
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream,
                            replay_predictor=MFPredictor(rank=2).fit(matrix))
    trainer.train()
    switches = trainer.replay_sampler.switches
    assert len(switches) == 2 and switches[0][2] is None and switches[1][2].shape == (15,)
    assert 0 < switches[1][1] < 32  # switched during the first epoch, after the warm-up


def test_mir_picks_the_most_forgotten_candidate(tiny_tokenizer, tmp_path, monkeypatch):
    upstream = upstream_dataset()
    args = config(tmp_path, max_steps=2, replay_strategy="mir", mir_candidates=6, mir_refresh_steps=1,
                  replay_selection="max")
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream)
    # forgetting known by construction: current NLL = base NLL + row number / 100
    base = np.arange(15, dtype=float)
    monkeypatch.setattr(trainer, "score_replay_rows", lambda rows: base[list(rows)] + (0 if not trained else np.array(list(rows)) / 100))
    trained = False
    callback = next(c for c in trainer.callback_handler.callbacks if type(c).__name__ == "AdaptiveReplayCallback")
    callback.on_train_begin(args, trainer.state, trainer.control)
    trained = True
    trainer.state.global_step = 1
    callback.on_step_end(args, trainer.state, trainer.control)
    scores = trainer.replay_sampler.switches[-1][2]
    candidates = np.flatnonzero(np.isfinite(scores))
    assert len(candidates) == 6
    first = next(i for i in trainer.replay_sampler if i >= 32) - 32
    assert first == candidates.max()  # the most forgotten candidate, not the least (the reference code's bug)


def test_sequence_weighting_gives_each_sequence_equal_weight(tiny_tokenizer, tmp_path):
    upstream = upstream_dataset()
    args = config(tmp_path, replay_strategy="random", replay_loss_weighting="sequence")
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (0, 32)])  # one task row, one replay row
    loss = trainer.compute_loss(trainer.model, batch)
    logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    per_row = []
    for row in range(2):
        labels = batch["labels"][row, 1:]
        nll = torch.nn.functional.cross_entropy(logits[row, :-1], labels, ignore_index=-100, reduction="sum")
        per_row.append(nll / (labels != -100).sum())
    assert loss.item() == pytest.approx(torch.stack(per_row).mean().item(), rel=1e-5)


@pytest.mark.slow
def test_two_processes_draw_the_same_schedule(tiny_checkpoint, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent / "scripts" / "replay_distributed.py"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--master_port", "29519", "--nproc_per_node", "2"]
    subprocess.run([*launcher, str(script), str(tiny_checkpoint), str(tmp_path / "two")], check=True)
    subprocess.run([sys.executable, str(script), str(tiny_checkpoint), str(tmp_path / "one")], check=True)
    rank0, rank1 = (json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1))
    single = json.loads((tmp_path / "one" / "rank0.json").read_text())
    assert rank0["world"] == rank1["world"] == 2 and single["world"] == 1
    assert rank0["schedule"] == rank1["schedule"] == single["schedule"]  # every rank draws the same schedule
    # the forgetting monitor scores its probes as shards, and every rank logs the same numbers
    assert [e["step"] for e in rank0["monitor"]] == [2, 4] and rank0["monitor"] == rank1["monitor"]
    strip = lambda rows: sorted(tuple(t for t in row if t != 0) for row in rows)  # noqa: E731  (0 pads)
    assert not set(strip(rank0["seen"])) & set(strip(rank1["seen"]))  # each rank trains on its own share
    # together the two ranks train on the rows one process trains on over twice the steps' worth of batches
    assert len(rank0["seen"]) + len(rank1["seen"]) == 2 * len(single["seen"])


def test_lora_and_gradient_accumulation_with_replay(tiny_tokenizer, tmp_path):
    from peft import LoraConfig

    args = config(tmp_path, replay_strategy="random", gradient_accumulation_steps=2, max_steps=2)
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                            processing_class=tiny_tokenizer, replay_dataset=upstream_dataset(),
                            peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    batches = record_batches(trainer)
    trainer.train()
    assert trainer.state.global_step == 2 and len(batches) == 4  # 2 optimizer steps x 2 micro-batches
    assert type(trainer.model).__name__.startswith("Peft")


def test_chat_task_and_chat_replay_rows(tiny_tokenizer, tmp_path):
    """messages datasets on both sides; replay rows train on the assistant turns only."""
    task = Dataset.from_list([{"messages": [{"role": "user", "content": f"Plural of {w}?"},
                                            {"role": "assistant", "content": f"{w}s"}]} for w in WORDS * 2])
    replay = Dataset.from_list([{"example_id": f"chat/{i}", "messages": [
        {"role": "user", "content": f"What is a {w}?"}, {"role": "assistant", "content": f"A {w} is a Python thing."}]}
        for i, w in enumerate(WORDS)])
    args = config(tmp_path, replay_strategy="random", replay_heldout_size=2, max_steps=2)
    trainer = ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task,
                            processing_class=tiny_tokenizer, replay_dataset=replay)
    row = trainer.train_dataset[len(task)]  # the first replay row
    rendered = tiny_tokenizer.apply_chat_template(replay[trainer._replayable[0]]["messages"], tokenize=False)
    answer = rendered[rendered.rindex("<|im_start|>assistant\n") + len("<|im_start|>assistant\n"):]
    trained = [t for t, label in zip(row["input_ids"], row["labels"]) if label != -100]
    assert tiny_tokenizer.decode(trained) == answer
    trainer.train()
    assert trainer.state.global_step == 2


def test_online_resume_before_the_switch_reproduces_the_run(tiny_tokenizer, tmp_path):
    from transformers import TrainerCallback

    from hf_forgetting import ForgettingMatrix, MFPredictor

    upstream = upstream_dataset()
    ids = list(upstream["example_id"])
    predictor = MFPredictor(rank=2).fit(
        ForgettingMatrix(np.random.default_rng(1).normal(size=(5, len(ids))), [f"t{i}" for i in range(5)], ids))

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise KeyboardInterrupt("simulated kill after checkpoint-1, before checkpoint-2")

    def trainer_for(output_dir):
        args = config(output_dir, max_steps=6, replay_strategy="online", online_num_probe=6,
                      online_warmup_fraction=0.3, save_strategy="steps", save_steps=1)
        return ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=args, train_dataset=task_dataset(),
                             processing_class=tiny_tokenizer, replay_dataset=upstream, replay_predictor=predictor)

    reference = trainer_for(tmp_path / "full")
    full_batches = record_batches(reference)
    reference.train()

    killed = trainer_for(tmp_path / "cut")
    killed.add_callback(Kill())
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    resumed = trainer_for(tmp_path / "cut")
    batches = record_batches(resumed)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "checkpoint-1"))

    (_, position, scores), (_, position_again, scores_again) = reference.replay_sampler.switches[1], resumed.replay_sampler.switches[1]
    assert position == position_again
    np.testing.assert_allclose(scores, scores_again, atol=1e-5)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(batches, full_batches[1:]))


@pytest.mark.parametrize("texts, message", [
    (["A note.", "x", "Another note."], r"replay_dataset: 1 rows have no token to train on .* row 1 \(example_id 'doc/1'\)"),
    (["A note.", "", "Another note."], r"replay_dataset row 1: the text is '', not a non-empty string"),
    (["A note.", None, "Another note."], r"replay_dataset row 1: the text is None, not a non-empty string"),
    (["A note.", "   ", "Another note."], r"replay_dataset row 1: the text is '   ', not a non-empty string"),
])
def test_replay_rows_without_text_are_refused_by_row(texts, message, tiny_tokenizer, tmp_path):
    upstream = Dataset.from_dict({"example_id": [f"doc/{i}" for i in range(len(texts))], "text": texts})
    with pytest.raises(ValueError, match=message):
        ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=config(tmp_path, replay_strategy="random", replay_heldout_size=0),
                      train_dataset=task_dataset(), processing_class=tiny_tokenizer, replay_dataset=upstream)


def test_a_score_that_would_overflow_the_softmax_is_refused(tiny_tokenizer, tmp_path):
    scores = np.zeros(20)
    scores[3] = 1e308
    with pytest.raises(ValueError, match=r"\|score\| <= 1e\+06; row 3 \(example_id 'doc/3'\) is 1e\+308"):
        ReplayTrainer(model=build_model(len(tiny_tokenizer)), args=config(tmp_path), train_dataset=task_dataset(),
                      processing_class=tiny_tokenizer, replay_dataset=upstream_dataset(), replay_scores=scores)
