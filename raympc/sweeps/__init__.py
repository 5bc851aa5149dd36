"""Parameter sweeps: specs (`spec`), one point in its own Ray task (`point`), the orchestration
(`runner`) and the results table (`store`)."""

from raympc.sweeps.spec import PointParams, SpecError, SweepSpec, expand, load_spec, select
from raympc.sweeps.store import ResultStore

__all__ = ["PointParams", "SweepSpec", "SpecError", "expand", "load_spec", "select", "ResultStore"]
