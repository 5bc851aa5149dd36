"""The fitter: the sign-split form in plaintext, input weighting, the fits store and `raympc fit`."""

from __future__ import annotations

import json
from dataclasses import replace

import jax.numpy as jnp
import numpy as np
import pytest

import raympc.activations as acts
from raympc.activations import store
from raympc.activations.exact import exact
from raympc.activations.fit import fit_sign_split, fit_squaring_exp
from raympc.cli import main


@pytest.mark.parametrize("activation,degree,limits", [("gelu_tanh", 4, (3.25, 3.25)), ("mish", 5, (6.75, 4.0)),
                                                      ("silu", 3, (6.0, 6.0))])
def test_jax_form_matches_the_float64_model(activation, degree, limits):
    fit = fit_sign_split(activation, degree, 2 if activation == "silu" else 1, *limits)
    x = np.linspace(-40, 40, 4001)
    jax_out = np.asarray(fit(jnp.asarray(x, jnp.float32)), np.float64)
    np.testing.assert_allclose(jax_out, fit.numpy(x), atol=2e-4)
    assert np.abs(fit.numpy(x) - exact(activation, x)).max() == pytest.approx(fit.fit_max_error, rel=0.05, abs=1e-4)


def test_relu_tails_are_relu_plus_an_offset_beyond_the_limit():
    """tail="relu": the polynomial is fitted inside the limit and f = relu + offset outside, the
    offset in the middle of f - relu's range there, so the tail's error is half that range (SiLU:
    g(L) / 2), and the fit reports it. In the clear the masked powers of huge inputs (inf in
    float32) still give relu + offset, not nan."""
    fit = fit_sign_split("silu", 5, 1, 7.25, 7.25, fraction_bits=18, tail="relu")
    g_at_limit = 7.25 - exact("silu", np.array([7.25]))[0]
    assert fit.tail_offset == pytest.approx(-g_at_limit / 2, abs=2 ** -18)
    x = np.linspace(-40, 40, 8001)
    out = fit.numpy(x)
    beyond = np.abs(x) > 7.25
    np.testing.assert_array_equal(out[beyond], np.maximum(x[beyond], 0.0) + fit.tail_offset)
    assert g_at_limit / 2 - 1e-5 <= fit.fit_max_error < g_at_limit
    np.testing.assert_allclose(np.asarray(fit(jnp.asarray(x, jnp.float32)), np.float64), out, atol=2e-4)
    huge = np.array([-1e12, -3e4, 3e4, 1e12], np.float32)
    np.testing.assert_allclose(np.asarray(fit(jnp.asarray(huge))), np.maximum(huge, 0.0) + fit.tail_offset, rtol=1e-6)
    # at the same limit and cost class the clamp form is worse: its tail keeps P(L) for every |x| > L
    assert fit.fit_max_error < fit_sign_split("silu", 5, 1, 7.25, 7.25, fraction_bits=18).fit_max_error
    with pytest.raises(ValueError, match="piece"):
        fit_sign_split("silu", 5, 2, 7.25, 7.25, tail="relu")
    with pytest.raises(ValueError, match="tail must be"):
        fit_sign_split("silu", 5, tail="zero")


def test_windowed_relu_tails_for_sided_forms():
    """Mish's f - relu is not even: tail="relu" fits each side in u = x - c (c the window's
    centre) on its own interval, and f = relu + offset outside the window."""
    fit = fit_sign_split("mish", 6, 1, 8.25, 4.5, fraction_bits=18, tail="relu")
    assert fit.windowed and fit.origin == pytest.approx((4.5 - 8.25) / 2) and fit.u_max == pytest.approx(6.375)
    x = np.linspace(-40, 40, 8001)
    out = fit.numpy(x)
    outside = (x < -8.25) | (x > 4.5)
    np.testing.assert_array_equal(out[outside], np.maximum(x[outside], 0.0) + fit.tail_offset)
    assert np.abs(out - exact("mish", x)).max() == pytest.approx(fit.fit_max_error, rel=0.05)
    assert fit.fit_max_error < fit_sign_split("mish", 6, 1, 7.25, 4.5, fraction_bits=18).fit_max_error
    np.testing.assert_allclose(np.asarray(fit(jnp.asarray(x, jnp.float32)), np.float64), out, atol=2e-4)
    huge = jnp.asarray([-1e12, -3e4, 3e4, 1e12], jnp.float32)
    np.testing.assert_allclose(np.asarray(fit(huge)), np.maximum(np.asarray(huge), 0.0) + fit.tail_offset, rtol=1e-6)


def test_more_degree_means_less_error_and_the_scan_beats_a_bad_clamp():
    errs = [fit_sign_split("silu", d, 1, 7.0, 7.0).fit_max_error for d in (3, 4, 5)]
    assert errs[0] > errs[1] > errs[2]
    scanned = fit_sign_split("gelu_erf", 3)
    assert scanned.fit_max_error < fit_sign_split("gelu_erf", 3, 1, 9.0, 9.0).fit_max_error


def test_weighting_by_recorded_inputs_helps_where_they_fall():
    samples = np.random.default_rng(0).normal(0, 1.0, 50000)
    plain = fit_sign_split("silu", 3, 1, 6.0, 6.0)
    weighted = fit_sign_split("silu", 3, 1, 6.0, 6.0, samples=samples)
    err = lambda f: np.abs(f.numpy(samples) - exact("silu", samples)).mean()  # noqa: E731
    assert err(weighted) < err(plain)


