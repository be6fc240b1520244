"""Reads llama-swap's ``config.yaml`` dialect into validated, typed settings.

Pipeline (reference §1.1): sources (``--config`` file, then ``--config-dir`` files sorted by name) ->
``${env.NAME}`` at string level -> strict YAML -> merge -> macros and ``${PORT}`` -> validation.

Deliberate differences from llama-swap, each chosen so a config is never silently misread:

* ``routing.scheduler.use`` defaults to ``serial`` (strict arrival order, one model resident), not
  llama-swap's ``fifo``; valid names come from ``llamaswap.core.policies.scheduler_names()``.
* ``routing.scheduler.settings.fifo.priority`` keys may be aliases and are stored by real model id
  (llama-swap accepts alias keys but then ignores them: quirk 14).
* Keys this project does not implement (matrix, ui, performance, ...) and unknown keys are ignored
  with one warning each in ``Config.warnings``; ``routing.router.use: matrix`` is an error.
* A selector target or profile pin naming no model is dropped with a warning while another remains
  (``peers``/``selectors``/``profiles`` are otherwise validated as llama-swap's: docs/peers.md).
* Group members and fifo priorities naming no model are dropped with a warning (llama-swap's own
  example config has such illustrative names).
* Duplicate YAML keys are errors (as in Go's yaml.v3); YAML dates stay strings.
* A macro that uses a macro declared after it is an error at its definition. Global macros also
  expand in supported top-level values (``preload``, ``apiKeys``, groups, ...), as llama-swap's docs
  promise ("any configuration value"); a leftover ``${...}`` there is an error too.
* A model with no ``proxy`` whose ``cmd`` does not use ``${PORT}`` is skipped with a warning
  (llama-swap rejects the whole file; its own example config has such a model). An explicit
  ``proxy`` using ``${PORT}`` without ``cmd`` using it is still an error.
* An alias equal to a model id is an error; preload names are de-duplicated.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from llamaswap.config.commands import split_command, strip_comment_lines
from llamaswap.config.model import Config, ConfigError, ModelConfig
from llamaswap.config.parse import build_config
from llamaswap.config.sources import (
    merge_sources,
    normalize,
    read_source,
    source_files,
    substitute_env_tree,
)

__all__ = [
    "Config",
    "ConfigError",
    "ModelConfig",
    "load_config",
    "parse_config",
    "split_command",
    "strip_comment_lines",
]


def parse_config(
    data: Mapping[str, Any],
    *,
    source: str = "<config>",
    require_cmd: bool = True,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Validate an already-parsed config mapping (e.g. a simulator scenario's routing section).

    ``${env.NAME}`` in string values is substituted from ``env`` (falling back to ``os.environ``).
    With ``require_cmd=False`` models may omit ``cmd`` (the simulator has no processes to start).
    """

    def run() -> Config:
        tree = normalize(data, source)
        tree = substitute_env_tree(tree, source, env)
        return build_config(tree, source=source, require_cmd=require_cmd)

    return _guarded(run, source)


def load_config(
    path: str | os.PathLike[str] | None = None,
    config_dir: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    require_cmd: bool = True,
) -> Config:
    """Load, merge and validate a config file and/or directory.

    ``env``, when given, is the whole environment ``${env.NAME}`` reads (``os.environ`` is then not
    consulted), so tests are hermetic. Env values are substituted into the raw text with ``\\`` and
    ``"`` escaped, exactly as llama-swap does (right inside double quotes; literal elsewhere).
    """
    where = ", ".join(str(p) for p in (path, config_dir) if p is not None) or "config"

    def run() -> Config:
        files = source_files(path, config_dir)
        parsed = []
        errors: list[str] = []
        for f in files:  # a problem in one file does not hide those in the next
            try:
                data = read_source(f, env)
            except ConfigError as exc:
                errors.extend(exc.errors)
                continue
            if data is not None:
                parsed.append((str(f), data))
        if errors:
            raise ConfigError.collected(errors, [])
        merged = merge_sources(parsed)
        names = tuple(str(f) for f in files)
        return build_config(merged, source=", ".join(names), require_cmd=require_cmd, sources=names)

    return _guarded(run, where)


def _guarded(run: Callable[[], Config], source: str) -> Config:
    """Last line of defence: whatever the input, callers only ever see ConfigError.

    Validation raises ConfigError itself; this only catches a bug of ours (the fuzz tests call the
    unguarded functions so such bugs still fail tests) and keeps its type name for the report.
    """
    try:
        return run()
    except ConfigError:
        raise
    except RecursionError:
        raise ConfigError(f"{source}: config nested too deeply") from None
    except Exception as exc:  # deliberately total: see docstring
        raise ConfigError(f"{source}: cannot read config ({type(exc).__name__}: {exc})") from exc
