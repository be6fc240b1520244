"""The daemon's bounds as typed settings: per-model ``timeouts``, top-level ``limits`` and ``security``.

Plain dataclasses with their defaults (no parsing here, so ``model.py`` can embed them without an
import cycle); :mod:`llamaswap.config.hardening` reads them from YAML. docs/limits.md lists each
one with its default and why.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """``models.<id>.timeouts``, seconds, 0 = none.

    The first six keys are llama-swap's (same names, same defaults: Go's ``http.DefaultTransport``).
    ``idle``, ``total`` and ``write`` are llamaswap extensions: llama-swap has no bound on a
    stalled upstream or a client that stops reading, so either could pin a model as busy forever.
    """

    connect: float = 30.0
    keepalive: float = 30.0
    response_header: float = 0.0
    tls_handshake: float = 10.0
    expect_continue: float = 1.0
    idle_conn: float = 90.0
    idle: float = 600.0
    """Longest silence from the upstream once the request is sent (head and body gaps alike):
    long enough for a slow non-streaming generation, short enough that a hung (SIGSTOPped)
    upstream frees its model."""
    total: float = 0.0
    """Whole relay (request sent to last byte out); none by default: streams may be long."""
    write: float = 120.0
    """Longest a write to the client may wait for it to read (a client that stopped reading)."""


@dataclass(frozen=True)
class Limits:
    """Top-level ``limits`` (llamaswap extension): what one client connection may cost."""

    max_connections: int = 4096
    """Concurrent client connections; more are closed at once (logged, rate-limited). Clamped
    below the file-descriptor limit at start-up."""
    header_timeout: float = 10.0
    """Seconds from a request's first byte (or the connection's opening) to its complete head."""
    body_idle: float = 30.0
    """Longest gap between request body bytes."""
    body_min_rate: float = 1024.0
    """Bytes per second a request body must average once ``body_idle`` seconds have passed."""
    max_json_body: int = 32 * 1024 * 1024
    """Bytes of a JSON (or JSON-looking) body; uploads keep the ``--max-body-mb`` limit."""
    max_json_containers: int = 200_000
    """Objects plus arrays in one JSON body, counted before it is parsed."""


@dataclass(frozen=True)
class Security:
    """Top-level ``security`` (llamaswap extension): who may drive the daemon, what leaks upstream."""

    cors_origins: tuple[str, ...] = ()
    """Origins allowed cross-site; ``["*"]`` is llama-swap's behaviour (any web page)."""
    allowed_hosts: tuple[str, ...] = ()
    """Extra ``Host`` names accepted while listening on loopback (DNS-rebinding guard)."""
    inherit_env: bool = False
    """True: upstreams get the daemon's whole environment (llama-swap's behaviour)."""
    forward_credentials: bool = False
    """True: the client's ``Authorization``/``x-api-key``/``Cookie`` headers reach the upstream."""
