"""Typed, validated configuration objects produced by the loader.

Values here are *effective* values (defaults and global fallbacks applied), so hosts never have to
re-implement llama-swap's "0 means default" / "-1 means global" rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llamaswap.config.limits import Limits, Security, Timeouts
from llamaswap.core.spec import (
    DEFAULT_HEALTH_CHECK_TIMEOUT,
    DEFAULT_UNLOAD_TIMEOUT,
    GroupSpec,
    ModelSpec,
    RoutingSpec,
)

if TYPE_CHECKING:
    from llamaswap.config.peers import PeerConfig, PeerRoute
    from llamaswap.config.profiles import ProfileConfig
    from llamaswap.config.selectors import SelectorConfig

DEFAULT_START_PORT = 5800
DEFAULT_CHECK_ENDPOINT = "/health"
DEFAULT_PROXY = "http://localhost:${PORT}"
DEFAULT_SCHEDULER = "serial"


class ConfigError(ValueError):
    """A config that cannot be used; the message starts with the offending key path.

    Validation collects every independent problem before giving up, so one run of
    ``check-config`` lists them all: ``errors`` holds one line per problem (``str()`` joins them
    with newlines) and ``warnings`` what the loader had to say about the rest of the file.
    """

    def __init__(
        self, message: str, errors: tuple[str, ...] = (), warnings: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.errors: tuple[str, ...] = errors or (message,)
        self.warnings: tuple[str, ...] = warnings

    @classmethod
    def collected(cls, errors: list[str], warnings: list[str]) -> ConfigError:
        unique = tuple(dict.fromkeys(errors))
        return cls("\n".join(unique), unique, tuple(warnings))


@dataclass(frozen=True)
class ModelConfig:
    """One ``models.<id>`` entry with every macro expanded and every default applied."""

    id: str
    cmd: tuple[str, ...] = ()
    """argv (POSIX shlex split); empty only for configs parsed with ``require_cmd=False``."""
    cmd_stop: str = ""
    """Stop command; ``${PID}`` is left in for the host to substitute. Empty = SIGTERM the group."""
    proxy: str = ""
    aliases: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    check_endpoint: str = DEFAULT_CHECK_ENDPOINT
    """Path polled for HTTP 200; ``"none"`` skips health checking."""
    ttl: float = 0.0
    """Effective idle seconds before unload (global TTL applied); 0 = never."""
    unload_timeout: float = DEFAULT_UNLOAD_TIMEOUT
    unlisted: bool = False
    use_model_name: str = ""
    name: str = ""
    description: str = ""
    concurrency_limit: int = 10
    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    send_loading_state: bool = False
    port: int | None = None
    """The ``${PORT}`` allocated to this model, or None when its cmd does not use ``${PORT}``."""
    timeouts: Timeouts = field(default_factory=Timeouts)

    @property
    def health_check_url(self) -> str | None:
        """Full URL polled until ready, or None when ``checkEndpoint: none`` (or no proxy)."""
        if self.check_endpoint == "none" or not self.proxy:
            return None
        endpoint = self.check_endpoint
        if not endpoint.startswith("/"):
            endpoint = "/" + endpoint
        return self.proxy.rstrip("/") + endpoint


@dataclass(frozen=True)
class Config:
    """A whole validated llamaswap config (llama-swap YAML dialect)."""

    models: Mapping[str, ModelConfig]
    groups: tuple[GroupSpec, ...] = ()
    health_check_timeout: float = DEFAULT_HEALTH_CHECK_TIMEOUT
    log_level: str = "info"
    start_port: int = DEFAULT_START_PORT
    global_ttl: float = 0.0
    unload_timeout: float = DEFAULT_UNLOAD_TIMEOUT
    api_keys: tuple[str, ...] = ()
    preload: tuple[str, ...] = ()
    """Real model ids to load at startup, in order (aliases resolved, unknown names dropped)."""
    include_aliases_in_list: bool = False
    send_loading_state: bool = False
    scheduler: str = DEFAULT_SCHEDULER
    scheduler_settings: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """One line per ignored (unsupported or unknown) key or dropped value, naming its key path."""
    record_path: str = ""
    """``record.path`` (llamaswap extension): event log for ``serve``; empty = not recording."""
    record_max_bytes: int = 256 * 1024 * 1024
    aliases: Mapping[str, str] = field(default_factory=dict)
    """alias -> real model id."""
    sources: tuple[str, ...] = ()
    """Files this config was loaded from, in merge order (empty for ``parse_config``)."""
    peers: Mapping[str, PeerConfig] = field(default_factory=dict)
    peer_routes: Mapping[str, PeerRoute] = field(default_factory=dict)
    """Public name -> peer route (FQNs and unique bare names; see ``config.peers``)."""
    selectors: Mapping[str, SelectorConfig] = field(default_factory=dict)
    profiles: Mapping[str, ProfileConfig] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    security: Security = field(default_factory=Security)

    def resolve(self, name: str) -> str | None:
        """Real model id for a model id or alias; None when nothing matches."""
        if name in self.models:
            return name
        return self.aliases.get(name)

    def peer_route(self, name: str) -> PeerRoute | None:
        """The peer route for a name no local model or alias claims (local wins, as llama-swap)."""
        if self.resolve(name) is not None:
            return None
        return self.peer_routes.get(name)

    def routing_spec(self) -> RoutingSpec:
        """The subset of this config the sans-IO core runs on."""
        return RoutingSpec(
            models={
                mid: ModelSpec(
                    id=mid,
                    concurrency_limit=m.concurrency_limit,
                    ttl=m.ttl,
                    unload_timeout=m.unload_timeout,
                )
                for mid, m in self.models.items()
            },
            groups=self.groups,
            scheduler=self.scheduler,
            scheduler_settings=self.scheduler_settings,
            health_check_timeout=self.health_check_timeout,
        )
