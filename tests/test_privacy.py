"""Each party receives only its own shares; outputs stay secret until revealed to their owner."""

from __future__ import annotations

import numpy as np
import ray

from raympc import Secret


def _fixed_point(x: np.ndarray, bits: int = 18) -> np.ndarray:
    return np.round(x.astype(np.float64) * (1 << bits)).astype(np.int64)


def test_parties_receive_only_their_shares(aby3):
    # Distinctive values whose raw and fixed-point encodings are easy to search for.
    secret = np.array([1234.5678, -987.654, 31.4159, 2718.28], np.float32)
    h = aby3.share(secret, owner="user")
    received = [ray.get(a.received_bytes.remote())[h.name] for a in aby3._actors]
    needles = [secret.tobytes(), _fixed_point(secret).tobytes()] + [v.tobytes() for v in _fixed_point(secret)]
    for rank, blob in enumerate(received):
        for needle in needles:
            assert needle not in blob, f"party {rank} received plaintext bytes"
    # Three different share blobs, none equal to another: no party got a copy of someone else's.
    assert len({bytes(b) for b in received}) == 3
    # And together they still are the secret.
    np.testing.assert_allclose(aby3.reveal(h), secret, rtol=1e-5)


def test_outputs_stay_secret_until_revealed(aby3, rng):
    x = rng.standard_normal((4, 4)).astype(np.float32)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    step = aby3.run(lambda a, b: a @ b, x, Secret(w, owner="model"), reveal_to=None)
    handle = step.outputs
    assert handle.shape == (4, 4)
    # Iterate on the secret-shared value without revealing the intermediate.
    again = aby3.run(lambda a, b: a @ b, handle, Secret(w, owner="model"))
    np.testing.assert_allclose(again.outputs, (x @ w) @ w, atol=1e-2)
    np.testing.assert_allclose(aby3.reveal(handle, to="user"), x @ w, atol=1e-3)
