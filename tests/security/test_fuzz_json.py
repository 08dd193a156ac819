"""Property-based fuzzing of the one JSON reader (assistant/entrypoints/web/bodies.py).

Whatever the bytes, ``parse_json`` answers a value or ``BodyRefused(400)`` - never
another exception, never a RecursionError - within a time and memory budget per
example; for real JSON it agrees with ``json.loads`` up to the depth limit, and its
depth measure is exact.
"""

from __future__ import annotations

import json
import math
import time
import tracemalloc
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.entrypoints.web.bodies import BodyRefused, json_depth, parse_json

MAX_DEPTH = 32
BUDGET = settings(
    max_examples=300,
    deadline=timedelta(seconds=10),  # the budget is asserted in within_budget
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SECONDS_PER_MB = 2.0  # the reader is linear: 1 MB takes well under a second
# Transient copies while measuring the depth (about 55 bytes a byte at worst, for a body of
# many tiny strings) - what json.loads itself needs for its result is of the same order.
MEMORY_PER_BYTE = 80


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
    | st.sampled_from(['"', "\\", "[", "]", "{", "}", '\\"[', '"]}'])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=60,
)


def _answer(raw: bytes) -> Any:
    try:
        return parse_json(raw, MAX_DEPTH)
    except BodyRefused as refused:
        return refused


def _refused_with_400(outcome: Any) -> None:
    if isinstance(outcome, BodyRefused):
        assert outcome.status == 400, outcome.message


def within_budget(raw: bytes) -> Any:
    """parse_json's answer (a value or the BodyRefused), checked against the budget:
    timed on its own, then run again to measure its peak memory."""
    # This thread's CPU time: the work the body costs, not how busy the machine is (a
    # loaded CI machine stretched the wall time of a tiny body to 1.8 s).
    started = time.thread_time()
    outcome = _answer(raw)
    elapsed = time.thread_time() - started
    _refused_with_400(outcome)
    assert elapsed < 0.2 + SECONDS_PER_MB * len(raw) / 1e6, elapsed
    assert _peak_memory(raw) < 2_000_000 + MEMORY_PER_BYTE * len(raw)
    return outcome


def _peak_memory(raw: bytes) -> int:
    """The least of two measured peaks: tracemalloc also counts what other threads of the
    process allocate meanwhile (pytest-xdist's channel thread), which only ever adds."""
    peaks = []
    for _ in range(2):
        tracemalloc.start()
        try:
            _answer(raw)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks)


@BUDGET
@given(st.binary(max_size=4096))
def test_any_bytes_give_a_value_or_a_400(raw: bytes) -> None:
    within_budget(raw)


@BUDGET
@given(values)
def test_real_json_round_trips_up_to_the_depth_limit(value: Any) -> None:
    raw = json.dumps(value).encode()
    assert json_depth(raw) == depth_of(value)
    outcome = within_budget(raw)
    if depth_of(value) > MAX_DEPTH:
        assert isinstance(outcome, BodyRefused)
    else:
        assert outcome == value


@BUDGET
@given(
    st.integers(min_value=0, max_value=200_000),
    st.sampled_from([b"[", b"{", b'{"a":', b'["\\"', b"[1,"]),
    st.binary(max_size=64),
)
def test_deep_or_broken_nesting_is_refused_without_recursion(
    levels: int, opener: bytes, tail: bytes
) -> None:
    raw = opener * levels + tail
    outcome = within_budget(raw)
    if json_depth(raw) > MAX_DEPTH:
        assert isinstance(outcome, BodyRefused)


@BUDGET
@given(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e999", "1" * 5000]),
    st.sampled_from(["{0}", "[{0}]", '{{"n": {0}}}']),
)
def test_numbers_that_are_not_finite_are_refused(number: str, shape: str) -> None:
    outcome = within_budget(shape.format(number).encode())
    assert isinstance(outcome, BodyRefused)


@BUDGET
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers())
def test_finite_numbers_pass(number: float, whole: int) -> None:
    value = within_budget(json.dumps({"f": number, "i": whole}).encode())
    assert isinstance(value, dict) and value["i"] == whole
    assert math.isfinite(value["f"]) and value["f"] == number
