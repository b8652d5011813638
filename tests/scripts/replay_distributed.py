"""Train a ReplayTrainer on the tiny model at argv[1] under torchrun; each rank saves its schedule, the
rows it trained on and a checksum of its parameters before and after to argv[2]/rank<k>.json (the test
compares ranks and processes), and what a ForgettingMonitorCallback measured. argv[3], if given, is the replay_loss_weighting."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_forgetting import ForgettingMonitorCallback, ReplayConfig, ReplayTrainer

checkpoint, out = sys.argv[1], Path(sys.argv[2])
weighting = sys.argv[3] if len(sys.argv) > 3 else "token"
tokenizer = AutoTokenizer.from_pretrained(checkpoint)
model = AutoModelForCausalLM.from_pretrained(checkpoint)
words = "list dict tuple string parser logger module object integer pattern float bytes".split()
task = Dataset.from_list([{"prompt": f"Reverse {w}{i}:", "completion": f" {w[::-1]}"} for i, w in enumerate(words * 3)])
upstream = Dataset.from_list([{"example_id": f"doc/{i}", "text": f"Document {i} talks about {w} and more {w}."}
                              for i, w in enumerate(words)])
args = ReplayConfig(
    output_dir=str(out / "run"), max_steps=4, per_device_train_batch_size=2, learning_rate=1e-3, bf16=False,
    gradient_checkpointing=False, report_to="none", save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
    max_length=48, replay_ratio=0.25, replay_heldout_size=3, replay_strategy="predicted", replay_loss_weighting=weighting,
)
trainer = ReplayTrainer(model=model, args=args, train_dataset=task, processing_class=tokenizer,
                        replay_dataset=upstream, replay_scores=[i / 10 for i in range(len(upstream))])
monitor = ForgettingMonitorCallback(upstream, every_n_steps=2, num_probes=6, max_length=32, trainer=trainer, plot=False)
trainer.add_callback(monitor)
seen, step = [], trainer.training_step


def recording(model, inputs, *a, **k):
    seen.extend(inputs["input_ids"].tolist())
    return step(model, inputs, *a, **k)


def checksum(model):
    return sum(float(p.detach().double().abs().sum()) for p in model.parameters())


trainer.training_step = recording
before = checksum(model)
trainer.train()
after = checksum(trainer.accelerator.unwrap_model(trainer.model))
rank = int(os.environ.get("RANK", "0"))
out.mkdir(parents=True, exist_ok=True)
(out / f"rank{rank}.json").write_text(json.dumps({
    "schedule": list(trainer.replay_sampler), "seen": seen, "world": trainer.accelerator.num_processes,
    "before": before, "after": after, "monitor": monitor.history,
}))
# as any torchrun script should: left alive, gloo's threads can abort the process at exit
trainer.accelerator.wait_for_everyone()
trainer.accelerator.end_training()
