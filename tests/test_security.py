"""Tests that would catch a leak: share independence, no plaintext on the wire, in logs or results,
a relay that never logs payloads, and TLS that really encrypts the party links."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
import ray
from scipy import stats

from netsim.capture import LoopbackCapture
from raympc import Secret, Session

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="packet capture needs root")

# Distinctive values whose encodings are easy to search for.
SECRET = np.array([1234.5678, -987.654, 31.4159, 2718.28], np.float32)
FRACTION_BITS = 18  # SPU's FM64 default

# Share independence: 3 ranks x 2 ring components x 2 tests, family-wise false-positive rate 1e-4.
FAMILY_ALPHA = 1e-4
N_SHARINGS = 20000


def needles(secret: np.ndarray) -> list[bytes]:
    fixed = np.round(secret.astype(np.float64) * (1 << FRACTION_BITS)).astype(np.int64)
    out = [secret.tobytes(), secret.astype(np.float64).tobytes(), fixed.tobytes()]
    for v, f in zip(secret, fixed):
        out += [v.tobytes(), np.float64(v).tobytes(), f.tobytes(), f"{float(v):.4f}".encode(), f"{float(v):.3f}".encode()]
    return out


def _ring_values(blob: bytes, n: int) -> np.ndarray:
    """An ABY3 share of n elements: two 64-bit ring elements per element, at the end of the blob."""
    return np.frombuffer(blob[-16 * n:], np.uint64).reshape(n, 2)


def _independence_pvalues(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Two-sample tests of one share component: KS on the value (high bits), chi-square on the low byte."""
    ks = stats.ks_2samp(a.astype(np.float64) / 2.0 ** 64, b.astype(np.float64) / 2.0 ** 64).pvalue
    table = np.stack([np.bincount((a & 0xFF).astype(np.int64), minlength=256),
                      np.bincount((b & 0xFF).astype(np.int64), minlength=256)])
    chi = stats.chi2_contingency(table).pvalue
    return [float(ks), float(chi)]


def test_a_partys_shares_are_independent_of_the_secret(aby3):
    zeros = aby3.share(np.zeros(N_SHARINGS, np.float32), owner="user")
    other = aby3.share(np.full(N_SHARINGS, 1234.5678, np.float32), owner="user")
    received = ray.get([a.received_bytes.remote() for a in aby3._actors])
    pvalues = []
    for rank in range(3):
        a, b = _ring_values(received[rank][zeros.name], N_SHARINGS), _ring_values(received[rank][other.name], N_SHARINGS)
        for comp in range(2):
            pvalues += _independence_pvalues(a[:, comp], b[:, comp])
    alpha = FAMILY_ALPHA / len(pvalues)  # Bonferroni
    assert min(pvalues) > alpha, pvalues

    # The same tests do catch a leaky sharing (a share masked by only 20 random bits).
    rng = np.random.default_rng(0)
    enc = lambda v: (np.int64(round(v * (1 << FRACTION_BITS))) + rng.integers(0, 1 << 20, N_SHARINGS)).astype(np.uint64)  # noqa: E731
    assert min(_independence_pvalues(enc(0.0), enc(1234.5678))) < alpha


@root_only
def test_no_plaintext_secret_on_the_wire_in_logs_or_results(ray_ready, tmp_path):
    x = np.tile(SECRET, 16)
    with LoopbackCapture() as wire:  # every TCP payload on loopback: links, Ray's RPCs, the object store
        with Session() as s:
            result = s.run(lambda a, w: a * w + 1, x, Secret(np.float32(2.0), owner="model"))
            logs = b"".join(open(os.path.join(s.workdir, "logs", f), "rb").read()
                            for f in os.listdir(os.path.join(s.workdir, "logs")))
            described = json.dumps(s.describe()).encode()
    assert wire.total_bytes() > result.metrics.send_bytes  # the capture saw at least the links' traffic
    for needle in needles(SECRET):
        assert not wire.contains(needle), f"plaintext {needle!r} on the wire"
        assert needle not in logs, f"plaintext {needle!r} in a party log"
        assert needle not in result.metrics.to_json().encode() and needle not in described
    np.testing.assert_allclose(result.outputs, x * 2 + 1, rtol=1e-4)  # and it was revealed to the user


def test_relay_never_logs_payloads(ray_ready, caplog):
    x = np.tile(SECRET, 16)
    with caplog.at_level(logging.DEBUG):
        with Session(network="1gbit,1ms", shaping="relay") as s:
            s.run(lambda a: a * a, x)
            counters = s._shaping.counters()
    assert sum(c["bytes"] for c in counters.values()) > 0  # payloads went through the relays
    text = caplog.text.encode()
    for needle in needles(SECRET) + [b"PRPC"]:
        assert needle not in text and needle.hex().encode() not in text


@root_only
@pytest.mark.parametrize("tls", [False, True])
def test_tls_encrypts_the_party_links(ray_ready, tls):
    with Session(tls=tls) as s:
        ports = {int(i["address"].rsplit(":", 1)[1]) for i in s.party_info}
        with LoopbackCapture(ports) as wire:
            s.run(lambda a: a * a, np.tile(SECRET, 64))
        assert s.describe()["tls"] == ("per-session" if tls else "off")
    streams = wire.streams()
    to_parties = {k: v for k, v in streams.items() if k[1] in ports}
    assert to_parties, "no traffic captured on the party links"
    brpc_magic = any(b"PRPC" in v for v in to_parties.values())  # brpc's baidu_std framing, in clear
    assert brpc_magic is (not tls)
    if tls:  # every stream to a party starts with a TLS record (handshake 0x16 or application data 0x17)
        assert all(v[:1] in (b"\x16", b"\x17") and v[1:2] == b"\x03" for v in to_parties.values())


def test_supplied_certificates_that_are_missing_give_a_clear_error(ray_ready, tmp_path):
    from raympc import ConfigError, PartyError, TLSConfig

    with pytest.raises((ConfigError, PartyError), match="TLS file"):
        Session(tls=TLSConfig(cert_dir=str(tmp_path / "nowhere"))).open()


def test_supplied_certificates_work(ray_ready, tmp_path):
    from raympc.runtime.tls import TLSConfig, generate_session_pki

    ca, pairs = generate_session_pki(["127.0.0.1"] * 3)
    (tmp_path / "ca.pem").write_bytes(ca)
    for r, (cert, key) in enumerate(pairs):
        (tmp_path / f"party{r}.pem").write_bytes(cert)
        (tmp_path / f"party{r}.key").write_bytes(key)
    with Session(tls=TLSConfig(cert_dir=str(tmp_path))) as s:
        np.testing.assert_allclose(s.run(lambda a: a + 1, SECRET).outputs, SECRET + 1, rtol=1e-4)
        assert s.describe()["tls"] == "supplied"
