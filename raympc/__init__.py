"""raympc: three-party secure computation (SPU) hosted by Ray actors, with network shaping."""

from raympc.errors import (
    ConfigError,
    InputError,
    LinkSetupError,
    PartyDiedError,
    PartyError,
    PartyUnresponsiveError,
    PlacementError,
    PortInUseError,
    RaympcError,
    RayStartError,
    SessionClosedError,
)
from raympc.runtime.config import LinkConfig, PartySpec, SpuConfig
from raympc.runtime.metrics import RankMetrics, RunMetrics
from raympc.runtime.session import RunResult, SecureFunction, Session
from raympc.runtime.tls import TLSConfig
from raympc.runtime.values import Public, Secret, SecretValue

__version__ = "0.1.0"

__all__ = [
    "Session", "RunResult", "SecureFunction", "Secret", "Public", "SecretValue",
    "SpuConfig", "LinkConfig", "PartySpec", "TLSConfig", "RunMetrics", "RankMetrics",
    "RaympcError", "ConfigError", "InputError", "RayStartError", "PlacementError", "LinkSetupError",
    "PortInUseError", "PartyError", "PartyDiedError", "PartyUnresponsiveError", "SessionClosedError",
]
