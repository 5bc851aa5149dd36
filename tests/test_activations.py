"""Activation implementations: errors within their documented bounds under SPU, cost ordering on
SPU's deterministic byte counts, and proof that a swap really changes the compiled program."""

from __future__ import annotations

import io

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rich.console import Console

import raympc.activations as acts
from raympc import Secret, Session, SpuConfig
from raympc.activations import blocks, ours
from raympc.activations.exact import exact
from raympc.activations.fit import fit_sign_split
from raympc.activations.registry import ELEMENTWISE
from raympc.bench.activations import bench_activations
from raympc.errors import ConfigError

BOUNDED = [i for i in acts.implementations() if i.max_abs_error is not None and i.activation in ELEMENTWISE]
RELU_LIKE = ("silu", "mish", "gelu_tanh", "gelu_erf")


@pytest.mark.parametrize("impl", BOUNDED, ids=lambda i: f"{i.activation}-{i.impl}")
def test_secure_error_within_documented_bound(aby3, impl):
    lo, hi = impl.grid
    grid = np.linspace(lo, hi, 2049, dtype=np.float32)
    got = aby3.run(impl.fn, grid).outputs
    err = np.abs(got - exact(impl.activation, grid))
    assert err.max() <= impl.max_abs_error, f"{impl.activation}/{impl.impl}: {err.max():.4f} at x={grid[err.argmax()]}"


@pytest.mark.parametrize("activation", RELU_LIKE)
def test_raympc_forms_lose_little_to_fixed_point(aby3, activation):
    """Under SPU each fitted form stays within 5e-4 of its float64 model's error: SPU's 18 fraction
    bits (coefficients and truncations) cost next to nothing, so the fit's error is the story."""
    fit = ours.design(activation)
    grid = np.linspace(-16, 16, 4097, dtype=np.float32)
    err = np.abs(aby3.run(fit, grid).outputs - exact(activation, grid)).max()
    assert err <= fit.fit_max_error + 5e-4, f"{activation}: {err:.2e} under SPU, {fit.fit_max_error:.2e} in float64"


@pytest.mark.parametrize("activation", ["silu", "gelu_tanh", "gelu_erf"])
def test_mirrored_forms_compare_once(aby3, activation):
    """Where f - relu is even, the sign and the clamp are one comparison op (both bits at once):
    one msb_a2b per rank, where comparing |x| with the clamp needs |x| first (two in a row)."""
    x = np.linspace(-16, 16, 1024, dtype=np.float32)
    m = aby3.run(acts.get(activation, "raympc").fn, x).metrics
    assert m.ops("mpc")["msb_a2b"].count == len(m.ranks), m.ops("mpc")
    t, clamped, square = (np.asarray(v) for v in blocks.mirror_clamp(jnp.asarray(x), 7.25))
    np.testing.assert_allclose(t, np.abs(x))
    np.testing.assert_allclose(clamped, np.minimum(np.abs(x), 7.25), rtol=1e-6)
    np.testing.assert_allclose(square, np.minimum(x * x, 7.25 ** 2), rtol=1e-6, atol=1e-5)


