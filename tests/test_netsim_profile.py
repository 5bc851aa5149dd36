"""Profiles parse the strings people write; netsim imports without Ray or SPU."""

from __future__ import annotations

import subprocess
import sys

import pytest

from netsim import PRESETS, LinkShape, NetworkProfile, ProfileError, parse_duration, parse_rate, resolve


@pytest.mark.parametrize("text, bps", [("100mbit", 1e8), ("1gbit", 1e9), ("1.5Gbit", 1.5e9), ("500kbit", 5e5),
                                       ("10mbps", 8e7), (2e6, 2e6), ("unlimited", None), (None, None)])
def test_parse_rate(text, bps):
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text, seconds", [("20ms", 0.02), ("0.1ms", 1e-4), ("1s", 1.0), ("250us", 2.5e-4), (0.5, 0.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["fast", "100 furlongs", "-3ms"])
def test_bad_strings_name_the_problem(bad):
    with pytest.raises(ProfileError):
        parse_duration(bad) if "ms" in bad else parse_rate(bad)


def test_presets_match_the_documented_figures():
    assert PRESETS["lan"].default == LinkShape(rate_bps=10e9, delay_s=1e-4)
    assert PRESETS["wan"].default == LinkShape(rate_bps=400e6, delay_s=0.02)
    assert PRESETS["wan-slow"].default == LinkShape(rate_bps=100e6, delay_s=0.04)
    assert PRESETS["spu-wan"].default == LinkShape(rate_bps=300e6, delay_s=0.02)
    assert not PRESETS["unshaped"].shaped
    assert all(p.source for p in PRESETS.values())


def test_per_link_overrides_and_yaml_like_input():
    prof = NetworkProfile.model_validate({
        "name": "asym", "default": {"rate_bps": "1gbit", "delay_s": "1ms"},
        "links": {"0->2": {"rate_bps": "50mbit", "delay_s": "30ms", "jitter_s": "2ms"}},
    })
    assert prof.link(0, 1).rate_bps == 1e9
    assert prof.link(0, 2) == LinkShape(rate_bps=5e7, delay_s=0.03, jitter_s=0.002)
    with pytest.raises(ValueError):
        NetworkProfile.model_validate({"links": {"a-b": {}}})


def test_resolve_inline_and_unknown():
    assert resolve("100mbit,20ms").default == LinkShape(rate_bps=1e8, delay_s=0.02)
    with pytest.raises(ProfileError, match="presets"):
        resolve("moon")


def test_importable_without_ray_or_spu():
    code = ("import sys; sys.modules['ray'] = None; sys.modules['spu'] = None; sys.modules['jax'] = None\n"
            "import netsim, netsim.commands; print(netsim.resolve('wan').describe())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "400 Mbit/s" in proc.stdout
