"""Session configuration: the SPU runtime settings, the link settings and per-party placement.

Everything here is plain data (pydantic models) so it can be logged with every result, written to
sweep tables and shipped to party actors.
"""

from __future__ import annotations

from typing import Literal

import spu.libspu as libspu
from pydantic import BaseModel, ConfigDict, Field, field_validator

from raympc.runtime.protocols import lookup_exp_mode, lookup_field, lookup_protocol


class SpuConfig(BaseModel):
    """The SPU runtime and compiler settings shared by all parties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protocol: str = "aby3"
    field: str = "fm64"
    parties: int = 3
    fxp_fraction_bits: int = Field(0, ge=0, description="0 means SPU's default (18 for FM64)")
    exp_mode: str = "taylor"
    exp_iters: int = Field(0, ge=0, description="0 means SPU's default")
    div_goldschmidt_iters: int = Field(0, ge=0, description="0 means SPU's default (2)")
    # One reciprocal per softmax row instead of one per element.
    optimize_denominator_with_broadcast: bool = True

    @field_validator("protocol", "field", "exp_mode")
    @classmethod
    def _lower(cls, v: str) -> str:
        return v.lower()

    def model_post_init(self, __context: object) -> None:
        lookup_protocol(self.protocol, self.parties)
        lookup_field(self.field)
        lookup_exp_mode(self.exp_mode)

    def runtime_config(self) -> libspu.RuntimeConfig:
        cfg = libspu.RuntimeConfig(
            protocol=lookup_protocol(self.protocol, self.parties).kind,
            field=lookup_field(self.field),
            fxp_fraction_bits=self.fxp_fraction_bits,
        )
        cfg.fxp_exp_mode = lookup_exp_mode(self.exp_mode)
        if self.exp_iters:
            cfg.fxp_exp_iters = self.exp_iters
        if self.div_goldschmidt_iters:
            cfg.fxp_div_goldschmidt_iters = self.div_goldschmidt_iters
        # Profiles are how we count bytes, on every rank (SPU's simulator only profiles rank 0).
        cfg.enable_pphlo_profile = True
        cfg.enable_hal_profile = True
        # Byte counts are only exact with SPU's experimental op parallelism off.
        cfg.experimental_enable_inter_op_par = False
        cfg.experimental_enable_intra_op_par = False
        return cfg

    def compiler_options(self) -> libspu.CompilerOptions:
        copts = libspu.CompilerOptions()
        copts.enable_optimize_denominator_with_broadcast = self.optimize_denominator_with_broadcast
        return copts


class LinkConfig(BaseModel):
    """SPU (yacl brpc) link settings. Defaults survive WAN profiles and tensors of hundreds of MB."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A peer that sends nothing for this long is declared lost. SPU's 30 s is too short when a
    # 100 Mbit/s link carries a 1 GB message; it is also our fault-detection bound.
    recv_timeout_s: float = Field(600.0, gt=0)
    http_timeout_s: float = Field(120.0, gt=0)
    # Larger chunks mean fewer RPCs per message; 4 MiB keeps brpc well under its 64 MiB body cap.
    max_payload_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    connect_retries: int = Field(60, ge=1)
    connect_retry_interval_ms: int = Field(500, ge=10)
    # 0 keeps yacl's default window of in-flight async sends.
    throttle_window_size: int = Field(0, ge=0)
    # brpc channel settings passed through to yacl ("" keeps yacl's defaults).
    brpc_protocol: str = ""
    brpc_connection_type: str = ""
    bind_host: str | None = Field(None, description="address the parties listen on; default: node IP")
    ports: tuple[int, ...] | None = Field(None, description="fixed link ports per rank; default: free ports")

    def desc(self) -> libspu.link.Desc:
        desc = libspu.link.Desc()
        desc.recv_timeout_ms = int(self.recv_timeout_s * 1000)
        desc.http_timeout_ms = int(self.http_timeout_s * 1000)
        desc.http_max_payload_size = self.max_payload_bytes
        desc.connect_retry_times = self.connect_retries
        desc.connect_retry_interval_ms = self.connect_retry_interval_ms
        if self.brpc_protocol:
            desc.brpc_channel_protocol = self.brpc_protocol
        if self.brpc_connection_type:
            desc.brpc_channel_connection_type = self.brpc_connection_type
        if self.throttle_window_size:
            desc.throttle_window_size = self.throttle_window_size
        return desc


class PartySpec(BaseModel):
    """Where one party runs and what it reserves. GPUs are for placement only: SPU computes on CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(1.0, gt=0)
    num_gpus: float = Field(0.0, ge=0)
    resources: dict[str, float] = Field(default_factory=dict)
    node_id: str | None = None
    node_ip: str | None = None
    # yacl's thread pool ignores Ray's num_cpus; default: ceil(num_cpus).
    threads: int | None = Field(None, ge=1)


PlacementName = Literal["local", "spread"]
