"""The process lifecycle table, row by row: each row does what it says, and the docs show it."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from recording_host import RecordingPort

from llamaswap.core.errors import ErrorKind, LoadFailure
from llamaswap.core.process import (
    _ROWS,
    TABLE,
    Action,
    Input,
    Phase,
    ProcessMachine,
    ProcessState,
    TransitionError,
    _complete,
    table_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
TTL = 30.0


class LoggingPort(RecordingPort):
    """A RecordingPort that also keeps one ordered log of what the machine did."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[object, ...]] = []

    def spawn(self, model: str, generation: int) -> None:
        super().spawn(model, generation)
        self.log.append(("spawn",))

    def terminate(self, model: str, generation: int) -> None:
        super().terminate(model, generation)
        self.log.append(("terminate",))

    def kill(self, model: str, generation: int) -> None:
        super().kill(model, generation)
        self.log.append(("kill",))

    def abort_serving(self, model: str, reason: str) -> None:
        super().abort_serving(model, reason)
        self.log.append(("abort",))

    def state_changed(
        self, model: str, old: ProcessState, new: ProcessState, generation: int, reason: str
    ) -> None:
        super().state_changed(model, old, new, generation, reason)
        self.log.append(("state", new.value))

    def settled(self, model: str, state: ProcessState, failure: LoadFailure | None) -> None:
        super().settled(model, state, failure)
        self.log.append(("settle", state.value, None if failure is None else failure.kind))


def _ready(m: ProcessMachine) -> None:
    m.ensure_ready()
    m.on_ready(m.generation)


def _serving_then(stop: Callable[[ProcessMachine], None]) -> Callable[[ProcessMachine], None]:
    def recipe(m: ProcessMachine) -> None:
        _ready(m)
        m.serve_started()  # a request in flight, so a completed stop has something to abort
        stop(m)

    return recipe


RECIPES: dict[Phase, Callable[[ProcessMachine], None]] = {
    Phase.STOPPED: lambda m: None,
    Phase.STARTING: lambda m: m.ensure_ready(),
    Phase.READY: _ready,
    Phase.STOPPING: _serving_then(lambda m: m.stop(10.0, "evicted")),
    Phase.RESTARTING: _serving_then(lambda m: (m.stop(10.0, "evicted"), m.ensure_ready())),
    Phase.SHUTTING_DOWN: _serving_then(lambda m: m.shutdown(10.0)),
    Phase.SHUTDOWN: lambda m: m.shutdown(1.0),
}


def _timer(port: LoggingPort, m: ProcessMachine, kind: str) -> None:
    """Fire the real timer when it is armed (time moves to it), else deliver a late one."""
    target = (kind, m.generation)
    if target in port.clock.pending_events():
        assert port.clock.pending_events()[0] == target, "no other timer may fire first"
        port.clock.fire_next()
    else:
        m.on_timer(kind, m.generation)


def _prepare(port: LoggingPort, m: ProcessMachine, given: Input) -> None:
    """Set up what classifies a TTL timer as due, early or serving."""
    if given is Input.TTL_EARLY:
        m.last_use = port.clock.now() + 5.0  # a completion the armed timer does not know of
    elif given is Input.TTL_BUSY:
        m.serve_started()


def _apply(port: LoggingPort, m: ProcessMachine, given: Input) -> None:
    g = m.generation
    if given is Input.ENSURE_READY:
        m.ensure_ready()
    elif given is Input.STOP:
        m.stop(2.0, "asked")
    elif given is Input.SHUTDOWN:
        m.shutdown(1.0)
    elif given is Input.READY:
        m.on_ready(g)
    elif given is Input.EXITED:
        m.on_exited(g, "bye")
    elif given is Input.HEALTH_TIMEOUT:
        _timer(port, m, "health")
    elif given is Input.KILL_TIMEOUT:
        _timer(port, m, "kill")
    elif given in (Input.TTL_DUE, Input.TTL_EARLY, Input.TTL_BUSY):
        _timer(port, m, "ttl")
    elif given is Input.SERVE_STARTED:
        m.serve_started()
    else:
        m.serve_finished()


