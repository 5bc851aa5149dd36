"""Network profiles: rate, one-way delay, jitter and loss, per directed link or for all links.

Parsed from the strings people write ("100mbit", "1gbit", "20ms", "0.5%"), in YAML or on the
command line. Importable without Ray or SPU.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

_RATE_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
               "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}


class ProfileError(ValueError):
    """A profile string or field that cannot be understood."""


def _quantity(text: str, units: dict[str, float], default_unit: str, what: str, example: str) -> float:
    """'<number><unit>' scaled by its unit; units are case-insensitive."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Zµ]+)?\s*", text)
    if not m:
        raise ProfileError(f"cannot parse {what} {text!r}; write e.g. {example}")
    unit = (m[2] or default_unit).lower()
    if unit not in units:
        raise ProfileError(f"unknown {what} unit {m[2]!r} in {text!r}; use one of {sorted(units)}")
    return float(m[1]) * units[unit]


def parse_rate(value: Any) -> float | None:
    """'100mbit' -> 1e8 bit/s; numbers are bit/s; None, 0 and 'unlimited' mean no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "unlimited", "inf")):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    rate = _quantity(str(value), _RATE_UNITS, "bit", "rate", "'100mbit', '1gbit', '500kbit'")
    return rate if rate > 0 else None


def parse_duration(value: Any) -> float:
    """'20ms' -> 0.02 s; bare numbers are seconds."""
    if value is None:
        return 0.0
    if isinstance(value, (int, float)):
        if value < 0:
            raise ProfileError(f"negative duration {value}")
        return float(value)
    return _quantity(str(value), _TIME_UNITS, "s", "duration", "'20ms', '0.1ms', '1s'")


def parse_fraction(value: Any) -> float:
    """'1%' -> 0.01; bare numbers are fractions."""
    if value is None:
        return 0.0
    if isinstance(value, str) and value.strip().endswith("%"):
        return float(value.strip()[:-1]) / 100
    f = float(value)
    if not 0 <= f <= 1:
        raise ProfileError(f"loss must be in [0, 1] or a percentage, got {value!r}")
    return f


class LinkShape(BaseModel):
    """What one directed link does to traffic. `rate_bps=None` means unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_bps: float | None = None
    delay_s: float = Field(0.0, ge=0)
    jitter_s: float = Field(0.0, ge=0)
    loss: float = Field(0.0, ge=0, le=1)

    @field_validator("rate_bps", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> float | None:
        return parse_rate(v)

    @field_validator("delay_s", "jitter_s", mode="before")
    @classmethod
    def _time(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("loss", mode="before")
    @classmethod
    def _loss(cls, v: Any) -> float:
        return parse_fraction(v)

    @property
    def shaped(self) -> bool:
        return self.rate_bps is not None or self.delay_s > 0 or self.jitter_s > 0 or self.loss > 0

    def describe(self) -> str:
        rate = "unlimited" if self.rate_bps is None else _fmt_rate(self.rate_bps)
        out = f"{rate}, {self.delay_s * 1e3:g} ms one way"
        if self.jitter_s:
            out += f" ± {self.jitter_s * 1e3:g} ms"
        if self.loss:
            out += f", {self.loss:.2%} loss"
        return out


def _fmt_rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:g} {unit}"
    return f"{bps:g} bit/s"


class NetworkProfile(BaseModel):
    """A default shape for every directed link, with optional overrides keyed 'src->dst' (ranks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    default: LinkShape = LinkShape()
    links: dict[str, LinkShape] = Field(default_factory=dict)
    source: str = ""

    @field_validator("links")
    @classmethod
    def _keys(cls, v: dict[str, LinkShape]) -> dict[str, LinkShape]:
        for key in v:
            if not re.fullmatch(r"\d+->\d+", key):
                raise ProfileError(f"link key {key!r} must look like '0->1' (source rank -> destination rank)")
        return v

    @classmethod
    def symmetric(cls, rate: Any = None, delay: Any = 0.0, jitter: Any = 0.0, loss: Any = 0.0,
                  name: str = "custom") -> "NetworkProfile":
        return cls(name=name, default=LinkShape(rate_bps=rate, delay_s=delay, jitter_s=jitter, loss=loss))

    def link(self, src: int, dst: int) -> LinkShape:
        return self.links.get(f"{src}->{dst}", self.default)

    @property
    def shaped(self) -> bool:
        return self.default.shaped or any(s.shaped for s in self.links.values())

    def describe(self) -> str:
        text = f"{self.name}: {self.default.describe()}"
        for key, shape in sorted(self.links.items()):
            text += f"; {key}: {shape.describe()}"
        return text


def _preset(name: str, rate: str | None, delay: str, source: str) -> NetworkProfile:
    return NetworkProfile(name=name, default=LinkShape(rate_bps=rate, delay_s=delay), source=source)


# Where each figure comes from (see also ../shared/reference/network-shaping.md).
PRESETS: dict[str, NetworkProfile] = {
    p.name: p for p in (
        _preset("unshaped", None, "0ms", "no shaping: whatever the machine's links do"),
        _preset("lan", "10gbit", "0.1ms",
                "a 10 GbE data-centre LAN, 0.2 ms RTT; CrypTen-based evaluations start their "
                "bandwidth sweeps at 10 Gbit/s"),
        _preset("wan", "400mbit", "20ms",
                "400 Mbit/s with 40 ms RTT: raympc's standard WAN, between SPU's two WAN examples "
                "(300 Mbit/s + 20 ms, 500 Mbit/s + 10 ms)"),
        _preset("wan-slow", "100mbit", "40ms",
                "100 Mbit/s with 80 ms RTT: an intercontinental link, the low end of the "
                "'100s of Mbit/s' that MPC papers throttle to"),
        _preset("spu-wan", "300mbit", "20ms", "SPU's own WAN example: 300 Mbit/s and 20 ms"),
    )
}


def resolve(profile: "str | NetworkProfile | None") -> NetworkProfile:
    """A preset name, an inline 'rate,delay[,jitter[,loss]]' string, or a profile."""
    if profile is None:
        return PRESETS["unshaped"]
    if isinstance(profile, NetworkProfile):
        return profile
    if profile in PRESETS:
        return PRESETS[profile]
    parts = [p.strip() for p in str(profile).split(",")]
    if 2 <= len(parts) <= 4:
        try:
            return NetworkProfile.symmetric(*parts, name=str(profile))
        except (ProfileError, ValueError) as exc:
            raise ProfileError(f"cannot parse profile {profile!r}: {exc}") from exc
    raise ProfileError(f"unknown network profile {profile!r}; presets: {sorted(PRESETS)}, "
                       f"or write 'RATE,DELAY[,JITTER[,LOSS]]' such as '100mbit,20ms' or '100mbit,20ms,0,1%'")