def test_relu_tails_mask_instead_of_clamping(aby3):
    """SiLU's tail="relu" form masks its polynomial beyond the limit (fixed_point.masked) where
    the clamp form clamps |x| and x^2 first: one select fewer, 8 B per element and rank, with the
    same comparison op, and less error at the same limit (its tail's offset halves g(L)). |x| and
    x^4 are one multiply: a send action fewer per rank. Out of range its powers overflow the ring
    and the mask zeroes them exactly."""
    x = np.concatenate([np.linspace(-16, 16, 1024), [-3000.0, -400.0, 400.0, 3000.0]]).astype(np.float32)
    relu_tail = ours.design("silu")
    assert relu_tail.tail == "relu"
    clamp_tail = fit_sign_split("silu", 5, 1, 7.25, 7.25, fraction_bits=18)
    runs = {f.tail: aby3.run(f, x) for f in (relu_tail, clamp_tail)}
    errs = {f.tail: np.abs(runs[f.tail].outputs - exact("silu", x)).max() for f in (relu_tail, clamp_tail)}
    for f in (relu_tail, clamp_tail):
        assert errs[f.tail] <= f.fit_max_error + 5e-4, (f.tail, errs)
    assert errs["relu"] < errs["clamp"]
    relu_m, clamp_m = runs["relu"].metrics, runs["clamp"].metrics
    per_elem_rank = lambda m: m.send_bytes / x.size / len(m.ranks)  # noqa: E731
    assert per_elem_rank(clamp_m) - per_elem_rank(relu_m) == pytest.approx(8.0, abs=0.5)
    assert relu_m.send_actions == clamp_m.send_actions - len(relu_m.ranks)
    assert relu_m.ops("mpc")["mul_aa"].count == clamp_m.ops("mpc")["mul_aa"].count - len(relu_m.ranks)
    t, (square, fourth), keep = blocks.mirror_range(jnp.asarray(x), 7.25, fourth=True)
    t, square, fourth, keep = (np.asarray(v) for v in (t, square, fourth, keep))
    np.testing.assert_allclose(t, np.abs(x))
    np.testing.assert_allclose(square, x * x, rtol=1e-6)
    np.testing.assert_allclose(fourth, (x * x) ** 2, rtol=1e-6)
    np.testing.assert_array_equal(keep, (np.abs(x) <= 7.25).astype(np.int32))


def test_mish_window_is_one_comparison_op(aby3):
    """Mish's windowed form compares the sign and "outside [-8.25, 4.5]" in one op, where the
    clamp form compares |x| with its clamp after the sign (two ops in a row): fewer send actions
    and fewer bytes, within the same error model. Out of the window the powers overflow the ring
    and the mask zeroes them exactly."""
    x = np.concatenate([np.linspace(-16, 16, 1024), [-3000.0, -400.0, 400.0, 3000.0]]).astype(np.float32)
    window = ours.design("mish")
    assert window.windowed
    clamp = fit_sign_split("mish", 6, 1, 7.25, 4.5, fraction_bits=18)
    runs = {f.tail: aby3.run(f, x) for f in (window, clamp)}
    for f in (window, clamp):
        err = np.abs(runs[f.tail].outputs - exact("mish", x)).max()
        assert err <= f.fit_max_error + 5e-4, (f.tail, err)
    w, c = runs["relu"].metrics, runs["clamp"].metrics
    assert w.ops("mpc")["msb_a2b"].count == len(w.ranks)
    assert c.ops("mpc")["msb_a2b"].count == 2 * len(c.ranks)
    assert w.send_actions < c.send_actions and w.send_bytes < c.send_bytes


# truncations per rank: SiLU's x^2, s^2, O's dot and the wide sum; Mish's three power
# rounds and the wide sum (each form paid one more before its sums were kept wide)
# SiLU: x^2, x^4, O's dot, the sum; GeLU (degree 7) also x^6
TRUNCATIONS = {"silu": 4, "mish": 4, "gelu_tanh": 5, "gelu_erf": 5}


@pytest.mark.parametrize("activation", sorted(TRUNCATIONS))
def test_polynomial_sums_are_truncated_once(aby3, activation):
    """SiLU's even half and relu, and Mish's two sides and relu, are summed wide (fixed_point.py)
    and truncated together: one `trunc_a` per rank fewer than truncating each dot."""
    form = aby3.run(acts.get(activation, "raympc").fn, np.linspace(-8, 8, 512, dtype=np.float32)).metrics
    assert form.ops("mpc")["trunc_a"].count == TRUNCATIONS[activation] * len(form.ranks), form.ops("mpc")


@pytest.mark.parametrize("activation", RELU_LIKE)
def test_raympc_tails_do_not_blow_up(aby3, activation):
    x = np.array([-3000, -400, -40, -17, 17, 40, 400, 3000], np.float32)
    got = aby3.run(acts.get(activation, "raympc").fn, x).outputs
    np.testing.assert_allclose(got, exact(activation, x), atol=5e-3, rtol=1e-6)


