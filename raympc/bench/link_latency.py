"""Round-trip time of one small message over SPU's brpc link, its memory link and a plain TCP
socket: the floor under every communication round of a secure program."""

from __future__ import annotations

import multiprocessing as mp
import socket
import threading
import time

import spu.libspu as libspu

PINGS = 1000


def _free_ports(n: int) -> list[int]:
    ports = []
    for _ in range(n):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    return ports


def _ping_pong(link, rank: int, pings: int) -> float:
    start = time.perf_counter()
    for _ in range(pings):
        if rank == 0:
            link.send(1, b"x" * 64)
            link.recv(1)
        else:
            link.recv(0)
            link.send(0, b"y" * 64)
    return (time.perf_counter() - start) / pings


def _brpc_party(rank: int, ports: list[int], pings: int, out) -> None:
    desc = libspu.link.Desc()
    for i, p in enumerate(ports):
        desc.add_party(f"p{i}", f"127.0.0.1:{p}")
    link = libspu.link.create_brpc(desc, rank)
    out.put((rank, _ping_pong(link, rank, pings)))


def brpc_rtt(pings: int = PINGS) -> float:
    ctx = mp.get_context("spawn")
    ports, out = _free_ports(2), ctx.Queue()
    procs = [ctx.Process(target=_brpc_party, args=(r, ports, pings, out)) for r in range(2)]
    for p in procs:
        p.start()
    results = dict(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join()
    return results[0]


def mem_rtt(pings: int = PINGS) -> float:
    desc = libspu.link.Desc()
    for i in range(2):
        desc.add_party(f"p{i}", f"thread{i}")
    result: dict[int, float] = {}

    def party(rank: int) -> None:
        result[rank] = _ping_pong(libspu.link.create_mem(desc, rank), rank, pings)

    threads = [threading.Thread(target=party, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result[0]


def _tcp_echo(port: int, ready) -> None:
    with socket.create_server(("127.0.0.1", port)) as srv:
        ready.set()
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while data := conn.recv(64):
                conn.sendall(data)


def tcp_rtt(pings: int = PINGS) -> float:
    ctx = mp.get_context("spawn")
    port, ready = _free_ports(1)[0], ctx.Event()
    proc = ctx.Process(target=_tcp_echo, args=(port, ready))
    proc.start()
    ready.wait(30)
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.perf_counter()
        for _ in range(pings):
            c.sendall(b"x" * 64)
            c.recv(64)
        rtt = (time.perf_counter() - start) / pings
    proc.join(timeout=10)
    return rtt


def link_round_trips(pings: int = PINGS) -> dict[str, float]:
    return {"brpc_s": brpc_rtt(pings), "mem_s": mem_rtt(pings), "tcp_s": tcp_rtt(pings)}
