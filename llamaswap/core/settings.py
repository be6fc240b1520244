"""Parsed scheduler settings: one parser per policy, run once, trusted afterwards.

Each policy's settings class parses its ``routing.scheduler.settings.<name>`` mapping. The config
loader calls the parser at load time (through ``core.policies.parse_settings``) and stores the parsed
object in the :class:`RoutingSpec`; a spec built in code holds the plain mapping and is parsed once
when its scheduler is built. Either way the scheduler receives a parsed object and re-checks nothing.

A parsed object is also a read-only ``Mapping``: the plain (alias-resolved) form it was parsed from,
so logs, reports and ``check-config`` keep showing what the user wrote.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from llamaswap.core.spec import RoutingSpec

S = TypeVar("S", bound="PolicySettings")


@dataclass(frozen=True, eq=False)
class PolicySettings(Mapping[str, Any]):
    """Base of every policy's parsed settings (equality and the mapping view are the plain form)."""

    NAME: ClassVar[str] = ""
    MODEL_KEYS: ClassVar[tuple[str, ...]] = ()
    """Settings that map model ids to values: config resolves aliases in their keys first."""
    SCALAR_KEYS: ClassVar[frozenset[str]] = frozenset()
    """Of ``MODEL_KEYS``, those that may also be one value for every model."""
    UNKNOWN_MODELS_WARN: ClassVar[bool] = False
    """An unknown model id in a ``MODEL_KEYS`` map is dropped with a warning (else an error)."""
    KNOWN_KEYS: ClassVar[frozenset[str] | None] = None
    """Keys config accepts without a warning; None when ``parse`` itself refuses unknown keys."""

    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """The plain mapping these settings were parsed from."""

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def __len__(self) -> int:
        return len(self.raw)

    @classmethod
    def parse(cls: type[S], raw: Mapping[str, Any], models: Sequence[str]) -> S:
        """Check ``raw``; a ``ValueError`` names ``routing.scheduler.settings.<name>.<key>``.

        This default is for a policy that reads no settings: they are kept as written.
        """
        return cls(raw=dict(raw))

    @classmethod
    def where(cls) -> str:
        return f"routing.scheduler.settings.{cls.NAME}"

    @classmethod
    def of(cls: type[S], spec: RoutingSpec) -> S:
        """The spec's settings for this policy: parsed already (config), or parsed now (code)."""
        value = spec.settings_for(cls.NAME)
        return value if isinstance(value, cls) else cls.parse(value, list(spec.models))


def per_model(
    raw: Mapping[str, Any], key: str, models: Sequence[str], where: str
) -> Mapping[str, Any]:
    """``raw[key]`` as a map of configured model ids (absent: empty)."""
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}.{key}: must map model ids to values, got {value!r}")
    for model in value:
        if str(model) not in models:
            raise ValueError(f"{where}.{key}.{model}: no such model is configured")
    return value


def integer(value: Any, where: str) -> int:
    """A whole number (an integral float such as 2.0 included, as YAML may give it)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: must be an integer, got {value!r}")
    return value


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: must be true or false, got {value!r}")
    return value
