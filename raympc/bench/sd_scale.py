"""`raympc bench sd-scale`: measure the SD U-Net's secure step at small scales, fit the per-kind
cost model, check it on a held-out scale, and extrapolate to full SD v1 (see workloads.extrapolate)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import raympc.activations
import raympc.activations as acts
import workloads.breakdown
import workloads.sd_unet
from raympc.activations.exact import exact
from raympc.activations.policy import file_stem
from raympc.runtime.session import Session
from raympc.runtime.values import Public, Secret
from raympc.util.figures import pyplot
from raympc.util.results import write_results
from workloads import breakdown, extrapolate, sd_unet
from workloads.record_inputs import sd_softmax_rows

# Softmax rows the policy's error is checked on besides the recorded ones: SD v1's text
# cross-attention (77 tokens) and the latent self-attention rows of its two larger resolutions
# (1,024 and 4,096 positions), at the logit spreads of trained attention, and rows with a causal
# mask of finfo(float32).min (transformers' models apply it; SPU's stock exp wraps on it)
SYNTHETIC_ROWS = {"77 keys, std 4": (64, 77, 4.0), "1,024 keys, std 3": (16, 1024, 3.0),
                  "4,096 keys, std 3": (4, 4096, 3.0), "196 keys, std 3, causal mask": (196, 196, 3.0)}
RECORDED_SCALE = "medium"
RECORDED_ROWS = 512  # per row length


def measure_scale(session, name: str, activations: str, seed: int = 0):
    """One secure step of the SD U-Net at scale `name`, and the same step replayed kind by kind."""

    s = sd_unet.scale(name)
    params = sd_unet.init_params(s, seed)
    args = sd_unet.step_arguments(s, params, seed=seed)
    step = sd_unet.step_function(s)
    with acts.use(activations):
        calls = breakdown.record_layers(step, *args, public=sd_unet.PUBLIC_STEP_ARGS)
        run = session.run(step, Secret(args[0], owner="model"), *args[1:4], Public(args[4]), Public(args[5]),
                          reveal_to=None)
        total = run.metrics.cost()
        session.free(run.outputs)
        kinds = breakdown.with_other(breakdown.measure_kinds(session, calls, seed=seed), total)
    return extrapolate.Measurement(name, extrapolate.kind_sizes(calls), kinds, total,
                                   {"scale": s.describe(), "parameters": sd_unet.count_params(params),
                                    "activations": activations, "code": code_fingerprint()})


def code_fingerprint() -> str:
    """A hash of the sources a measured cost depends on (the secure layers, the SD U-Net, and the
    layer recorder that replays and sizes its calls), so a cached measurement is not reused after
    any of them changes (the README once carried a table measured with an older GroupNorm that a
    rerun would have served from the cache)."""

    files = sorted(Path(raympc.activations.__file__).parent.glob("*.py")) + \
        [Path(workloads.sd_unet.__file__), Path(workloads.breakdown.__file__)]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode() + b"\0" + f.read_bytes())
    return digest.hexdigest()[:16]


def _still_valid(m, activations: str, code: str) -> bool:
    """Whether a cached measurement was taken with this code (`code_fingerprint()`), these
    activations and the scale as defined now."""

    return (m.info.get("code") == code and m.info.get("activations") == activations
            # through JSON, as the cache stores it (tuples come back as lists)
            and m.info.get("scale") == json.loads(json.dumps(sd_unet.scale(m.name).describe())))


def abstract_sizes(name: str, activations: str) -> tuple[dict, int]:
    """Layer sizes of a scale from an abstract trace (nothing allocated): for sizes that cannot run."""

    s = sd_unet.scale(name)
    params = sd_unet.abstract_params(s)
    with acts.use(activations):
        calls = breakdown.record_layers(sd_unet.step_function(s), *sd_unet.step_arguments(s, params),
                                        public=sd_unet.PUBLIC_STEP_ARGS)
    return extrapolate.kind_sizes(calls), sd_unet.count_params(params)


def bench_sd_scale(fit: tuple[str, ...] = ("tiny", "small", "medium"), holdout: tuple[str, ...] = ("wide",),
                   target: str = "sd-v1", activations: str = "raympc", out: Path | None = Path("runs/bench"),
                   console: Console | None = None) -> dict:
    """Measure the SD U-Net's secure step at the `fit` and `holdout` scales, fit a linear cost model
    on `fit`, check it on `holdout` and extrapolate it to `target` (sizes from an abstract trace).

    Returns:
        The fitted model, every measurement, the held-out checks and the target's prediction;
        also written to `out/sd-scale-POLICY.json` with a figure. Measured scales are cached in
        `out/sd-scale-POLICY.measurements.jsonl` and reused while the code and scales are unchanged.
    """
    console = console or Console()
    stem = "sd-scale-" + file_stem(activations)
    done = _measurements((*fit, *holdout), activations, out / f"{stem}.measurements.jsonl" if out else None, console)
    model = extrapolate.CostModel.fit([done[n] for n in fit])
    checks = {n: {"predicted": model.predict(done[n].sizes), "measured": done[n].to_dict(),
                  "relative_error": extrapolate.relative_errors(model.predict(done[n].sizes), done[n])}
              for n in holdout}
    sizes, params = abstract_sizes(target, activations)
    with console.status("softmax error on recorded and synthetic rows"):
        rows = softmax_errors(activations)
    result = {"activations": activations, "model": model.to_dict(),
              "measured": {n: done[n].to_dict() for n in (*fit, *holdout)}, "holdout": checks,
              "target": {"name": target, "parameters": params, "sizes": sizes, "predicted": model.predict(sizes)},
              "softmax_rows": rows}
    console.print(_table(result, model, done, fit, holdout))
    console.print(_rows_table(rows, activations))
    write_results(out, stem, result, console, lambda path: _plot(result, done, path), kind="sd-scale")
    return result


def softmax_errors(activations: str, seed: int = 0) -> dict[str, dict]:
    """The policy's softmax (as it runs unshaped) against float64 on `SYNTHETIC_ROWS` and on the
    SD U-Net's own attention logits at `RECORDED_SCALE` (random weights, one plaintext step):
    per row set, its shape, logit spread and max abs error of the probabilities."""
    rng = np.random.default_rng(seed)
    sets = {name: (rng.normal(0, std, (rows, n)).astype(np.float32), "mask" in name)
            for name, (rows, n, std) in SYNTHETIC_ROWS.items()}
    for length, rows in sd_softmax_rows(RECORDED_SCALE, seed, RECORDED_ROWS).items():
        sets[f"recorded at {RECORDED_SCALE}, {length} keys"] = (rows, False)
    impl = acts.get("softmax", acts.resolve(activations).get("softmax", "spu-direct")).fn
    out = {}
    with Session() as session:
        for name, (x, masked) in sets.items():
            keep = np.tril(np.ones((x.shape[-1],) * 2, bool))[: x.shape[0]] if masked else None
            want = exact("softmax", np.where(keep, x, -np.inf) if masked else x)
            fn = (lambda v: impl(jnp.where(keep, v, np.finfo(np.float32).min), axis=-1)) if masked else \
                (lambda v: impl(v, axis=-1))
            got = np.asarray(session.run(fn, Secret(x, owner="user")).outputs, np.float64)
            out[name] = {"rows": int(x.shape[0]), "keys": int(x.shape[-1]), "logit_std": float(x.std()),
                         "max_abs_error": float(np.abs(got - want).max())}
    return out


def _rows_table(rows: dict[str, dict], activations: str) -> Table:
    table = Table(title=f"softmax ({activations}) against float64")
    for c in ("rows", "shape", "logit std", "max abs error"):
        table.add_column(c, justify="left" if c == "rows" else "right")
    for name, r in rows.items():
        table.add_row(name, f"{r['rows']} x {r['keys']}", f"{r['logit_std']:.2f}", f"{r['max_abs_error']:.1e}")
    return table


def _measurements(names: tuple[str, ...], activations: str, cache: Path | None,
                  console: Console) -> dict[str, extrapolate.Measurement]:
    """Each scale's measured step: from the cache where still valid, else measured now (and cached)."""
    done: dict[str, extrapolate.Measurement] = {}
    if cache is not None and cache.exists():
        code = code_fingerprint()
        cached = [extrapolate.Measurement.from_dict(json.loads(line)) for line in cache.read_text().splitlines()]
        done = {m.name: m for m in cached if _still_valid(m, activations, code)}
        stale = [n for n in names if n in {m.name for m in cached} and n not in done]
        if stale:
            console.print(f"measuring again (code or scale changed since cached): {', '.join(stale)}")
    todo = [n for n in names if n not in done]
    if not todo:
        return done
    with Session() as session, Progress(console=console) as bar:
        task = bar.add_task(f"secure SD U-Net steps ({activations})", total=len(todo))
        for name in todo:
            bar.update(task, description=f"scale {name}: step and per-kind replay")
            done[name] = measure_scale(session, name, activations)
            if cache is not None:
                cache.parent.mkdir(parents=True, exist_ok=True)
                with cache.open("a") as f:
                    f.write(json.dumps(done[name].to_dict()) + "\n")
            bar.advance(task)
    return done


