"""Bad input and bad configuration fail clearly, before anything is sent."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest

from raympc import ConfigError, InputError, LinkConfig, Public, Secret, Session, SessionClosedError, SpuConfig
from raympc.errors import PortInUseError


@pytest.mark.parametrize("kwargs, match", [
    ({"protocol": "nope"}, "unknown protocol"),
    ({"field": "fm16"}, "unknown field"),
    ({"protocol": "cheetah"}, "runs with \\[2\\] parties, not 3"),
    ({"protocol": "aby3", "parties": 2}, "runs with \\[3\\] parties, not 2"),
    ({"exp_mode": "magic"}, "unknown exp mode"),
])
def test_bad_config_rejected_before_start(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SpuConfig(**kwargs)
    if "exp_mode" not in kwargs:
        with pytest.raises(ConfigError, match=match):
            Session(**kwargs)


def test_wrong_number_of_link_ports():
    with pytest.raises(ConfigError, match="link ports"):
        Session(link=LinkConfig(ports=(1234, 1235)))


@pytest.mark.parametrize("value, match", [
    (np.array([1 + 2j, 3j]), "dtype complex"),
    (np.array(["a", "b"]), "dtype <U1"),
    (np.array([1.0, np.nan], np.float32), "NaN"),
    (np.array([1.0, np.inf], np.float32), "inf"),
    (np.array([object(), object()]), "dtype object"),
])
def test_bad_secret_inputs(aby3, value, match):
    before = aby3.metrics.runs if aby3.metrics else 0
    with pytest.raises(InputError, match=match):
        aby3.run(lambda a: a, value)
    with pytest.raises(InputError, match=match):
        aby3.share(value)
    assert (aby3.metrics.runs if aby3.metrics else 0) == before


def test_public_nan_rejected(aby3):
    with pytest.raises(InputError, match="NaN"):
        aby3.run(lambda a, t: a * t, np.ones(3, np.float32), Public(np.float32(np.nan)))


def test_shape_mismatch_against_compiled_program(aby3):
    fn = aby3.compile(lambda a, b: a @ b, np.zeros((2, 3), np.float32), Secret(np.zeros((3, 4), np.float32), "model"))
    ok = fn(np.ones((2, 3), np.float32), Secret(np.ones((3, 4), np.float32), "model")).outputs
    np.testing.assert_allclose(ok, np.full((2, 4), 3.0), atol=1e-3)
    with pytest.raises(InputError, match=r"input 1 is float32\[4, 4\].*compiled for float32\[3, 4\]"):
        fn(np.ones((2, 3), np.float32), Secret(np.ones((4, 4), np.float32), "model"))
    with pytest.raises(InputError, match="int32"):
        fn(np.ones((2, 3), np.int32), Secret(np.ones((3, 4), np.float32), "model"))
    with pytest.raises(InputError, match="visibilities"):
        fn(np.ones((2, 3), np.float32), Public(np.ones((3, 4), np.float32)))


def test_unknown_owner_and_receiver(aby3):
    with pytest.raises(ConfigError, match="unknown owner 'eve'"):
        aby3.run(lambda a: a, Secret(np.ones(2, np.float32), owner="eve"))
    with pytest.raises(ConfigError, match="unknown owner 'eve'"):
        aby3.run(lambda a: a, np.ones(2, np.float32), reveal_to="eve")


def test_handle_from_another_session_or_freed(aby3):
    h = aby3.share(np.ones(3, np.float32))
    aby3.free(h)
    with pytest.raises(InputError, match="was freed"):
        aby3.run(lambda a: a, h)


def test_port_already_taken(ray_ready):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        ports = (port, port + 1 if port < 65535 else port - 1, port + 2 if port < 65534 else port - 2)
        s = Session(link=LinkConfig(ports=ports))
        with pytest.raises(PortInUseError, match=f"party 0: port {port} on 127.0.0.1 is already in use"):
            s.open()
        with pytest.raises(SessionClosedError):
            s.run(lambda a: a, np.ones(2, np.float32))


def test_unreachable_ray_address_is_a_clean_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = f"from raympc import Session\nSession(address='127.0.0.1:{port}').open()"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"RayStartError: no Ray cluster answers at 127.0.0.1:{port}" in proc.stderr
