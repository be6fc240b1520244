"""Applying a selector to one request (reference §4.10): the core chooses, this rewrites.

Why a module of its own: the choice is the core's (:mod:`llamaswap.core.selectors`); the daemon
only hands it the targets' process states and rewrites the request's ``model`` to the chosen
target, before aliases, filters and routing (llama-swap's selector middleware order). The caller
releases the choice when the request ends (``Selectors.release``), answered or not.
"""

from __future__ import annotations

import json
import logging

from llamaswap.core.process import ProcessState
from llamaswap.core.selectors import Target
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
    found.model = chosen.name
    if found.json_body is not None:
        found.json_body["model"] = chosen.name
        body.head = json.dumps(found.json_body).encode()
    elif content_type.lower().startswith("multipart/form-data"):
        body.head = replace_multipart_model(content_type, body.head, chosen.name)
    return chosen