def test_rounding_to_spus_fixed_point_keeps_the_fits_error():
    """Degree-6 Mish: plain rounding of the coefficients to 2**-18 more than doubles the error;
    rounding from the top power down with refits keeps it."""
    plain = fit_sign_split("mish", 6, 1, 7.25, 4.5)
    rounded = fit_sign_split("mish", 6, 1, 7.25, 4.5, fraction_bits=18)
    coeffs = np.array(rounded.coeffs_neg + rounded.coeffs_pos)
    assert np.array_equal(coeffs * 2 ** 18, np.round(coeffs * 2 ** 18))
    assert rounded.fit_max_error <= 1.05 * plain.fit_max_error
    naive = replace(plain, coeffs_neg=tuple(tuple(np.round(np.array(c) * 2 ** 18) / 2 ** 18) for c in plain.coeffs_neg),
                    coeffs_pos=tuple(tuple(np.round(np.array(c) * 2 ** 18) / 2 ** 18) for c in plain.coeffs_pos))
    x = np.linspace(-16, 16, 4001)
    naive_err = np.abs(naive.numpy(x) - exact("mish", x)).max()
    assert naive_err > 2 * rounded.fit_max_error
    with pytest.raises(ValueError, match="fraction_bits"):
        fit_sign_split("mish", 6, 1, 7.25, 4.5, fraction_bits=2)
    # The bound a registered fit documents covers SPU's rounding of float coefficients, and is
    # tight for coefficients already on its grid.
    assert store.coefficient_rounding_bound(rounded) == 0.0
    assert plain.fit_max_error + store.coefficient_rounding_bound(plain) >= naive_err


def test_squaring_exp_is_never_negative_and_accurate():
    e = fit_squaring_exp(3, 4, 16.0)
    z = np.linspace(-200, 0, 20001)
    got = np.asarray(e(jnp.asarray(z, jnp.float32)), np.float64)
    assert got.min() >= 0
    assert np.abs(got - np.exp(z)).max() < 1e-3
    near = z >= -10  # relative accuracy where softmax terms still add up
    assert np.abs(got[near] / np.exp(z[near]) - 1).max() < 2e-3


@pytest.fixture
def fits_file(tmp_path, monkeypatch):
    path = tmp_path / "fits.json"
    monkeypatch.setenv("RAYMPC_FITS", str(path))
    yield path
    for key in [k for k, v in acts.REGISTRY.items() if v.fitted]:
        del acts.REGISTRY[key]


def test_fit_command_registers_stores_and_measures(ray_ready, fits_file, tmp_path, capsys):
    inputs = tmp_path / "silu-inputs.npy"
    np.save(inputs, np.random.default_rng(1).normal(0, 2, 5000).astype(np.float32))
    assert main(["fit", "silu", "--degree", "4", "--range", "-7", "7", "--inputs", str(inputs), "--tail", "relu",
                 "--name", "mine", "--elements", "2048", "--out", str(tmp_path)]) == 0
    impl = acts.get("silu", "mine")
    assert impl.fitted and impl.max_abs_error < 0.05
    stored = json.loads(fits_file.read_text())
    assert stored["mine"][0]["activation"] == "silu" and stored["mine"][0]["weighted_by"] == str(inputs)
    assert stored["mine"][0]["tail"] == "relu"
    report = json.loads((tmp_path / "fit-silu-mine.json").read_text())
    secure = {r["impl"]: r for r in report["secure"]}
    assert secure["mine"]["max_abs_error"] <= impl.max_abs_error
    assert secure["mine"]["bytes_per_elem_per_rank"] < secure["spu-direct"]["bytes_per_elem_per_rank"]
    assert "inputs_max_abs_error" in secure["mine"]
    # a fresh process would find it again
    del acts.REGISTRY[("silu", "mine")]
    store.register_stored_fits()
    assert acts.get("silu", "mine").fitted
    with acts.use({"silu": "mine"}) as mapping:
        assert mapping == {"silu": "mine"}


def test_fit_command_errors_name_the_problem(fits_file, tmp_path, capsys):
    assert main(["fit", "silu", "--degree", "3", "--range", "2", "5", "--no-measure"]) == 1
    assert "A < 0 < B" in capsys.readouterr().err
    bad = tmp_path / "inputs.txt"
    bad.write_text("1 2 3")
    assert main(["fit", "silu", "--degree", "3", "--inputs", str(bad), "--no-measure"]) == 1
    assert "not a .npy/.npz" in capsys.readouterr().err
    assert main(["fit", "mish", "--degree", "5", "--pieces", "2", "--tail", "relu", "--no-measure"]) == 1
    assert "one piece per side" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", "softmax", "--degree", "3"])
    with pytest.raises(ValueError, match="already registered"):
        store.register(*("silu", "raympc", 1e-3, (-1, 1)))(lambda x: x)


def test_a_broken_fits_file_warns_but_does_not_break_import(fits_file):
    fits_file.write_text("{not json")
    with pytest.warns(UserWarning, match="not a raympc fits file"):
        store.register_stored_fits()
