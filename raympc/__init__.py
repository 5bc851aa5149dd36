"""raympc: three-party secure computation (SPU) hosted by Ray actors, with network shaping."""

from .config import LinkConfig, PartySpec, SpuConfig
from .errors import (
    ConfigError, InputError, LinkSetupError, PartyDiedError, PartyError, PartyUnresponsiveError,
    PlacementError, PortInUseError, RayStartError, RaympcError, SessionClosedError,
)
from .metrics import RankMetrics, RunMetrics
from .session import RunResult, SecureFunction, Session
from .tls import TLSConfig
from .values import Public, Secret, SecretValue

__version__ = "0.1.0"

__all__ = [
    "Session", "RunResult", "SecureFunction", "Secret", "Public", "SecretValue",
    "SpuConfig", "LinkConfig", "PartySpec", "TLSConfig", "RunMetrics", "RankMetrics",
    "RaympcError", "ConfigError", "InputError", "RayStartError", "PlacementError", "LinkSetupError",
    "PortInUseError", "PartyError", "PartyDiedError", "PartyUnresponsiveError", "SessionClosedError",
]
