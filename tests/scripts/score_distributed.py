"""Score a fixed set of texts with the model at argv[1] and save the result to argv[2] (rank 0).

Run plainly or under ``torchrun --nproc_per_node 2``; the test compares the two outputs.
"""

import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
from accelerate import PartialState
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_forgetting import score_examples

state = PartialState(cpu=True)
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
words = "the quick brown fox jumps over a lazy dog while parsing arguments of every length".split()
texts = [" ".join(words[: 2 + (i * 7) % len(words)]) for i in range(24)]
scores = score_examples(model, tokenizer, [{"text": t} for t in texts], batch_size=3, show_progress=False)
assert state.num_processes == int(os.environ.get("WORLD_SIZE", "1")), state
if state.is_main_process:
    np.save(sys.argv[2], scores)
print(f"rank {state.process_index}/{state.num_processes} scored {len(scores)} examples")
# as any torchrun script should: left alive, gloo's threads can abort the process at exit
state.wait_for_everyone()
state.destroy_process_group()
