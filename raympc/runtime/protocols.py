"""Registries of the SPU protocols and rings raympc can run, with their party counts."""

from __future__ import annotations

from dataclasses import dataclass

import spu.libspu as libspu

from raympc.errors import ConfigError


@dataclass(frozen=True)
class ProtocolSpec:
    name: str
    kind: libspu.ProtocolKind
    party_counts: tuple[int, ...]
    note: str


PROTOCOLS: dict[str, ProtocolSpec] = {
    p.name: p
    for p in (
        ProtocolSpec("aby3", libspu.ProtocolKind.ABY3, (3,),
                     "replicated secret sharing, semi-honest, honest majority (CipherDM's setting)"),
        ProtocolSpec("semi2k", libspu.ProtocolKind.SEMI2K, (2, 3, 4, 5),
                     "additive sharing with a trusted dealer for Beaver triples (semi-honest)"),
        ProtocolSpec("cheetah", libspu.ProtocolKind.CHEETAH, (2,),
                     "two-party, HE/OT based (semi-honest)"),
        ProtocolSpec("securenn", libspu.ProtocolKind.SECURENN, (3,),
                     "three-party, semi-honest"),
        ProtocolSpec("ref2k", libspu.ProtocolKind.REF2K, (1, 2, 3, 4, 5),
                     "plaintext reference: NOT secure, for debugging only"),
    )
}

FIELDS: dict[str, libspu.FieldType] = {
    "fm32": libspu.FieldType.FM32,
    "fm64": libspu.FieldType.FM64,
    "fm128": libspu.FieldType.FM128,
}

EXP_MODES: dict[str, libspu.RuntimeConfig.ExpMode] = {
    "taylor": libspu.RuntimeConfig.ExpMode.EXP_TAYLOR,
    "pade": libspu.RuntimeConfig.ExpMode.EXP_PADE,
    "prime": libspu.RuntimeConfig.ExpMode.EXP_PRIME,
}


def lookup_protocol(name: str, parties: int) -> ProtocolSpec:
    spec = PROTOCOLS.get(name.lower())
    if spec is None:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {sorted(PROTOCOLS)}")
    if parties not in spec.party_counts:
        raise ConfigError(
            f"protocol {spec.name!r} runs with {list(spec.party_counts)} parties, not {parties}"
        )
    return spec


def lookup_field(name: str) -> libspu.FieldType:
    field = FIELDS.get(name.lower())
    if field is None:
        raise ConfigError(f"unknown field {name!r}; choose one of {sorted(FIELDS)}")
    return field


def lookup_exp_mode(name: str) -> libspu.RuntimeConfig.ExpMode:
    mode = EXP_MODES.get(name.lower())
    if mode is None:
        raise ConfigError(f"unknown exp mode {name!r}; choose one of {sorted(EXP_MODES)}")
    return mode