def _expected_log(
    actions: tuple[Action, ...], in_flight: int, state: str
) -> list[tuple[object, ...]]:
    """What each action must show at the port (derived from the action names, not the code)."""
    log: list[tuple[object, ...]] = []
    for action in actions:
        if action is Action.START:
            state = "starting"
            log += [("state", state), ("spawn",)]
        elif action is Action.BEGIN_STOP:
            state = "stopping"
            log += [("state", state), ("terminate",)]
        elif action is Action.KILL:
            log.append(("kill",))
        elif action in (Action.MARK_READY, Action.MARK_STOPPED, Action.MARK_SHUTDOWN):
            state = action.value.removeprefix("mark_")
            log.append(("state", state))
        elif action is Action.ABORT_CRASHED or (action is Action.ABORT_IN_FLIGHT and in_flight):
            log.append(("abort",))
        elif action in (Action.SETTLE, Action.SETTLE_ABORTED, Action.SETTLE_FAILED):
            kind = {
                Action.SETTLE: None,
                Action.SETTLE_ABORTED: ErrorKind.LOAD_ABORTED,
                Action.SETTLE_FAILED: ErrorKind.LOAD_FAILED,
            }[action]
            log.append(("settle", state, kind))
    return log


def _armed(port: LoggingPort, m: ProcessMachine) -> set[str]:
    return {kind for kind, gen in port.clock.pending_events() if gen == m.generation}  # type: ignore[misc]


@pytest.mark.parametrize(
    ("phase", "given"), list(TABLE), ids=[f"{p.value}-{i.value}" for p, i in TABLE]
)
def test_each_row_reaches_its_next_phase_doing_exactly_its_actions(
    phase: Phase, given: Input
) -> None:
    row = TABLE[phase, given]
    port = LoggingPort()
    m = port.make(ttl=TTL)
    RECIPES[phase](m)
    assert m.phase is phase and m.state is phase.state
    _prepare(port, m, given)
    in_flight = m.in_flight
    before = m.state.value
    port.log.clear()
    _apply(port, m, given)

    assert m.phase is row.next
    assert m.state is row.next.state
    assert port.log == _expected_log(row.actions, in_flight, before)
    # Independent of the table: what each phase must have armed.
    armed = _armed(port, m)
    if row.next in (Phase.STOPPED, Phase.SHUTDOWN):
        assert armed == set()
    elif row.next is Phase.STARTING:
        assert armed == {"health"}
    elif row.next is Phase.READY:
        assert armed == ({"ttl"} if m.in_flight == 0 else set())
    else:
        assert armed == (set() if given is Input.KILL_TIMEOUT else {"kill"})


def test_the_table_is_complete_and_every_request_has_its_own_row() -> None:
    assert set(TABLE) == set(itertools.product(Phase, Input))
    for phase in Phase:
        for given in (Input.ENSURE_READY, Input.STOP, Input.SHUTDOWN):
            assert (phase, given) in _ROWS, f"{phase.value}/{given.value} needs a listed row"
    rows = dict(_ROWS)
    del rows[Phase.READY, Input.STOP]
    with pytest.raises(TransitionError, match="no row for the request stop in phase ready"):
        _complete(rows)


def test_a_transition_that_re_enters_its_machine_is_refused() -> None:
    class Reentrant(LoggingPort):
        def settled(self, model: str, state: ProcessState, failure: LoadFailure | None) -> None:
            assert self.machine is not None
            self.machine.ensure_ready()

    port = Reentrant()
    m = port.make()
    with pytest.raises(TransitionError, match="arrived while a transition ran"):
        m.stop(1.0)


def test_ensure_ready_while_shutting_down_fails_at_once_instead_of_waiting_forever() -> None:
    """Formerly a restart flag the shutdown then ignored: a waiter would never have been woken."""
    port = LoggingPort()
    m = port.make()
    _ready(m)
    m.shutdown(5.0)
    m.ensure_ready()
    assert port.failures[-1] == LoadFailure(ErrorKind.LOAD_FAILED, "process is shut down")
    assert not m.restart_pending
    m.on_exited(m.generation, "terminated")
    assert m.state is ProcessState.SHUTDOWN
    assert port.verbs().count("spawn") == 1


def test_design_md_shows_the_table_the_code_runs() -> None:
    text = (ROOT / "docs" / "design.md").read_text()
    found = re.search(
        r"<!-- process-table:begin -->\n(.*?)\n<!-- process-table:end -->", text, re.DOTALL
    )
    assert found, "docs/design.md lost its process-table markers"
    assert found.group(1) == table_markdown(), (
        "docs/design.md's lifecycle table differs from core/process.py: paste "
        "`python -c 'from llamaswap.core.process import table_markdown; print(table_markdown())'`"
    )
