"""A party that dies or hangs mid-run gives a typed error naming it, within the stated bound."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import jax
import numpy as np
import psutil
import pytest
import ray

from raympc import LinkConfig, PartyDiedError, PartyError, PartyUnresponsiveError, Session, SessionClosedError

GRACE_S = 5.0  # raympc.session.FAILURE_GRACE_S
SLACK_S = 4.0


def long_program(x):
    # Hundreds of dependent rounds: seconds of work, so there is time to break a party mid-run.
    return jax.lax.fori_loop(0, 400, lambda i, v: jax.nn.sigmoid(v), x)


def _assert_cleaned_up(session: Session, pids: list[int], ports: list[int]) -> None:
    session.close()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                              for p in pids):
        time.sleep(0.2)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    # none of this test's processes (the parties, the driver's relays, Ray's workers) listens on the
    # party ports any more; on a shared machine another program may have taken a freed port since
    ours = {os.getpid(), *pids, *(c.pid for c in psutil.Process().children(recursive=True))}
    for port in ports:
        assert not any(c.laddr and c.laddr.port == port and c.status == "LISTEN" and c.pid in ours
                       for c in psutil.net_connections("tcp")), port


def _pids_ports(session: Session) -> tuple[list[int], list[int]]:
    return ([i["pid"] for i in session.party_info], [int(i["address"].rsplit(":", 1)[1]) for i in session.party_info])


def test_killed_party_gives_typed_error(ray_ready):
    recv_timeout = 20.0
    session = Session(link=LinkConfig(recv_timeout_s=recv_timeout)).open()
    pids, ports = _pids_ports(session)
    x = np.full((64,), 0.5, np.float32)
    session.compile(long_program, x)  # compile outside the timed window
    victim = session._actors[1]
    threading.Timer(2.0, lambda: ray.kill(victim, no_restart=True)).start()
    start = time.monotonic()
    with pytest.raises(PartyDiedError) as err:
        session.run(long_program, x)
    elapsed = time.monotonic() - start
    assert err.value.rank == 1
    assert session.party_info[1]["node_id"][:8] in err.value.node
    assert elapsed < recv_timeout + GRACE_S + SLACK_S
    with pytest.raises(SessionClosedError):
        session.run(lambda a: a, x)
    _assert_cleaned_up(session, pids, ports)


def test_hung_party_is_named_within_recv_timeout(ray_ready):
    recv_timeout = 3.0
    session = Session(link=LinkConfig(recv_timeout_s=recv_timeout)).open()
    pids, ports = _pids_ports(session)
    x = np.full((64,), 0.5, np.float32)
    session.compile(long_program, x)
    session._actors[2].stall.remote(60)  # rank 2 stops answering; its queue holds the run behind it
    start = time.monotonic()
    with pytest.raises(PartyUnresponsiveError) as err:
        session.run(long_program, x)
    elapsed = time.monotonic() - start
    assert err.value.rank == 2
    assert elapsed < recv_timeout + GRACE_S + SLACK_S, elapsed
    _assert_cleaned_up(session, pids, ports)


def _relay_threads() -> int:
    return sum(t.name.startswith("relay-") for t in threading.enumerate())


def test_cut_link_fails_with_a_clear_error_not_a_hang(ray_ready):
    """The relay drops rank 0's connection to rank 1 mid-run and refuses reconnects."""
    recv_timeout = 4.0
    before = _relay_threads()
    session = Session(shaping="relay", link=LinkConfig(recv_timeout_s=recv_timeout, connect_retries=2,
                                                        connect_retry_interval_ms=200)).open()
    pids, ports = _pids_ports(session)
    x = np.full((64,), 0.5, np.float32)
    session.compile(long_program, x)
    threading.Timer(1.5, lambda: session.cut_link(0, 1)).start()
    start = time.monotonic()
    with pytest.raises(PartyError) as err:
        session.run(long_program, x)
    elapsed = time.monotonic() - start
    assert elapsed < 1.5 + recv_timeout + GRACE_S + SLACK_S, elapsed
    assert "party" in str(err.value)
    _assert_cleaned_up(session, pids, ports)
    assert _relay_threads() == before  # no relay left behind


def test_driver_killed_during_a_shaped_run_is_undone_by_netsim_reset(tmp_path):
    """SIGKILL the driver mid-run; `raympc netsim reset` then finds and removes what it left."""
    from netsim import state

    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import sys, jax, numpy as np
        from raympc import Session
        s = Session(network="200mbit,2ms", shaping="relay").open()
        print("ready", flush=True)
        s.run(lambda v: jax.lax.fori_loop(0, 100000, lambda i, a: jax.nn.sigmoid(a), v), np.ones(8, np.float32))
    """))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2.0)  # mid-run
        ours = [r for r in state.records() if r.pid == proc.pid]
        assert ours, "the shaped session should have left a state record"
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert children, "the driver's embedded Ray should be running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = subprocess.run([sys.executable, "-m", "raympc.cli", "netsim", "reset"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert not [r for r in state.records() if r.pid == proc.pid]
    # The embedded Ray the driver started dies with it (Ray ties its processes' fate to the driver).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _alive(children):
        time.sleep(0.5)
    assert not _alive(children), f"left running after the driver died: {_alive(children)}"


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out
