"""A party that dies or hangs mid-run gives a typed error naming it, within the stated bound."""

from __future__ import annotations

import threading
import time

import jax
import numpy as np
import psutil
import pytest
import ray

from raympc import LinkConfig, PartyDiedError, PartyUnresponsiveError, Session, SessionClosedError

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
    for port in ports:  # nobody listens on the party ports any more
        assert not any(c.laddr and c.laddr.port == port and c.status == "LISTEN"
                       for c in psutil.net_connections("tcp"))


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