def _rows(rng):
    """Row shapes attention produces: uniform logits, and rows of 196 with many near the max."""
    return {"uniform-128": rng.uniform(-8, 8, (8, 128)).astype(np.float32),
            "normal3-196": rng.normal(0, 3, (8, 196)).astype(np.float32),
            "spread-128": np.concatenate([rng.normal(0, 40, (4, 128)), rng.uniform(-1, 1, (4, 128))]).astype(np.float32)}


@pytest.mark.parametrize("impl", ["raympc", "raympc-tournament", "raympc-lean", "spu-direct", "puma"])
def test_softmax_rows(aby3, rng, impl):
    fn = acts.get("softmax", impl)
    for name, x in _rows(rng).items():
        p = aby3.run(fn.fn, x).outputs
        err = np.abs(p - exact("softmax", x)).max()
        assert err <= fn.max_abs_error, f"{impl} on {name}: {err:.2e}"
        assert np.abs(p.sum(-1) - 1).max() <= 1e-3, name
        assert p.min() >= -1e-4, name


def test_cipherdm_flaws_are_reproduced():
    # exp(0) comes out as 0.9515 and the series dips below zero on [-14, -4.49].
    assert float(acts.get("exp", "cipherdm").fn(jnp.float32(0.0))) == pytest.approx(0.9515, abs=1e-3)
    assert float(acts.get("exp", "cipherdm").fn(jnp.float32(-8.0))) < 0
    # Its softmax can give negative probabilities for spread-out logits.
    p = acts.get("softmax", "cipherdm").fn(jnp.array([[0.0, -6.0, -6.0, -6.0, -8.0]]))
    assert float(p.min()) < 0
    # SiLU's largest error sits at the breakpoint x = 6.
    x = jnp.float32(6.0)
    assert abs(float(acts.get("silu", "cipherdm").fn(x)) - 6 / (1 + np.exp(-6))) > 0.07


def _bytes(session, fn, x) -> int:
    """All three ranks' bytes: deterministic (how they split between ranks varies run to run)."""
    return session.run(fn, x).metrics.send_bytes


@pytest.mark.parametrize("activation", ["silu", "mish"])
def test_cost_order_raympc_below_cipherdm_below_spu_direct(aby3, activation):
    x = np.linspace(-8, 8, 4096, dtype=np.float32)
    cost = {impl: _bytes(aby3, acts.get(activation, impl).fn, x) for impl in ("raympc", "cipherdm", "spu-direct")}
    assert cost["raympc"] < cost["cipherdm"] <= cost["spu-direct"], cost


@pytest.mark.parametrize("activation", ["gelu_tanh", "gelu_erf"])
def test_cost_order_gelu(aby3, activation):
    x = np.linspace(-8, 8, 4096, dtype=np.float32)
    cost = {impl: _bytes(aby3, acts.get(activation, impl).fn, x) for impl in ("raympc", "puma", "spu-direct")}
    assert cost["raympc"] < cost["puma"] and cost["raympc"] < cost["spu-direct"], cost


def test_softmax_cost_against_spu_direct_with_pade_exp(aby3, ray_ready):
    """CipherDM's baseline is SPU's Pade exp; against SPU's default Taylor exp see the README."""
    x = np.random.default_rng(0).uniform(-8, 8, (32, 128)).astype(np.float32)
    ours = _bytes(aby3, acts.get("softmax", "raympc").fn, x)
    with Session(spu_config=SpuConfig(exp_mode="pade")) as pade:
        direct = _bytes(pade, acts.get("softmax", "spu-direct").fn, x)
    assert ours < direct / 2, (ours, direct)


def test_lean_softmax_trades_rounds_for_bytes(aby3):
    """raympc-lean's pairwise max tree sends fewer bytes than the fan-in-4 tournament, in more
    messages: rows of 128 take seven comparison levels instead of three."""
    x = np.random.default_rng(0).uniform(-8, 8, (32, 128)).astype(np.float32)
    runs = {impl: aby3.run(acts.get("softmax", impl).fn, x).metrics for impl in ("raympc-tournament", "raympc-lean")}
    assert runs["raympc-lean"].send_bytes < 0.9 * runs["raympc-tournament"].send_bytes, \
        {k: m.send_bytes for k, m in runs.items()}
    assert runs["raympc-lean"].max_rank_send_actions > runs["raympc-tournament"].max_rank_send_actions