def _table(result: dict, model: extrapolate.CostModel, done: dict[str, extrapolate.Measurement],
           fit: tuple[str, ...], holdout: tuple[str, ...]) -> Table:
    table = Table(title=f"SD U-Net secure step, {result['activations']} activations: measured, and predicted "
                        f"from {', '.join(fit)}")
    for c in ("scale", "params", "MB measured", "MB predicted", "err", "actions meas.", "actions pred.", "err",
              "time s meas.", "time s pred.", "err"):
        table.add_column(c, justify="right")
    for n in (*fit, *holdout):
        p, m = model.predict(done[n].sizes)["total"], done[n].total
        e = {k: (p[k] - m[k]) / m[k] for k in extrapolate.METRICS}
        table.add_row(n + (" (held out)" if n in holdout else ""), f"{done[n].info.get('parameters', 0):,}",
                      f"{m['send_bytes'] / 1e6:.1f}", f"{p['send_bytes'] / 1e6:.1f}", f"{e['send_bytes']:+.1%}",
                      f"{m['send_actions']:,}", f"{p['send_actions']:,.0f}", f"{e['send_actions']:+.1%}",
                      f"{m['time_s']:.1f}", f"{p['time_s']:.1f}", f"{e['time_s']:+.1%}")
    target = result["target"]
    t = target["predicted"]["total"]
    table.add_row(f"{target['name']} (extrapolated)", f"{target['parameters']:,}", "", f"{t['send_bytes'] / 1e6:,.0f}",
                  "", "", f"{t['send_actions']:,.0f}", "", "", f"{t['time_s']:,.0f}", "", style="bold")
    return table


def _plot(result: dict, done: dict[str, extrapolate.Measurement], path: Path) -> None:
    plt = pyplot()
    kinds = [*extrapolate.KINDS, "other"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, check in result["holdout"].items():
        meas = [done[name].kinds[k]["send_bytes"] / 1e6 for k in kinds]
        pred = [check["predicted"][k]["send_bytes"] / 1e6 for k in kinds]
        xs = range(len(kinds))
        axes[0].bar([x - 0.2 for x in xs], meas, 0.4, label=f"{name} measured")
        axes[0].bar([x + 0.2 for x in xs], pred, 0.4, label=f"{name} predicted")
        axes[0].set_xticks(list(xs), kinds, rotation=20)
    axes[0].set_ylabel("MB sent (3 ranks)")
    axes[0].set_title("held-out scale: per kind")
    axes[0].legend()
    tp = result["target"]["predicted"]
    axes[1].bar(kinds, [tp[k]["send_bytes"] / 1e9 for k in kinds])
    axes[1].set_ylabel("GB sent (3 ranks)")
    axes[1].set_title(f"{result['target']['name']}: one step, extrapolated")
    axes[1].tick_params(axis="x", rotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
