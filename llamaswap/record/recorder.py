"""Turn what a host sees into event-log records: core observations plus request milestones.

The recorder is a ``Host.observe`` sink for the core's observations and has explicit methods for
the request-level facts only a host knows (arrival with token counts, first byte, completion). It
never stores request bodies or API keys: only ids, model names, counts, times and statuses.

Record kinds (``ev``): ``meta``, ``arrival``, ``cancel``, ``reject``, ``grant``, ``first_byte``,
``done``, ``swap_start``, ``swap_end``, ``process``. Times ``t`` are seconds on the host's clock
relative to the first record.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

from llamaswap.core import observe
from llamaswap.record.eventlog import LOG_VERSION, EventLog


class Recorder:
    def __init__(
        self,
        log: EventLog,
        clock: Callable[[], float],
        meta: Mapping[str, Any],
        name: Callable[[Hashable], str] = str,
    ) -> None:
        """``name`` maps a core request id to the logged id (the simulator logs trace ids)."""
        self._log = log
        self._clock = clock
        self._name = name
        self._origin = clock()
        self._log.write({"ev": "meta", "t": 0.0, "version": LOG_VERSION, **meta})

    @property
    def path(self) -> Path:
        return self._log.path

    def flush(self) -> None:
        self._log.flush()

    def meta(self, meta: Mapping[str, Any]) -> None:
        """A later meta record (e.g. after a config reload); readers merge them in order."""
        self._log.write({"ev": "meta", "t": self._t(), **meta})

    def _t(self, at: float | None = None) -> float:
        return round((self._clock() if at is None else at) - self._origin, 6)

    def arrival(
        self,
        request_id: Hashable,
        model: str,
        *,
        prompt_tokens: int | None = None,
        output_tokens: int | None = None,
        stream: bool = False,
        at: float | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "ev": "arrival",
            "t": self._t(at),
            "id": self._name(request_id),
            "model": model,
        }
        if prompt_tokens is not None:
            record["prompt_tokens"] = prompt_tokens
        if output_tokens is not None:
            record["output_tokens"] = output_tokens
        record["stream"] = stream
        self._log.write(record)

    def cancel(self, request_id: Hashable, at: float | None = None) -> None:
        self._log.write({"ev": "cancel", "t": self._t(at), "id": self._name(request_id)})

    def first_byte(self, request_id: Hashable, at: float | None = None) -> None:
        self._log.write({"ev": "first_byte", "t": self._t(at), "id": self._name(request_id)})

    def done(
        self,
        request_id: Hashable,
        status: int | str,
        *,
        prompt_tokens: int | None = None,
        output_tokens: int | None = None,
        error: str | None = None,
        at: float | None = None,
    ) -> None:
        record: dict[str, Any] = {
            "ev": "done",
            "t": self._t(at),
            "id": self._name(request_id),
            "status": status,
        }
        if prompt_tokens is not None:
            record["prompt_tokens"] = prompt_tokens
        if output_tokens is not None:
            record["output_tokens"] = output_tokens
        if error:
            record["error"] = error[:300]
        self._log.write(record)

    def observe(self, item: observe.Observation) -> None:
        """``Host.observe`` sink: record swaps, grants, rejections and process state changes."""
        if isinstance(item, observe.RequestGranted):
            self._log.write(
                {
                    "ev": "grant",
                    "t": self._t(item.at),
                    "id": self._name(item.request_id),
                    "model": item.model,
                }
            )
        elif isinstance(item, observe.RequestFailed):
            self._log.write(
                {
                    "ev": "reject",
                    "t": self._t(item.at),
                    "id": self._name(item.request_id),
                    "model": item.model,
                    "kind": item.kind,
                    "message": item.message[:300],
                }
            )
        elif isinstance(item, observe.SwapStarted):
            self._log.write(
                {
                    "ev": "swap_start",
                    "t": self._t(item.at),
                    "model": item.model,
                    "evict": list(item.evict),
                }
            )
        elif isinstance(item, observe.SwapFinished):
            record: dict[str, Any] = {
                "ev": "swap_end",
                "t": self._t(item.at),
                "model": item.model,
                "ok": item.error is None,
            }
            if item.error:
                record["error"] = item.error[:300]
            self._log.write(record)
        elif isinstance(item, observe.ProcessStateChanged):
            self._log.write(
                {
                    "ev": "process",
                    "t": self._t(item.at),
                    "model": item.model,
                    "from": item.old,
                    "to": item.new,
                    "generation": item.generation,
                    "reason": item.reason[:200],
                }
            )

    def close(self) -> None:
        self._log.close()
