"""The v2 request document check: one parse of the body, and a 400 with a message for anything that is not a v2
inference request, never a 500.

``parse_v2_body`` is the only parse of a REST body (``inference.v2_rest`` runs it in a thread, off the event loop,
and hands the document to KServe's data plane): not JSON, numbers beyond the float range, NaN or Infinity
(orjson refuses them), nesting deeper than any v2 document, no ``inputs`` list, a tensor without
``name``/``datatype``/``shape``/``data`` of the right kinds, or a shape whose product exceeds ``max_elements`` —
a shape of ``[2**62, 2**62]`` is refused here, before anything sized by it is allocated.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import orjson

DEFAULT_MAX_ELEMENTS = 1 << 20
# A v2 document is an object → "inputs" list → tensor object → data, nested once per tensor dimension;
# no BitPredict tensor has more than three. Anything deeper is refused before a recursive decoder sees it
# (Python's json raises RecursionError near 1,000 levels: a 500, not the client's 400).
MAX_DEPTH = 32
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')


class MalformedRequest(ValueError):
    pass


def nesting_depth(body: bytes) -> int:
    """The deepest ``[``/``{`` nesting outside JSON strings — vectorised, no recursion, linear in the body."""
    structure = np.frombuffer(_STRING.sub(b'""', body), dtype=np.uint8)
    step = np.isin(structure, (ord("["), ord("{"))).astype(np.int32) - np.isin(structure, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def parse_v2_body(body: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS) -> dict[str, Any]:
    """The v2 request document in ``body``, or ``MalformedRequest`` saying what is wrong with it."""
    depth = nesting_depth(body)
    if depth > MAX_DEPTH:
        raise MalformedRequest(f"the body nests {depth} levels deep; a v2 request needs at most {MAX_DEPTH}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"the body is not JSON with finite numbers ({exc})") from None
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list) or not document["inputs"]:
        raise MalformedRequest('a v2 request is a JSON object with a non-empty "inputs" list')
    for index, tensor in enumerate(document["inputs"]):
        if not isinstance(tensor, dict):
            raise MalformedRequest(f"inputs[{index}] is not an object")
        name = tensor.get("name")
        label = f"input '{name}'" if isinstance(name, str) and name else f"inputs[{index}]"
        if not isinstance(name, str) or not name:
            raise MalformedRequest(f"{label}: 'name' must be a non-empty string")
        if not isinstance(tensor.get("datatype"), str):
            raise MalformedRequest(f"{label}: 'datatype' must be a string")
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise MalformedRequest(f"{label}: 'shape' must be a list of non-negative integers")
        if math.prod(shape) > max_elements:
            raise MalformedRequest(f"{label}: shape {shape} holds more than {max_elements} elements")
        if not isinstance(tensor.get("data"), list):
            raise MalformedRequest(f"{label}: 'data' must be a list")  # its numbers are finite: orjson's rule
    return document


def check_v2_body(body: bytes, max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
    """Raise ``MalformedRequest`` unless ``body`` is a v2 inference request document."""
    parse_v2_body(body, max_elements)
