"""Training recipes (`raympc train mnist`, `raympc train classifier`): plaintext, on CPU, seeded.

The diffusion recipe is the standard DDPM objective (predict the noise, MSE) with Adam, a cosine
learning-rate decay and an exponential moving average of the weights, which is what gets saved.
The classifier is a small CNN whose penultimate features also serve the FID proxy.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from workloads import mnist_data, weights
from workloads.classifier import Classifier, predict
from workloads.diffusion import Schedule
from workloads.evaluate import sample_quality, summary
from workloads.unet import UNetConfig, count_params, init_params, time_features

LOG_EVERY = 250  # steps between log lines when the console is not a terminal


@dataclass(frozen=True)
class DiffusionRecipe:
    steps: int = 3000
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 100
    ema: float = 0.995
    seed: int = 0
    schedule: Schedule = Schedule(steps=1000)
    model: UNetConfig = UNetConfig(channels=16)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=console)


def train_diffusion(recipe: DiffusionRecipe = DiffusionRecipe(), name: str = "ddpm-mnist",
                    console: Console | None = None, resume: str | None = None) -> dict:
    """Train (or, with `resume`, continue training saved weights) and save the EMA weights as `name`."""
    console = console or Console()
    data = mnist_data.load("train")
    model, params = init_params(recipe.model, recipe.seed)
    history: list[dict] = []
    if resume is not None:
        params, old = weights.load(resume)
        history = old.get("history", []) + [{k: old.get(k) for k in ("recipe", "final_loss_last200", "train_seconds")}]
    warmup = min(recipe.warmup, recipe.steps // 2)
    sched = optax.warmup_cosine_decay_schedule(0.0, recipe.lr, warmup, recipe.steps, recipe.lr * 0.05)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))
    opt_state = opt.init(params)
    ema = params
    ac = jnp.asarray(recipe.schedule.alphas_cumprod, jnp.float32)
    # The sinusoidal features of every timestep, precomputed (they are public inputs at sampling).
    tf_table = jnp.asarray(time_features(np.arange(recipe.schedule.steps), recipe.model.time_features))

    def loss_fn(p, x0, y, t, eps):
        a = ac[t][:, None, None, None]
        xt = jnp.sqrt(a) * x0 + jnp.sqrt(1 - a) * eps
        pred = model.apply(p, xt, tf_table[t], jax.nn.one_hot(y, recipe.model.classes))
        return jnp.mean((pred - eps) ** 2)

    @jax.jit
    def step(p, state, e, x0, y, key):
        k1, k2 = jax.random.split(key)
        t = jax.random.randint(k1, (x0.shape[0],), 0, recipe.schedule.steps)
        eps = jax.random.normal(k2, x0.shape)
        loss, grads = jax.value_and_grad(loss_fn)(p, x0, y, t, eps)
        updates, state = opt.update(grads, state, p)
        p = optax.apply_updates(p, updates)
        e = jax.tree_util.tree_map(lambda a, b: recipe.ema * a + (1 - recipe.ema) * b, e, p)
        return p, state, e, loss

    rng = np.random.default_rng(recipe.seed)
    key = jax.random.PRNGKey(recipe.seed)
    losses: list[float] = []
    start = time.time()
    with _progress(console) as progress:
        task = progress.add_task("training the MNIST U-Net", total=recipe.steps, info="")
        for i in range(recipe.steps):
            idx = rng.integers(0, len(data.labels), recipe.batch)
            key, sub = jax.random.split(key)
            params, opt_state, ema, loss = step(params, opt_state, ema, data.images[idx], data.labels[idx], sub)
            losses.append(float(loss))
            if i % 50 == 0 or i == recipe.steps - 1:
                progress.update(task, completed=i + 1, info=f"loss {np.mean(losses[-50:]):.4f}")
            if not console.is_terminal and (i + 1) % LOG_EVERY == 0:
                # rich draws no bar into a log file: long runs under nohup still show progress
                console.log(f"step {i + 1}/{recipe.steps}, loss {np.mean(losses[-LOG_EVERY:]):.4f}, "
                            f"{time.time() - start:.0f} s")
    train_seconds = time.time() - start

    q = sample_quality(ema, recipe.model, recipe.schedule)
    meta = {"recipe": _jsonable(asdict(recipe)), "parameters": count_params(ema), "history": history,
            "final_loss_last200": float(np.mean(losses[-200:])), "train_seconds": train_seconds,
            "loss_curve_every_100": [float(np.mean(losses[i:i + 100])) for i in range(0, len(losses), 100)],
            "plaintext_quality": q}
    path = weights.save(ema, name, meta)
    console.print(f"saved {path} ({meta['parameters']:,} parameters, loss {meta['final_loss_last200']:.4f}, "
                  f"{meta['train_seconds']:.0f} s); plaintext samples: {summary(q)}")
    return meta


def train_classifier(epochs: int = 2, batch: int = 128, seed: int = 0, name: str = "mnist-classifier",
                     console: Console | None = None) -> dict:
    console = console or Console()
    train, test = mnist_data.load("train"), mnist_data.load("test")
    model = Classifier()
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 28, 28, 1)))
    opt = optax.adam(1e-3)
    state = opt.init(params)

    @jax.jit
    def step(p, s, x, y):
        loss, g = jax.value_and_grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(model.apply(q, x), y).mean())(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    rng = np.random.default_rng(seed)
    n = len(train.labels)
    with _progress(console) as progress:
        task = progress.add_task("training the MNIST classifier", total=epochs * (n // batch), info="")
        for _ in range(epochs):
            order = rng.permutation(n)
            for i in range(n // batch):
                idx = order[i * batch:(i + 1) * batch]
                params, state, loss = step(params, state, train.images[idx], train.labels[idx])
                progress.update(task, advance=1, info=f"loss {float(loss):.3f}")
    accuracy = float(np.mean(predict(params, test.images) == test.labels))
    meta = {"epochs": epochs, "batch": batch, "seed": seed, "test_accuracy": accuracy}
    weights.save(params, name, meta)
    console.print(f"classifier test accuracy {accuracy:.4f}")
    return meta


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (tuple, list)):
        return [_jsonable(v) for v in d]
    return d
