"""netsim: shape every party-to-party link and count its bytes. Importable without Ray or SPU."""

from netsim.backends import BACKENDS, PartyLink, Shaping, ShapingError, choose_backend, reset, shape
from netsim.probe import Capabilities, probe
from netsim.profile import PRESETS, LinkShape, NetworkProfile, ProfileError, parse_duration, parse_rate, resolve
from netsim.timeline import Message, Timeline, chrome_trace, from_chrome_trace, write_chrome_trace

__all__ = [
    "NetworkProfile", "LinkShape", "PRESETS", "resolve", "parse_rate", "parse_duration", "ProfileError",
    "PartyLink", "Shaping", "ShapingError", "BACKENDS", "shape", "choose_backend", "reset",
    "Capabilities", "probe", "Message", "Timeline", "chrome_trace", "from_chrome_trace",
    "write_chrome_trace",
]
