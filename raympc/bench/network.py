"""`raympc bench netsim`: for each preset and backend, the rate and RTT set against those measured,
and the relay's own overhead (its throughput ceiling and RTT floor against a direct connection)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import netsim
from netsim import PartyLink, ShapingError, shape
from netsim.measure import LoopbackServer, measure_rtt, measure_throughput
from netsim.sockets import split_host_port
from raympc.util.figures import pyplot
from raympc.util.results import write_results

MAX_BYTES = 400 << 20


LOSSY = ("100mbit,20ms,0,1%", "100mbit,20ms,0,5%")


def _bytes_for(rate_bps: float | None, seconds: float) -> int:
    return MAX_BYTES if rate_bps is None else min(MAX_BYTES, int(rate_bps / 8 * seconds))


def bench_netsim(seconds: float = 1.5, out: Path | None = None, console: Console | None = None) -> dict:
    console = console or Console()
    caps = netsim.probe()
    rows: list[dict] = []
    with LoopbackServer() as a, LoopbackServer() as b:
        links = [PartyLink(0, 1, b.address), PartyLink(1, 0, a.address)]
        direct = {"throughput_bps": measure_throughput(b.address, MAX_BYTES), "rtt_s": measure_rtt(b.address, 50)}
        # The presets, plus rate-only links: what the kernel alone can do where it lacks netem.
        # And lossy links (nftables drop rules where there is no netem): measured, with the share dropped.
        profiles = {**netsim.PRESETS, "100mbit": netsim.resolve("100mbit,0ms"), "1gbit": netsim.resolve("1gbit,0ms"),
                    **{p: netsim.resolve(p) for p in LOSSY}}
        cases = [(name, backend) for name, p in profiles.items() for backend in ("relay", "tc", "tc+relay")
                 if p.shaped]
        cases.append(("unshaped", "relay"))
        with Progress(console=console) as progress:
            task = progress.add_task("shaping presets", total=len(cases))
            for name, backend in cases:
                prof = profiles[name]
                row = {"profile": name, "backend": backend, "set_rate_bps": prof.default.rate_bps,
                       "set_rtt_s": 2 * prof.default.delay_s, "set_loss": prof.default.loss}
                try:
                    with shape(prof, links, backend) as s:
                        addr = split_host_port(s.address(0, 1))
                        row["rtt_s"] = measure_rtt(addr, 20)
                        row["throughput_bps"] = measure_throughput(addr, _bytes_for(prof.default.rate_bps, seconds))
                        row["notes"] = s.metadata()["notes"]
                        if prof.default.loss:
                            counted = s.loss_counters().get("0->1")
                            row["dropped_share"] = counted["dropped"] / counted["seen"] if counted and counted["seen"] else None
                            row["loss_packets"] = counted["seen"] if counted else 0
                except ShapingError as exc:
                    row["skipped"] = str(exc)
                rows.append(row)
                progress.advance(task)
    table = Table(title=f"netsim: set vs measured (direct loopback: {direct['throughput_bps'] / 1e9:.2f} Gbit/s, "
                        f"RTT {direct['rtt_s'] * 1e3:.3f} ms)")
    for col in ("profile", "backend", "set rate", "measured", "rate err", "set RTT ms", "measured ms", "RTT err"):
        table.add_column(col, justify="left" if col in ("profile", "backend") else "right")
    for r in rows:
        if "skipped" in r:
            reason = "no sch_netem" if "netem" in r["skipped"] else r["skipped"][:40]
            table.add_row(r["profile"], r["backend"], "", f"skipped ({reason})", "", "", "", "")
            continue
        rate = r["set_rate_bps"]
        rate_err = "" if rate is None else f"{100 * (r['throughput_bps'] - rate) / rate:+.1f}%"
        rtt_err = f"{1e3 * (r['rtt_s'] - r['set_rtt_s']):+.2f} ms"
        table.add_row(r["profile"], r["backend"], "unlimited" if rate is None else f"{rate / 1e6:g} Mbit/s",
                      f"{r['throughput_bps'] / 1e6:.1f} Mbit/s", rate_err, f"{1e3 * r['set_rtt_s']:g}",
                      f"{1e3 * r['rtt_s']:.2f}", rtt_err)
    console.print(table)
    result = {"benchmark": "netsim", "capabilities": caps.to_dict(), "direct": direct, "rows": rows}
    write_results(out, "bench-netsim", result, console, plot=lambda path: _plot(rows, path))
    return result


def _plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    done = [r for r in rows if "skipped" not in r and r["set_rate_bps"]]
    labels = [f"{r['profile']}\n{r['backend']}" for r in done]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, len(done) * 0.9), 4.5))
    xs = range(len(done))
    ax1.bar([x - 0.2 for x in xs], [r["set_rate_bps"] / 1e6 for r in done], 0.4, label="set")
    ax1.bar([x + 0.2 for x in xs], [r["throughput_bps"] / 1e6 for r in done], 0.4, label="measured")
    ax1.set_yscale("log")
    ax1.set_ylabel("Mbit/s")
    ax1.set_title("rate")
    ax2.bar([x - 0.2 for x in xs], [r["set_rtt_s"] * 1e3 for r in done], 0.4, label="set")
    ax2.bar([x + 0.2 for x in xs], [r["rtt_s"] * 1e3 for r in done], 0.4, label="measured")
    ax2.set_ylabel("ms")
    ax2.set_title("round-trip time")
    for ax in (ax1, ax2):
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7, rotation=45, ha="right")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
