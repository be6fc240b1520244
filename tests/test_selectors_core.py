"""The core's selector decision: llama-swap's selector_test.go cases, plus hypothesis invariants."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamaswap.core.process import ProcessState
from llamaswap.core.selectors import (
    NoTargetError,
    Selectors,
    SelectorSpec,
    Strategy,
    Target,
    TargetClass,
    classify,
)

S = ProcessState


def _local(*names: str) -> tuple[Target, ...]:
    return tuple(Target(n, n, True) for n in names)


def _one(strategy: Strategy, targets: tuple[Target, ...], spillover: int = 1) -> Selectors:
    return Selectors({"pool": SelectorSpec("pool", strategy, targets, spillover)})


def test_pin_is_the_first_target() -> None:
    sel = _one(Strategy.PIN, _local("first", "second"))
    assert sel.choose("pool", {"second": S.READY}).name == "first"


def test_warm_prefers_ready_then_starting_then_first() -> None:
    sel = _one(Strategy.WARM, _local("a", "b", "c"))
    assert sel.choose("pool", {"a": S.STARTING, "c": S.READY}).name == "c"
    assert sel.choose("pool", {"a": S.STARTING, "b": S.READY, "c": S.READY}).name == "b"
    assert sel.choose("pool", {"a": S.STARTING, "b": S.STARTING}).name == "a"
    assert sel.choose("pool", {}).name == "a"


def test_spillover_local_targets() -> None:
    sel = _one(Strategy.SPILLOVER, _local("a", "b", "c"), spillover=2)
    assert [sel.choose("pool", {}).name for _ in range(3)] == ["a", "a", "b"]
    sel.release("pool", Target("a", "a", True))
    ready = {"a": S.READY, "b": S.READY, "c": S.READY}
    assert sel.choose("pool", ready).name == "c"

    stopping = _one(Strategy.SPILLOVER, _local("a", "b", "c"), spillover=2)
    with pytest.raises(NoTargetError, match="no available spillover targets"):
        stopping.choose("pool", {"a": S.STOPPING, "b": S.STOPPING, "c": S.SHUTDOWN})


def test_spillover_remote_targets() -> None:
    targets = (Target("remote/a", "remote/a", False), Target("remote/b", "remote/b", False))
    sel = _one(Strategy.SPILLOVER, targets, spillover=1)
    first = sel.choose("pool", {})
    second = sel.choose("pool", {})
    assert (first.name, second.name) == ("remote/a", "remote/b")
    sel.release("pool", first)
    sel.release("pool", second)
    assert sel.choose("pool", {}).name == "remote/a"


def test_spillover_reservations_spread_concurrent_requests() -> None:
    """SpilloverReservations: two requests in flight at once go to different ready targets."""
    sel = _one(Strategy.SPILLOVER, _local("a", "b", "c"))
    ready = {"a": S.READY, "b": S.READY, "c": S.READY}
    assert sel.choose("pool", ready) != sel.choose("pool", ready)


def test_classification_table() -> None:
    local, peer = Target("m", "m", True), Target("p/m", "p/m", False)
    rows = [
        (local, S.STOPPING, 3, TargetClass.SKIPPED),
        (local, S.SHUTDOWN, 0, TargetClass.SKIPPED),
        (local, S.READY, 0, TargetClass.ACTIVE),
        (local, S.STARTING, 0, TargetClass.ACTIVE),
        (local, S.STOPPED, 1, TargetClass.ACTIVE),
        (local, None, 0, TargetClass.COLD),
        (local, S.STOPPED, 0, TargetClass.COLD),
        (peer, None, 2, TargetClass.ACTIVE),
        (peer, None, 0, TargetClass.COLD),
    ]
    for target, state, in_flight, want in rows:
        assert classify(target, state, in_flight) is want, (target, state, in_flight)


def test_release_of_nothing_reserved_is_a_bug() -> None:
    sel = _one(Strategy.SPILLOVER, _local("a"))
    with pytest.raises(AssertionError):
        sel.release("pool", Target("a", "a", True))


# ----------------------------------------------------------------------------- properties

STATES = st.sampled_from([None, S.STOPPED, S.STARTING, S.READY, S.STOPPING, S.SHUTDOWN])
TARGETS = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.booleans()),
    min_size=1,
    max_size=5,
    unique_by=lambda t: t[0],
).map(
    lambda xs: tuple(
        Target(n if local else f"peer/{n}", n if local else f"peer/{n}", local) for n, local in xs
    )
)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("choose"), st.dictionaries(st.sampled_from("abcdef"), STATES)),
        st.tuples(st.just("release"), st.integers(0, 50)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(targets=TARGETS, spillover=st.integers(1, 4), steps=STEPS)
def test_spillover_invariants(
    targets: tuple[Target, ...], spillover: int, steps: list[tuple[str, object]]
) -> None:
    """Counts equal outstanding reservations; choices obey the rules; the run is deterministic."""

    def run() -> list[str | None]:
        sel = _one(Strategy.SPILLOVER, targets, spillover)
        outstanding: list[Target] = []
        trace: list[str | None] = []
        for op, arg in steps:
            if op == "release":
                if outstanding:
                    sel.release("pool", outstanding.pop(int(arg) % len(outstanding)))  # type: ignore[call-overload]
                trace.append(None)
                continue
            states: dict[str, ProcessState] = arg  # type: ignore[assignment]
            counts_before = {t.key: sel.in_flight("pool", t.key) for t in targets}
            classes = {t.key: classify(t, states.get(t.key), counts_before[t.key]) for t in targets}
            try:
                chosen = sel.choose("pool", states)
            except NoTargetError:
                assert all(c is TargetClass.SKIPPED for c in classes.values())
                trace.append("none")
                continue
            assert chosen in targets and classes[chosen.key] is not TargetClass.SKIPPED
            active = [t for t in targets if classes[t.key] is TargetClass.ACTIVE]
            cold = [t for t in targets if classes[t.key] is TargetClass.COLD]
            least = min((counts_before[t.key] for t in active), default=None)
            if least is None:
                assert chosen == cold[0]
            elif least < spillover or not cold:
                assert classes[chosen.key] is TargetClass.ACTIVE
                assert counts_before[chosen.key] == least  # least busy
            else:
                assert chosen == cold[0]  # every active target is full: spill to the next
            outstanding.append(chosen)
            trace.append(chosen.key)
            held = Counter(t.key for t in outstanding)
            assert {t.key: sel.in_flight("pool", t.key) for t in targets} == {
                t.key: held[t.key] for t in targets
            }
        return trace

    assert run() == run()


@settings(max_examples=200, deadline=None)
@given(targets=TARGETS, states=st.dictionaries(st.sampled_from("abcdef"), STATES))
def test_pin_and_warm_never_reserve_and_warm_prefers_ready(
    targets: tuple[Target, ...], states: dict[str, ProcessState]
) -> None:
    local = tuple(t for t in targets if t.local) or _local("a")
    warm = _one(Strategy.WARM, local)
    chosen = warm.choose("pool", states)
    ready = [t for t in local if states.get(t.key) is S.READY]
    starting = [t for t in local if states.get(t.key) is S.STARTING]
    assert chosen == (ready or starting or list(local))[0]
    assert _one(Strategy.PIN, targets).choose("pool", states) == targets[0]
    assert warm.in_flight("pool", chosen.key) == 0