def test_softmax_keeps_its_bound_on_long_rows_and_masked_ones(aby3):
    """Stable Diffusion's rows (4,096 latent positions, 77 text tokens) and a causal mask: the
    exponentials' sum over thousands of small terms is where a biased exp shows (1.9e-3 before
    exp's quartic moved from z to z / 8)."""
    rng = np.random.default_rng(7)
    keep = np.arange(196) < 100  # the mask is the program's constant, as a causal mask is
    rows = {"4096-std3": rng.normal(0, 3, (4, 4096)), "4096-std5": rng.normal(0, 5, (2, 4096)),
            "1024-std3": rng.normal(0, 3, (8, 1024)), "77-std4": rng.normal(0, 4, (64, 77)),
            "masked-196": rng.normal(0, 3, (16, 196))}
    for impl in ("raympc", "raympc-tournament"):
        softmax = acts.get("softmax", impl).fn
        for name, x in rows.items():
            x = np.asarray(x, np.float32)
            if name.startswith("masked"):
                p = aby3.run(lambda v: softmax(jnp.where(keep, v, np.finfo(np.float32).min)), x).outputs
                want = exact("softmax", np.where(keep, x, -np.inf))
            else:
                p, want = aby3.run(softmax, x).outputs, exact("softmax", x)
            err = np.abs(p - want).max()
            assert err <= 1e-3, f"{impl} on {name}: {err:.2e}"


