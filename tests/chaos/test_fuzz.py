"""Pathological client input: the guard refuses it with a message (fast), and the real servers answer 4xx, never 5xx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.chaos import fuzz
from inference.guard import MAX_DEPTH, MalformedRequest, check_v2_body, nesting_depth

DOCUMENT = {
    "inputs": [
        {"name": "timestamp", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]},
        {"name": "close", "datatype": "FP64", "shape": [3], "data": [1.0, 2.0, 3.0]},
    ]
}


def test_json_tree_has_the_drawn_depth_and_width() -> None:
    import random

    for depth in (0, 1, 7, 3_000):
        tree = fuzz.json_tree(random.Random(depth), depth, width=5)
        assert nesting_depth(tree) == depth + 1  # the levels plus the leaves' list
        if depth < 900:  # Python's own decoder reads what is shallow enough for it
            json.loads(tree)


@given(st.sampled_from(fuzz.REST_KINDS), st.integers(0, 2**32 - 1), st.integers(0, 10**7))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_guard_refuses_or_passes_every_generated_body_but_never_crashes(kind: str, seed: int, size: int) -> None:
    body = fuzz.mutate_rest(DOCUMENT, kind, seed, size)
    try:
        check_v2_body(body)
    except MalformedRequest as exc:
        assert str(exc)  # a message for the client
        return
    document = json.loads(body)  # what passes is a JSON document no deeper than the bound
    assert isinstance(document["inputs"], list) and nesting_depth(body) <= MAX_DEPTH


@pytest.mark.parametrize("name", list(fuzz.PATHOLOGICAL))
def test_the_guard_refuses_every_catalogued_body_with_a_message(name: str) -> None:
    if name in ("5,000 inputs", "shape that disagrees with data", "a 1 MB string in a BYTES input"):
        check_v2_body(fuzz.PATHOLOGICAL[name])  # well-formed v2 documents: the transformer refuses them (400)
        return
    with pytest.raises(MalformedRequest, match=r"\w"):
        check_v2_body(fuzz.PATHOLOGICAL[name])


def test_generated_grpc_requests_carry_the_pathology() -> None:
    many = fuzz.grpc_request(DOCUMENT, "many_inputs", seed=1, size=2_999)
    assert len(many.inputs) == 2 + 3_000
    raw = fuzz.grpc_request(DOCUMENT, "raw", seed=1, size=17)
    assert len(raw.raw_input_contents) == 2 and {len(r) for r in raw.raw_input_contents} == {17}
    bad = fuzz.grpc_request(DOCUMENT, "utf8", seed=3, size=5)
    assert any(t.datatype == "BYTES" for t in bad.inputs)


def test_the_real_servers_answer_pathological_input_with_4xx_never_5xx(tmp_path: Path) -> None:
    """The scenario ``make chaos`` runs (quick size): REST and gRPC against the real transformer + predictor."""
    row = fuzz.run(tmp_path, quick=True)
    assert row.client_input_5xx == 0, row.notes
    assert row.lost == 0, row.notes  # the servers lived and still answered a valid request over REST and gRPC
    assert row.requests == len(fuzz.PATHOLOGICAL) + 2 * 60
    rest = {code for code in row.errors if not code.startswith("grpc:")}
    assert rest and all(code.startswith("4") for code in rest), row.errors
    grpc_codes = {code.removeprefix("grpc:") for code in row.errors if code.startswith("grpc:")}
    assert grpc_codes and grpc_codes <= fuzz.GRPC_CLIENT_CODES, row.errors
