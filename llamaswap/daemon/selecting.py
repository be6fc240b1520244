"""Applying a selector to one request (reference §4.10): the core chooses, this rewrites.

Why a module of its own: the choice is the core's (:mod:`llamaswap.core.selectors`); the daemon
only hands it the targets' process states and rewrites the request's ``model`` to the chosen
target, before aliases, filters and routing (llama-swap's selector middleware order). The caller
releases the choice when the request ends (``Selectors.release``), answered or not.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from llamaswap.core.process import ProcessState
from llamaswap.core.selectors import Strategy, Target
from llamaswap.daemon.body import Body
from llamaswap.daemon.contract import Backend
from llamaswap.daemon.extract import Extracted, replace_multipart_model

log = logging.getLogger("llamaswap.selectors")


def select(
    backend: Backend, selector: str, content_type: str, found: Extracted, body: Body
) -> Target:
    """Choose ``selector``'s target and rewrite ``found`` and ``body`` to it (raises NoTargetError)."""
    spec = backend.config.selectors[selector].spec
    states: dict[str, ProcessState] = {}
    for target in spec.targets:
        state = backend.state(target.key) if target.local else None
        if state is not None:
            states[target.key] = state
    chosen = backend.selectors.choose(selector, states)
    log.debug("selector: id=%s target=%s", selector, chosen.name)
    rewrite_model(found, body, content_type, chosen.name)
    return chosen


def rewrite_model(found: Extracted, body: Body, content_type: str, name: str) -> None:
    """The request now asks for ``name`` (a profile pin or a selector's target)."""
    found.model = name
    if found.json_body is not None:
        found.json_body["model"] = name
        body.head = json.dumps(found.json_body).encode()
    elif content_type.lower().startswith("multipart/form-data"):
        body.head = replace_multipart_model(content_type, body.head, name)


_UP = (ProcessState.READY, ProcessState.STARTING)


def selector_records(backend: Backend, created: int) -> list[dict[str, Any]]:
    """``/v1/models`` entries for listed selectors; "loaded" when a local target is up (§2.10)."""
    out = []
    for sid, selector in sorted(backend.config.selectors.items()):
        if selector.unlisted:
            continue
        spec = selector.spec
        looked = spec.targets[:1] if spec.strategy is Strategy.PIN else spec.targets
        loaded = any(t.local and backend.state(t.key) in _UP for t in looked)
        record: dict[str, Any] = {"id": sid, "object": "model", "created": created}
        record["owned_by"] = "llamaswap"
        if selector.name:
            record["name"] = selector.name
        if selector.description:
            record["description"] = selector.description
        meta = {
            **dict(selector.metadata),
            "type": "selector",
            "strategy": spec.strategy.value,
            "targets": [t.name for t in spec.targets],
            "spillover": spec.spillover,
        }
        record["meta"] = {"llamaswap": meta}
        record["status"] = {"value": "loaded" if loaded else "unloaded"}
        out.append(record)
    return out
