"""Typed errors. Every failure a user can act on has its own class and names what failed."""

from __future__ import annotations


class RaympcError(Exception):
    """Base class of every error raised by raympc."""


class ConfigError(RaympcError):
    """An invalid protocol, field, placement or link setting (raised before anything starts)."""


class InputError(RaympcError, ValueError):
    """An input that cannot be secret-shared or does not fit the compiled program."""


class RayStartError(RaympcError, RuntimeError):
    """Ray could not be started or joined."""


class PlacementError(RaympcError, RuntimeError):
    """The parties cannot be placed as asked (too few nodes, missing resources)."""


class LinkSetupError(RaympcError, RuntimeError):
    """The SPU links between the parties could not be established."""


class PortInUseError(LinkSetupError):
    """A party's link port is already taken on its node."""

    def __init__(self, rank: int, host: str, port: int):
        self.rank, self.host, self.port = rank, host, port
        super().__init__(f"party {rank}: port {port} on {host} is already in use")

    def __reduce__(self):  # raised inside party actors: must survive pickling
        return (type(self), (self.rank, self.host, self.port))


class PartyError(RaympcError, RuntimeError):
    """A party failed during a run. `rank` and `node` name it."""

    def __init__(self, rank: int, node: str, message: str):
        self.rank, self.node = rank, node
        self.detail = message
        super().__init__(f"party {rank} on node {node}: {message}")

    def __reduce__(self):
        return (type(self), (self.rank, self.node, self.detail))


class PartyDiedError(PartyError):
    """A party's actor process died (killed, crashed, or its node was lost)."""


class PartyUnresponsiveError(PartyError):
    """A party neither finished nor failed while its peers gave up waiting for it."""


class SessionClosedError(RaympcError, RuntimeError):
    """The session was closed, or broken by an earlier party failure."""
