"""`Session`: three SPU parties as Ray actors, and the one way raympc runs a secure function."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import tempfile
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import numpy as np
import ray
import spu.libspu as libspu
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

import netsim
from netsim.sockets import split_host_port
from raympc.cluster import leftovers
from raympc.cluster.node_shaping import ClusterShaping
from raympc.cluster.ray_instance import RayHandle, start_or_join
from raympc.errors import (
    ConfigError,
    InputError,
    PartyDiedError,
    PartyError,
    PartyUnresponsiveError,
    PlacementError,
    RaympcError,
    SessionClosedError,
)
from raympc.runtime import fixed_point
from raympc.runtime.compiler import ArgSpec, CompiledProgram, ProgramCache
from raympc.runtime.config import LinkConfig, PartySpec, SpuConfig
from raympc.runtime.metrics import RankMetrics, RunMetrics
from raympc.runtime.owners import DEFAULT_OWNERS, Owners
from raympc.runtime.party import Party
from raympc.runtime.placement import Placement, place
from raympc.runtime.tls import TLSConfig
from raympc.runtime.tls import credentials as tls_credentials
from raympc.runtime.values import Public, Secret, SecretValue, canonical_array, spec_of

if TYPE_CHECKING:
    from raympc.cluster.node_shaping import ClusterShaping

# Actors that cannot be scheduled (not enough CPUs, missing resources) wait forever in Ray.
ACTOR_START_TIMEOUT_S = 60.0
# After one party fails, how long the others get to report before the still-silent ones are blamed.
FAILURE_GRACE_S = 5.0
_POLL_S = 0.5
_TIMEOUT_MARKERS = ("timeout", "timed out")


@dataclass
class RunResult:
    """What `Session.run` returns: the outputs (arrays if revealed, handles if not) and metrics."""

    outputs: Any
    metrics: RunMetrics
    program: CompiledProgram = field(repr=False)


class SecureFunction:
    """A program compiled for fixed input shapes; calling it checks the inputs before sending."""

    def __init__(self, session: "Session", fn: Callable, program: CompiledProgram) -> None:
        self.session, self.fn, self.program = session, fn, program

    def __call__(self, *args: Any, reveal_to: str | None = "user") -> RunResult:
        return self.session._call(self.fn, args, reveal_to, expect=self.program)


class Session:
    """Three (or N) SPU parties hosted by Ray actors, linked by SPU's brpc links.

    >>> with Session() as s:                      # private embedded Ray, ABY3, FM64
    ...     r = s.run(lambda x, w: x @ w, x, Secret(w, owner="model"))
    ...     r.outputs, r.metrics.send_bytes

    Args:
        protocol: SPU protocol ("aby3", "semi2k", "securenn", "cheetah", "ref2k").
        field: SPU ring ("fm64", "fm128", "fm32").
        parties: number of parties (each protocol states what it supports).
        spu_config: every SPU setting at once (exp mode, fraction bits, ...); overrides the three above.
        link: the brpc link settings (timeouts, payload size, ports).
        placement: "local" (every party on this node), "spread" (one per node) or "explicit" (by
            `party_specs`), or a `Placement` the caller made and releases.
        party_specs: per-party CPUs, threads, GPUs, node or resources (one spec for all, or one each).
        address: None starts a private embedded Ray; "auto", "HOST:PORT" or "emulated" joins a cluster.
        owners: the data owners that may share inputs and receive outputs.
        workdir: where party logs go (default: a temporary directory removed on close).
        network: a preset ("lan", "wan", ...), "RATE,DELAY", or a `netsim.NetworkProfile`.
        shaping: the netsim backend ("auto", "relay", "tc", "tc+relay", "none").
        trace: keep every party link's message timeline (sizes and times, never payloads) through
            the relay, also on an unshaped network: `messages()`, `write_trace()`.
        tls: True for mutual TLS with per-session certificates, or a `TLSConfig` with your own.
        cache: a compiled-program cache to share between sessions of one process.
        compile_for: the network programs are traced for, where an activation's form depends on
            it (raympc's softmax); default: `network`. An unshaped session that stands in for a
            shaped one (a sweep's reference step) compiles that one's program.

    Raises:
        ConfigError: an unknown protocol, field, profile or backend, or party counts that disagree.
    """

    def __init__(
        self,
        *,
        protocol: str = "aby3",
        field: str = "fm64",
        parties: int = 3,
        spu_config: SpuConfig | None = None,
        link: LinkConfig | None = None,
        placement: "str | Placement" = "local",
        party_specs: PartySpec | Sequence[PartySpec] | None = None,
        address: str | None = None,
        owners: Sequence[str] = DEFAULT_OWNERS,
        workdir: str | None = None,
        network: "str | netsim.NetworkProfile | None" = None,
        shaping: str = "auto",
        trace: bool = False,
        tls: "bool | TLSConfig" = False,
        cache: ProgramCache | None = None,
        compile_for: "str | netsim.NetworkProfile | None" = None,
    ) -> None:
        self.spu_config = spu_config or SpuConfig(protocol=protocol, field=field, parties=parties)
        self.parties = self.spu_config.parties
        self.link_config = link or LinkConfig()
        specs = party_specs if party_specs is not None else PartySpec()
        self.party_specs = [specs] * self.parties if isinstance(specs, PartySpec) else list(specs)
        if len(self.party_specs) != self.parties:
            raise ConfigError(f"{len(self.party_specs)} party specs given for {self.parties} parties")
        if self.link_config.ports is not None and len(self.link_config.ports) != self.parties:
            raise ConfigError(f"{len(self.link_config.ports)} link ports given for {self.parties} parties")
        # A Placement made by the caller (a sweep reserving a point's resources) is used as is
        # and released by the caller.
        self._given_placement = placement if isinstance(placement, Placement) else None
        self.placement_name = placement.describe if isinstance(placement, Placement) else placement
        self.address = address
        try:
            self.network = netsim.resolve(network)
            self.compile_for = netsim.resolve(compile_for) if compile_for is not None else self.network
        except netsim.ProfileError as exc:
            raise ConfigError(str(exc)) from exc
        if shaping != "auto" and shaping not in netsim.BACKENDS:
            raise ConfigError(f"unknown shaping backend {shaping!r}; choose 'auto' or one of {sorted(netsim.BACKENDS)}")
        self.shaping_backend = shaping
        self.trace = trace
        if trace and shaping == "none":
            raise ConfigError("trace=True needs the relay to see the messages; shaping='none' has none")
        self.runs: list[tuple[str, float, float]] = []  # with `trace`: (program, start, end) of each run
        self._shaping: "netsim.Shaping | ClusterShaping | None" = None
        self.tls = TLSConfig() if tls is True else (tls or None)
        self._per_node_shaping = False
        self.id = uuid.uuid4().hex[:12]
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"raympc-session-{self.id}-")
        self.owners = Owners(tuple(owners), self.parties, self.spu_config.runtime_config())
        # Programs are keyed by (program, visibilities, options), so sessions of one process may
        # share a cache: a sweep point's reference session reuses what its first session compiled.
        self.cache = cache if cache is not None else ProgramCache()
        self.metrics: RunMetrics | None = None
        self.party_info: list[dict[str, Any]] = []
        self._copts = self.spu_config.compiler_options()
        self._wide_products = fixed_point.wide_supported(self.spu_config.field, self.spu_config.fxp_fraction_bits)
        self._ray: RayHandle | None = None
        self._placement: Placement | None = None
        self._actors: list[Any] = []
        self._names = itertools.count()
        self._pending_free: list[str] = []
        self._shipped: set[str] = set()
        self._broken: RaympcError | None = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> "Session":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> "Session":
        """Start (or join) Ray, place and start the parties, and link them (idempotent).

        Returns:
            The session itself.

        Raises:
            SessionClosedError: the session was closed before.
            RayStartError, PlacementError, PortInUseError, LinkSetupError: Ray, the parties or their
                links could not be set up; nothing is left running.
        """
        if self._actors:
            return self
        if self._closed:
            raise SessionClosedError("a closed session cannot be reopened; create a new one")
        try:
            self._ray = start_or_join(self.address)
            self._placement = self._given_placement or place(self.placement_name, self.party_specs)
            self._start_actors()
            self._connect()
            if self._ray.temp_dir:  # an embedded Ray we own: note its workers and our workdir too
                leftovers.record([self.workdir] if self._own_workdir else [])
        except BaseException:
            self.close()
            raise
        return self

    def _start_actors(self) -> None:
        remote_party = ray.remote(Party)
        log_dir = os.path.join(self.workdir, "logs")
        for rank, (spec, opts) in enumerate(zip(self.party_specs, self._placement.options)):
            threads = spec.threads or max(1, math.ceil(spec.num_cpus))
            env = {"YACL_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
            actor = remote_party.options(
                **opts, max_restarts=0, max_concurrency=1, runtime_env={"env_vars": env},
                name=f"raympc-{self.id}-party{rank}",
            ).remote(rank, self.spu_config, self.link_config, log_dir)
            self._actors.append(actor)
        try:
            self.party_info = self._gather([a.describe.remote() for a in self._actors], "start",
                                           timeout=ACTOR_START_TIMEOUT_S)
        except GetTimeoutError as exc:
            need = [{"CPU": s.num_cpus, "GPU": s.num_gpus, **s.resources} for s in self.party_specs]
            raise PlacementError(
                f"the parties did not start within {ACTOR_START_TIMEOUT_S:.0f} s: they need {need}; "
                f"available now: {ray.available_resources()}") from exc

    def _connect(self) -> None:
        ports = self.link_config.ports or [None] * self.parties
        node_ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}
        # Parties all on the driver's node talk over loopback (never the host's public address);
        # otherwise over their nodes' IPs.
        here = ray.get_runtime_context().get_node_id()
        on_driver_node = all(info["node_id"] == here for info in self.party_info)
        hosts = ["127.0.0.1" if on_driver_node else node_ips[info["node_id"]] for info in self.party_info]
        # Parties on distinct machines are shaped by each node's kernel; parties that share a
        # network stack (one host, or nodes emulated on loopback) by the single-host backends.
        self._per_node_shaping = len(set(hosts)) == len(hosts) and not all(h.startswith("127.") for h in hosts)
        if self._per_node_shaping and self.trace:
            raise ConfigError("trace=True needs the parties' links to pass through one relay; parties on "
                              "separate nodes are shaped by each node's kernel and dial each other directly")
        if self._per_node_shaping and self.shaping_backend not in ("auto", "none", "tc"):
            raise ConfigError(f"shaping backend {self.shaping_backend!r} works within one host; parties on "
                              "separate nodes are shaped by each node's kernel (shaping='auto' or 'tc')")
        addresses = self._gather([a.choose_port.remote(h, p) for a, h, p in zip(self._actors, hosts, ports)], "port",
                                 self._call_timeout_s)
        for info, host, addr in zip(self.party_info, hosts, addresses):
            info.update(address=addr, host=host, node_ip=node_ips.get(info["node_id"], "?"))
        if self._per_node_shaping:
            if self.network.shaped:
                self._shaping = ClusterShaping(self.network, self.party_info)
        elif self.network.shaped or self.trace or self.shaping_backend not in ("auto", "none"):
            links = [netsim.PartyLink(src, dst, split_host_port(addresses[dst]))
                     for src in range(self.parties) for dst in range(self.parties) if src != dst]
            try:
                self._shaping = netsim.shape(self.network, links, self.shaping_backend, trace=self.trace)
            except netsim.ShapingError as exc:
                raise ConfigError(str(exc)) from exc
        creds = tls_credentials(self.tls, hosts) if self.tls is not None else [None] * self.parties
        # All ranks connect at once: create_brpc blocks until every peer has connected.
        self._gather([a.connect.remote(self._peer_addresses(rank, addresses), creds[rank])
                      for rank, a in enumerate(self._actors)], "connect", self._call_timeout_s)

    def _peer_addresses(self, rank: int, addresses: list[str]) -> list[str]:
        """The address list party `rank` dials: its own listen address, and per peer either the
        peer itself or the shaper of the directed link rank -> peer."""
        if self._shaping is None or self._per_node_shaping:
            return list(addresses)  # across machines the kernel shapes on the way out: dial directly
        return [addresses[d] if d == rank else self._shaping.address(rank, d) for d in range(self.parties)]

    def close(self) -> None:
        """Idempotent: kill the parties, release the placement group, stop the Ray we started."""
        if self._closed:
            return
        self._closed = True
        self._kill_parties()
        self._actors = []
        if self._shaping is not None:
            self._shaping.close()
        if self._placement is not None and self._placement is not self._given_placement:
            try:
                self._placement.release()
            except Exception:  # noqa: BLE001
                pass
        if self._ray is not None:
            self._ray.shutdown()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- values -----------------------------------------------------------------------------
    def share(self, value: Any, owner: str = "user") -> SecretValue:
        """Secret-share `value` from `owner` onto the parties; it stays there until freed.

        Args:
            value: an array (or anything numpy turns into a bool, int or float array).
            owner: the data owner who shares it.

        Returns:
            A handle to pass to `run` or `reveal`.

        Raises:
            InputError: a dtype fixed point cannot hold, or NaN/inf.
            SessionClosedError: the session is closed or broken.
        """
        self._check_open()
        arr = canonical_array(value, f"input owned by {owner!r}")
        return self._upload(arr, owner, libspu.Visibility.VIS_SECRET)

    def _upload(self, arr: np.ndarray, owner: str, vis: libspu.Visibility) -> SecretValue:
        shares = self.owners[owner].make_shares(arr, vis)
        name = f"v{next(self._names)}"
        # One object per share, each passed to its own party only.
        self._gather([a.set_share.remote(name, ray.put(s)) for a, s in zip(self._actors, shares)], "share",
                     self._call_timeout_s)
        handle = SecretValue(name=name, spec=spec_of(arr), session_id=self.id, visibility=int(vis))
        handle._finalizer = weakref.finalize(handle, self._pending_free.append, name)
        return handle

    def reveal(self, values: Any, to: str = "user") -> Any:
        """Reconstruct secret handles for the owner `to`.

        Args:
            values: a pytree of `SecretValue` handles of this session.
            to: the owner who receives the plaintext.

        Returns:
            The same pytree with arrays in place of the handles.

        Raises:
            InputError: a handle of another session, or one already freed.
            PartyError: a party failed while sending its shares.
        """
        self._check_open()
        owner = self.owners[to]
        leaves, tree = jax.tree_util.tree_flatten(values, is_leaf=lambda x: isinstance(x, SecretValue))
        for leaf in leaves:
            self._check_handle(leaf)
        names = [h.name for h in leaves]
        per_party = self._gather([a.get_shares.remote(names) for a in self._actors], "reveal",
                                 self._call_timeout_s)
        arrays = [owner.reconstruct([per_party[r][i] for r in range(self.parties)]).reshape(h.shape)
                  for i, h in enumerate(leaves)]
        return jax.tree_util.tree_unflatten(tree, arrays)

    def free(self, values: Any) -> None:
        """Drop secret handles from the parties now (otherwise they go when garbage-collected)."""
        for h in jax.tree_util.tree_leaves(values, is_leaf=lambda x: isinstance(x, SecretValue)):
            if isinstance(h, SecretValue) and h._finalizer is not None:
                h._finalizer()

    # -- secure functions -------------------------------------------------------------------
    def compile(self, fn: Callable, *example_args: Any) -> SecureFunction:
        """Compile `fn` for the shapes, dtypes and visibilities of `example_args` (not sent anywhere).

        Returns:
            A `SecureFunction` that runs the program and refuses inputs of other shapes, dtypes or
            visibilities before sending anything.
        """
        self._check_open()
        leaves, tree = self._flatten(example_args)
        arrays = [self._array_of(leaf, i) for i, leaf in enumerate(leaves)]
        specs, vis = zip(*(self._describe(l, a) for l, a in zip(leaves, arrays))) if leaves else ((), ())
        program = self.cache.compile(fn, specs, tree, vis, self._copts, self._wide_products, self.compile_for)
        return SecureFunction(self, fn, program)

    def run(self, fn: Callable, *args: Any, reveal_to: str | None = "user") -> RunResult:
        """Compile (cached), share the inputs, run all parties at once, reveal to `reveal_to`.

        Args:
            fn: a JAX function; its traced program is the cache key, so swapped activations recompile.
            *args: pytrees. Plain arrays are secrets of the owner "user"; wrap them with
                `Secret(x, owner=...)` or `Public(x)`, or pass a `SecretValue` already on the parties.
            reveal_to: the owner who receives the outputs; None keeps them secret-shared (handles).

        Returns:
            The outputs and the run's metrics (all ranks; wire counters when shaped).

        Raises:
            InputError: an input fixed point cannot hold, or one that does not match a compiled program.
            PartyDiedError, PartyUnresponsiveError, PartyError: a party failed; the session is then
                broken and every later call raises `SessionClosedError`.
        """
        return self._call(fn, args, reveal_to, expect=None)

    def _call(self, fn: Callable, args: tuple, reveal_to: str | None,
              expect: CompiledProgram | None) -> RunResult:
        self._check_open()
        if reveal_to is not None:
            self.owners[reveal_to]  # unknown receiver: fail before sending anything
        leaves, tree = self._flatten(args)
        arrays = [self._array_of(leaf, i) for i, leaf in enumerate(leaves)]
        described = [self._describe(leaf, arr) for leaf, arr in zip(leaves, arrays)]
        specs = tuple(d[0] for d in described)
        vis = tuple(d[1] for d in described)
        if expect is not None:
            self._check_matches(expect, specs, vis, tree)
            program = expect
        else:
            program = self.cache.compile(fn, specs, tree, vis, self._copts, self._wide_products, self.compile_for)

        inputs, temporaries = [], []
        for leaf, arr in zip(leaves, arrays):
            if isinstance(leaf, SecretValue):
                inputs.append(leaf.name)
                continue
            owner = leaf.owner if isinstance(leaf, Secret) else "user"
            vis_kind = libspu.Visibility.VIS_PUBLIC if isinstance(leaf, Public) else libspu.Visibility.VIS_SECRET
            handle = self._upload(arr, owner, vis_kind)
            inputs.append(handle.name)
            temporaries.append(handle)

        outputs = [f"v{next(self._names)}" for _ in program.out_specs]
        # Parties keep programs by key for the session's life: ship the code only once.
        code_ref = None if program.key in self._shipped else ray.put(program.code)
        free, self._pending_free[:] = list(self._pending_free), []
        links_before = self._shaping.counters() if self._shaping is not None else None
        started = time.monotonic()
        start = time.perf_counter()
        rank_dicts = self._gather([
            a.run.remote(program.key, code_ref, program.name, inputs, outputs, free)
            for a in self._actors], "run", timeout=None)
        self._shipped.add(program.key)
        wall = time.perf_counter() - start
        if self.trace:
            self.runs.append((program.name, started, time.monotonic()))
        ranks = [RankMetrics.from_dict(d) for d in rank_dicts]
        metrics = RunMetrics(program=program.name, wall_time_s=wall, ranks=ranks,
                             extra={"program_key": program.key[:16], "session": self.describe()})
        if links_before is not None:
            metrics.extra["links"] = self._link_report(links_before, metrics.send_bytes)
        self._accumulate(metrics)
        for h in temporaries:
            self.free(h)

        handles = []
        for name, spec in zip(outputs, program.out_specs):
            h = SecretValue(name=name, spec=spec, session_id=self.id, visibility=int(libspu.Visibility.VIS_SECRET))
            h._finalizer = weakref.finalize(h, self._pending_free.append, name)
            handles.append(h)
        result_tree = jax.tree_util.tree_unflatten(program.out_tree, handles)
        if reveal_to is not None:
            revealed = self.reveal(result_tree, to=reveal_to)
            self.free(handles)
            result_tree = revealed
        return RunResult(outputs=result_tree, metrics=metrics, program=program)

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _flatten(args: Any) -> tuple[list[Any], Any]:
        tagged = lambda x: isinstance(x, (Secret, Public, SecretValue))  # noqa: E731
        # Push Secret/Public tags down to the array leaves so model parameter trees can be tagged whole.
        def push(x: Any) -> Any:
            if isinstance(x, Secret):
                return jax.tree_util.tree_map(lambda a: Secret(a, x.owner), x.value)
            if isinstance(x, Public):
                return jax.tree_util.tree_map(Public, x.value)
            return x
        pushed = jax.tree_util.tree_map(push, args, is_leaf=tagged)
        return jax.tree_util.tree_flatten(pushed, is_leaf=tagged)

    def _describe(self, leaf: Any, arr: np.ndarray | None) -> tuple[ArgSpec, int]:
        """Spec and visibility of one flattened input (`arr` is its canonical array, if not a handle)."""
        if isinstance(leaf, SecretValue):
            self._check_handle(leaf)
            return leaf.spec, leaf.visibility
        vis = libspu.Visibility.VIS_PUBLIC if isinstance(leaf, Public) else libspu.Visibility.VIS_SECRET
        return spec_of(arr), int(vis)

    @staticmethod
    def _array_of(leaf: Any, index: int) -> np.ndarray | None:
        if isinstance(leaf, SecretValue):
            return None
        value = leaf.value if isinstance(leaf, (Secret, Public)) else leaf
        return canonical_array(value, f"input {index}")

    def _check_handle(self, h: SecretValue) -> None:
        if h.session_id != self.id:
            raise InputError(f"secret value {h.name} belongs to another session ({h.session_id})")
        if h._finalizer is not None and not h._finalizer.alive:
            raise InputError(f"secret value {h.name} was freed")

    @staticmethod
    def _check_matches(program: CompiledProgram, specs: tuple, vis: tuple, tree: Any) -> None:
        if tree != program.in_tree or len(specs) != len(program.in_specs):
            raise InputError(f"{program.name}: inputs have structure {tree}, compiled for {program.in_tree}")
        for i, (got, want) in enumerate(zip(specs, program.in_specs)):
            if got != want:
                raise InputError(f"{program.name}: input {i} is {got}, the program was compiled for {want}")
        if tuple(vis) != program.in_visibility:
            raise InputError(f"{program.name}: input visibilities {vis} differ from the compiled {program.in_visibility}")

    def _accumulate(self, m: RunMetrics) -> None:
        if self.metrics is None:
            self.metrics = RunMetrics(program="session", wall_time_s=0.0, runs=0,
                                      ranks=[RankMetrics(rank=r.rank, node=r.node) for r in m.ranks])
        self.metrics.add(m)

    def messages(self, run: int | None = None) -> list[netsim.Message]:
        """Every message the parties sent each other, from the relay's timeline (`trace=True`).

        Args:
            run: only those of the session's run number `run` (0 first; negative counts from the
                last), by the time they were sent; None: all, including setup and reveals.

        Raises:
            ConfigError: the session does not trace.
        """
        if not self.trace or not isinstance(self._shaping, netsim.Shaping):
            raise ConfigError("this session keeps no message timeline: Session(trace=True)")
        if run is None:
            return self._shaping.messages()
        _, start, end = self.runs[run]
        return self._shaping.messages(start, end)

    def trace_events(self) -> dict[str, Any]:
        """All messages so far as Trace Event JSON (ui.perfetto.dev, chrome://tracing): a track per
        directed link, a slice per message, bytes in flight, and each secure run on a track of its own.

        Raises:
            ConfigError: the session does not trace.
        """
        return netsim.chrome_trace(self.messages(), marks=self._run_marks())

    def write_trace(self, path: "str | os.PathLike[str]") -> str:
        """`trace_events` written to `path`.

        Returns:
            The path written.
        """
        return str(netsim.write_chrome_trace(path, self.messages(), marks=self._run_marks()))

    def _run_marks(self) -> list[tuple[str, float, float]]:
        return [(f"run {i}: {name}", start, end) for i, (name, start, end) in enumerate(self.runs)]

    def _link_report(self, before: dict[str, dict[str, int]], spu_bytes: int) -> dict[str, Any]:
        """Per-link bytes of one run, and how they compare with SPU's own count (brpc framing and
        RPC responses make the wire figure a little larger)."""
        after = self._shaping.counters()
        per_link = {k: {f: after[k][f] - before.get(k, {}).get(f, 0) for f in ("bytes", "packets")} for k in after}
        wire = sum(v["bytes"] for v in per_link.values())
        return {"per_link": per_link, "wire_bytes": wire, "spu_send_bytes": spu_bytes,
                "wire_vs_spu": (wire - spu_bytes) / spu_bytes if spu_bytes else None}

    def wire_report(self) -> dict[str, Any] | None:
        """Wire bytes the shaper counted over the whole session next to SPU's own count of every
        run (None without a shaper)."""
        if self._shaping is None or self.metrics is None:
            return None
        counters = self._shaping.counters()
        wire = sum(v["bytes"] for v in counters.values())
        spu = self.metrics.send_bytes
        return {"wire_bytes": wire, "spu_send_bytes": spu, "wire_vs_spu": (wire - spu) / spu if spu else None}

    def cut_link(self, src: int, dst: int) -> None:
        """Fault injection: cut the relayed link src -> dst (connections dropped, reconnects refused).

        The run in flight then fails with a PartyError once a party's recv timeout expires."""
        if self._shaping is None:
            raise ConfigError("cut_link needs relayed links: open the session with shaping='relay'")
        try:
            self._shaping.cut(src, dst)
        except netsim.ShapingError as exc:
            raise ConfigError(str(exc)) from exc

    def describe(self) -> dict[str, Any]:
        """The session's settings, its parties' nodes and addresses, and the network as applied."""
        return {
            "id": self.id, "protocol": self.spu_config.protocol, "field": self.spu_config.field,
            "parties": self.parties, "placement": self.placement_name,
            "exp_mode": self.spu_config.exp_mode,
            "tls": "off" if self.tls is None else ("supplied" if self.tls.cert_dir else "per-session"),
            "nodes": [i.get("node_id", "")[:12] for i in self.party_info],
            "hosts": [i.get("host", "") for i in self.party_info],
            "network": self._shaping.metadata() if self._shaping is not None
            else {"profile": self.network.name, "backend": "none"},
            "compiled_for": self.compile_for.name,
        }

    def _check_open(self) -> None:
        if self._broken is not None:
            raise SessionClosedError(f"session is broken by an earlier failure: {self._broken}")
        if self._closed or not self._actors:
            raise SessionClosedError("session is not open")

    def _node_of(self, rank: int) -> str:
        if rank >= len(self.party_info):
            return "?"
        info = self.party_info[rank]
        return f"{info.get('node_ip', '?')} (node {info.get('node_id', '?')[:8]})"

    def _fail(self, error: RaympcError) -> RaympcError:
        """Mark the session broken and kill the parties: their links cannot be resynchronised."""
        self._broken = error
        self._kill_parties()
        return error

    def _kill_parties(self) -> None:
        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead is fine
                pass

    @property
    def _call_timeout_s(self) -> float:
        """How long a call other than a run (sharing, revealing, connecting) may take per party."""
        return self.link_config.recv_timeout_s + FAILURE_GRACE_S

    def _gather(self, refs: list[Any], what: str, timeout: float | None) -> list[Any]:
        """Wait for one call per party; turn any failure into a typed error naming the rank.

        `timeout`: seconds after which a rank that has not answered is declared unresponsive (calls
        other than runs pass `_call_timeout_s`); None for runs, which the parties' own recv
        timeouts bound.
        A dead actor is reported at once. A party that raises makes us wait `FAILURE_GRACE_S` for
        the others: if they raised peer-timeouts while one rank stayed silent, the silent rank is the
        culprit (PartyUnresponsiveError); otherwise the first rank that raised is.
        """
        pending = {ref: rank for rank, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        errors: dict[int, BaseException] = {}
        deadline: float | None = None
        give_up = None if timeout is None else time.monotonic() + timeout
        while pending:
            if give_up is not None and time.monotonic() >= give_up and not errors:
                silent = sorted(pending.values())
                if what == "start":
                    raise GetTimeoutError(f"{what}: ranks {silent} did not answer in {timeout} s")
                raise self._fail(PartyUnresponsiveError(
                    silent[0], self._node_of(silent[0]), f"no answer to {what} within {timeout:.0f} s"))
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_POLL_S)
            for ref in ready:
                rank = pending.pop(ref)
                try:
                    results[rank] = ray.get(ref)
                except RayActorError as exc:
                    raise self._fail(PartyDiedError(rank, self._node_of(rank), f"actor died during {what}: {exc}")) from exc
                except RayTaskError as exc:
                    errors[rank] = exc.cause if exc.cause is not None else exc
                    deadline = deadline or time.monotonic() + FAILURE_GRACE_S
            if deadline is not None and time.monotonic() >= deadline:
                break
        if not errors:
            return results
        timeouts = {r for r, e in errors.items() if any(m in str(e).lower() for m in _TIMEOUT_MARKERS)}
        silent = sorted(pending.values())
        if silent and timeouts == set(errors):
            rank = silent[0]
            raise self._fail(PartyUnresponsiveError(
                rank, self._node_of(rank),
                f"no answer during {what}; peers {sorted(errors)} timed out waiting for it"))
        rank = min(set(errors) - timeouts) if set(errors) - timeouts else min(errors)
        cause = errors[rank]
        if isinstance(cause, RaympcError) and what in ("port", "connect"):
            raise self._fail(cause) from cause
        raise self._fail(PartyError(rank, self._node_of(rank), f"{what} failed: {cause}")) from cause