class TinyBlock(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = nn.silu(nn.Dense(8)(x))
        return jax.nn.softmax(nn.Dense(8)(h), axis=-1)


def test_swap_changes_the_compiled_program_for_flax_and_jax_nn(aby3):
    x = np.linspace(-2, 2, 32, dtype=np.float32).reshape(4, 8)
    model = TinyBlock()
    params = model.init(jax.random.PRNGKey(0), x)
    stock = aby3.run(model.apply, Secret(params, "model"), x)
    with acts.use("cipherdm") as mapping:
        assert mapping["silu"] == "cipherdm" and mapping["softmax"] == "cipherdm"
        assert nn.silu is acts.get("silu", "cipherdm").fn and jax.nn.softmax is acts.get("softmax", "cipherdm").fn
        swapped = aby3.run(model.apply, Secret(params, "model"), x)
    assert nn.silu is not acts.get("silu", "cipherdm").fn  # restored on exit
    assert swapped.program.key != stock.program.key and swapped.program.code != stock.program.code
    np.testing.assert_allclose(stock.outputs, model.apply(params, x), atol=1e-2)
    assert not np.allclose(swapped.outputs, stock.outputs, atol=1e-6)


def test_swap_reaches_diffusers_flax_blocks(aby3):
    from diffusers.models.resnet_flax import FlaxResnetBlock2D

    block = FlaxResnetBlock2D(in_channels=32, out_channels=32)
    x = np.zeros((1, 4, 4, 32), np.float32)
    temb = np.zeros((1, 16), np.float32)
    params = block.init(jax.random.PRNGKey(0), x, temb)

    def step(p, h, t):
        return block.apply(p, h, t)

    stock = aby3.compile(step, Secret(params, "model"), x, temb).program
    with acts.use({"silu": "cipherdm"}):
        swapped = aby3.compile(step, Secret(params, "model"), x, temb).program
    assert swapped.key != stock.key and swapped.code != stock.code


def test_unknown_policy_names_what_exists():
    with pytest.raises(acts.PolicyError, match="implementations"):
        with acts.use("magic"):
            pass
    with pytest.raises(acts.PolicyError, match="registered"):
        acts.resolve({"silu": "magic"})
    with pytest.raises(acts.PolicyError, match="IMPL"):
        acts.resolve("raympc,spu-direct")


def test_policy_strings_name_an_implementation_activations_or_both():
    assert acts.resolve("mish=raympc,softmax=spu-direct") == {"mish": "raympc", "softmax": "spu-direct"}
    both = acts.resolve("raympc, softmax=raympc-lean")
    assert both["softmax"] == "raympc-lean" and both["silu"] == "raympc"
    assert {a: i for a, i in both.items() if a != "softmax"} == {a: i for a, i in acts.resolve("raympc").items() if a != "softmax"}


def test_stock_undoes_a_swap_for_plaintext_references():
    import flax.linen as fnn

    x = jnp.linspace(-8, 8, 101)
    exact_silu = np.asarray(jax.nn.silu(x))
    with acts.use("cipherdm"):
        swapped = np.asarray(jax.nn.silu(x))
        with acts.stock():
            assert np.array_equal(np.asarray(jax.nn.silu(x)), exact_silu)
            assert np.array_equal(np.asarray(fnn.silu(x)), exact_silu)
            assert np.abs(np.asarray(jax.nn.softmax(x)) - exact("softmax", np.asarray(x))).max() < 1e-6
            assert np.abs(np.asarray(acts.current("mish")(x)) - exact("mish", np.asarray(x))).max() < 1e-5
        assert np.array_equal(np.asarray(jax.nn.silu(x)), swapped)  # the swap is back
    assert np.abs(swapped - exact_silu).max() > 0.04  # cipherdm's SiLU really was swapped in


def test_bench_cost_by_kernel_adds_up_to_the_total(ray_ready, tmp_path):
    """`raympc bench activations --only silu --ops`: every implementation's per-kernel bytes sum to
    its measured total, and the kernels say what each form does (SPU's counts are deterministic)."""
    printed = io.StringIO()
    result = bench_activations(elements=2048, out=tmp_path, console=Console(file=printed, width=200),
                               networks=("unshaped",), only=("silu",), ops=True)
    rows = result["rows"]
    assert {r["activation"] for r in rows} == {"silu"}
    assert {(r["impl"], r["exp_mode"]) for r in rows} >= {("raympc", "taylor"), ("spu-direct", "pade")}
    for r in rows:
        total = sum(c["bytes_per_elem_per_rank"] for c in r["mpc_ops"].values())
        assert total == pytest.approx(r["bytes_per_elem_per_rank"], rel=1e-9), r["impl"]
    ops = {(r["impl"], r["exp_mode"]): r["mpc_ops"] for r in rows}
    assert ops[("raympc", "taylor")]["msb_a2b"]["calls_per_rank"] == 1  # sign and range in one comparison
    assert "a2b" in ops[("spu-direct", "taylor")]  # SPU's reciprocal normalises by a full bit decomposition
    assert ops[("raympc", "taylor")]["msb_a2b"]["time_s_per_rank"] > 0
    assert "cost by SPU MPC kernel" in printed.getvalue()
    assert (tmp_path / "bench-activations.json").exists()


def test_bench_only_names_the_activations_it_knows(ray_ready):
    with pytest.raises(ConfigError, match="known: .*silu"):
        bench_activations(elements=256, networks=("unshaped",), only=("swish",))


def test_even_odd_takes_s_or_its_first_powers():
    """even_odd computes the powers of s it is not given (in the clear: float arithmetic)."""
    t = np.linspace(0, 3, 64)
    s = t * t
    coeffs = [0.5, -0.25, 0.125, 0.0625, -0.03125, 0.015625, 0.01]  # degree 6: s, s^2, s^3
    want = np.polynomial.polynomial.polyval(t, coeffs)
    for given in (s, [s], [s, s * s]):
        np.testing.assert_allclose(np.asarray(blocks.even_odd(t, given, coeffs)), want, rtol=1e-6, atol=1e-9)
    for degree in (2, 3, 4, 5):  # 3 and 4 take the s (c3 u + c4 s) form
        want = np.polynomial.polynomial.polyval(t, coeffs[: degree + 1])
        np.testing.assert_allclose(np.asarray(blocks.even_odd(t, s, coeffs[: degree + 1])), want, rtol=1e-5, atol=1e-6)
