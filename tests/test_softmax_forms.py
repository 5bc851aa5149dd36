"""raympc's softmax picks its row max per call site on the session's network (softmax_forms.py):
the figures it prices with are SPU's, and the choice reaches the compiled program and the
coverage report."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import raympc.activations as acts
from raympc import Session
from raympc.activations import softmax_forms
from raympc.activations.softmax_forms import TOURNAMENT, TREE, choose


def _softmax_with(form):
    softmax = acts.get("softmax", "raympc-tournament" if form is TOURNAMENT else "raympc-lean").fn
    return lambda v: softmax(v, axis=-1)


@pytest.mark.parametrize("length", [16, 196, 1024])
def test_send_actions_it_prices_with_are_spus(aby3, length):
    """The busiest rank's send actions per call, as `RowMax.actions` counts them, within 10% of
    SPU's own count for both forms (deterministic: they depend on the program, not the values)."""
    x = np.random.default_rng(0).normal(0, 3, (max(1, 4096 // length), length)).astype(np.float32)
    for form in (TREE, TOURNAMENT):
        measured = aby3.run(_softmax_with(form), x).metrics.max_rank_send_actions
        assert form.actions(length) == pytest.approx(measured, rel=0.1), (form.name, length, measured)


def test_the_tournament_sends_more_bytes_per_score_as_priced(aby3):
    x = np.random.default_rng(0).normal(0, 3, (16, 256)).astype(np.float32)
    sent = {form.name: aby3.run(_softmax_with(form), x).metrics.max_rank_send_bytes / x.size
            for form in (TREE, TOURNAMENT)}
    assert 0.5 * TOURNAMENT.extra_bytes_per_element < sent["tournament"] - sent["tree"] \
        < 2 * TOURNAMENT.extra_bytes_per_element, sent


def test_choice_follows_what_the_network_makes_expensive():
    mnist = (2 * 49, 49)  # the MNIST U-Net's 7x7 attention at batch 2: 4,802 scores a call
    sd = (8 * 4096, 4096)  # one SD v1 head group at 64x64 latents: 134 million scores
    assert choose(*mnist, "wan") is TOURNAMENT  # 20 ms rounds: the four levels it saves win
    assert choose(*mnist, "unshaped") is TREE  # no rounds to save: fewer bytes and less compute
    assert choose(*mnist, "lan") is TREE
    assert choose(*sd, "wan") is TREE  # its compute and bytes outweigh the rounds it saves
    assert choose(1, 1, "wan") is TREE
    # outside a session's compile: the unshaped choice
    assert choose(*mnist) is TREE


def test_a_session_compiles_the_form_its_network_calls_for(ray_ready):
    """The same model traced for `wan` and for an unshaped session is two programs, and the
    coverage report names the form each runs."""
    x = np.random.default_rng(0).normal(0, 3, (2, 49, 49)).astype(np.float32)

    def attention(v):
        return jax.nn.softmax(v, axis=-1)

    keys = {}
    with acts.use("raympc"):
        for network in ("unshaped", "wan"):
            with Session(network=network) as s:
                keys[network] = s.compile(attention, x).program.key
            report = acts.coverage(attention, x, network=network)
            form = softmax_forms.describe(x.shape, -1, network)
            assert [site.runs for site in report.sites] == [f"raympc ({form})"]
    assert keys["unshaped"] != keys["wan"]
    assert softmax_forms.describe(x.shape, -1, "wan") == "row max by tournament"
    assert softmax_forms.describe(x.shape, -1, "unshaped") == "row max by tree"
