"""Shared fixtures: one embedded Ray for the whole run (restarted if a test tore it down)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# raympc registers the user's stored fits (~/.cache/raympc/fits.json) when imported, and the suite
# parametrizes over every registered implementation: point the store at a file that does not exist
# first, so the tests that run do not depend on what `raympc fit` left on this machine (tests that
# write fits set their own RAYMPC_FITS). Subprocesses and Ray workers inherit it.
os.environ["RAYMPC_FITS"] = str(Path(tempfile.gettempdir()) / "raympc-tests-no-stored-fits" / "fits.json")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402

from raympc import LinkConfig, Session  # noqa: E402
from raympc.cluster.ray_instance import start_or_join

_handles = []


def ensure_ray() -> None:
    if not ray.is_initialized():
        # Enough logical CPUs for a few concurrent three-party sessions (1 CPU per party).
        _handles.append(start_or_join(num_cpus=12))


@pytest.fixture(scope="session", autouse=True)
def _shutdown_shared_ray():
    yield
    for h in _handles:
        h.shutdown()


@pytest.fixture(scope="module")
def ray_ready():
    """The shared embedded Ray (sessions join it instead of starting their own)."""
    ensure_ray()


@pytest.fixture(scope="module")
def aby3(ray_ready):
    with Session(protocol="aby3", link=LinkConfig(recv_timeout_s=60)) as s:
        yield s


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
