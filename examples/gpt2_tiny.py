"""transformers' Flax GPT-2 (random weights) as a raympc workload: a model nobody here wrote.

    pip install -e '.[test]'        # transformers 4.46, the last release line with Flax models
    raympc check examples.gpt2_tiny:make          # from the checkout's root
    raympc sample --workload examples.gpt2_tiny:make --steps 2 --batch 1
    raympc sweep examples/gpt2_sweep.yaml --out runs/gpt2 && raympc report runs/gpt2

The model provider's weights are secret; the prompts are public token ids, one per step (think of
a step as one request served by a secret model): each step returns that prompt's logits, and the
state only carries the last step's logits (the step does not read it). GPT-2 is what every
activation swap by attribute misses: transformers binds `gelu_new` in its `ACT2FN` dict at import
and writes it out with `jnp.power(x, 3.0)`, and its causal mask is `finfo(float32).min`, which SPU's
stock softmax turns into rows of zeros (`raympc check` flags it).
"""

from __future__ import annotations

import jax
import numpy as np
from transformers import FlaxGPT2LMHeadModel, GPT2Config

from workloads.protocol import Workload, WorkloadOptions

CONFIG = GPT2Config(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=128, activation_function="gelu_new")
TOKENS = 16


def make(opts: WorkloadOptions) -> Workload:
    """`opts.steps` prompts of `TOKENS` public token ids each, `opts.batch` per step; random weights."""
    model = FlaxGPT2LMHeadModel(CONFIG, seed=opts.seed)
    rng = np.random.default_rng(opts.seed)
    prompts = [(rng.integers(0, CONFIG.vocab_size, (opts.batch, TOKENS)).astype(np.int32),) for _ in range(opts.steps)]

    def step(params, logits, condition, noise, ids):  # one forward pass; the previous logits are not read
        return model(ids, params=params).logits

    logits = np.zeros((opts.batch, TOKENS, CONFIG.vocab_size), np.float32)
    return Workload(step=step, params=model.params, state=logits, condition=np.zeros((opts.batch, 1), np.float32),
                    step_secrets=[np.zeros((opts.batch, 1), np.float32)] * opts.steps, step_publics=prompts,
                    info={"model": "transformers FlaxGPT2LMHeadModel, 2 layers, width 64 (random weights)",
                          "parameters": sum(int(p.size) for p in jax.tree_util.tree_leaves(model.params))})
