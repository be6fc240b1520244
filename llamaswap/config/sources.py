"""Reading config sources: ``${env.NAME}`` substitution, strict YAML, and multi-file merge.

Mirrors llama-swap's ``LoadConfigSources`` (reference §1.1): the ``--config`` file first, then every
top-level ``*.yml``/``*.yaml`` of ``--config-dir`` sorted by name, merged into one tree.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from llamaswap.config.model import ConfigError

ENV_MACRO_RE = re.compile(r"\$\{env\.([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_NODES = 200_000
"""Upper bound on values in one config tree: stops YAML alias bombs from exhausting memory."""

IDENTITY_MAPS: tuple[tuple[str, ...], ...] = (
    ("models",),
    ("groups",),
    ("profiles",),
    ("selectors",),
    ("peers",),
    ("matrix",),
    ("routing", "router", "settings", "groups"),
    ("routing", "router", "settings", "matrix"),
)
"""Maps whose children are whole definitions: the same child in two files is an error, not a merge."""


def key_path(parts: tuple[str, ...] | list[str]) -> str:
    return ".".join(parts) if parts else "<top level>"


# ---------------------------------------------------------------------------------------------
# YAML


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader where a key given twice in one mapping is an error, not last-one-wins (the
    config loader and scenario files both use it: a repeated key is almost always a mistake)."""


class _StrictLoader(UniqueKeyLoader):
    """SafeLoader that reads scalars the way llama-swap's Go yaml.v3 does (YAML 1.2 core schema).

    PyYAML implements YAML 1.1, where ``yes``/``no``/``on``/``off`` are booleans, ``1:30`` is the
    integer 90 and ``2024-05-01`` is a date; yaml.v3 reads all of those as strings (so an alias
    ``on`` or a metadata value ``yes`` keeps its text). Duplicate keys are errors, as in yaml.v3.
    """


_YAML11_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("bool", "int", "float", "timestamp")}
_StrictLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag not in _YAML11_TAGS]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0o[0-7_]+|[-+]?0[0-7_]+|0x[0-9a-fA-F_]+|0b[01_]+)$"),
    list("-+0123456789"),
)
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if isinstance(key_node, yaml.ScalarNode):
            ident = (key_node.tag, key_node.value)
            if ident in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first defined on line {seen[ident] + 1})",
                    key_node.start_mark,
                )
            seen[ident] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: what is wrong, and where (PyYAML's own text spans several lines
    and calls a string input ``"<unicode string>"`` instead of naming the file)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    if problem is None:
        return " ".join(str(exc).replace(' in "<unicode string>"', "").split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + problem + (f" ({context})" if context else "")


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document into plain Python values; any YAML problem becomes a ConfigError."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: invalid YAML: nesting too deep") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # e.g. an integer literal longer than Python's int/str conversion limit
        raise ConfigError(f"{source}: invalid YAML value: {exc}") from None
    return normalize(data, source)


def _scalar_key(key: Any, where: str) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, int | float):
        return format_scalar(key)
    if key is None:
        return "null"
    raise ConfigError(f"{where}: mapping keys must be scalars, got {type_name(key)}")


def normalize(data: Any, source: str = "<config>") -> Any:
    """Deep-copy into dict/list/scalars: string keys, no shared or cyclic nodes, bounded size.

    YAML anchors share objects (and can even form cycles); copying breaks the sharing so later
    substitution never mutates two places, and the node budget stops alias bombs.
    """
    budget = [MAX_NODES]

    def walk(value: Any, path: tuple[str, ...], stack: set[int]) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"{source}: config too large (more than {MAX_NODES} values)")
        if isinstance(value, Mapping | list | tuple | set | frozenset):
            if id(value) in stack:
                raise ConfigError(f"{key_path(path)}: recursive YAML alias")
            if len(path) > 64:
                raise ConfigError(f"{key_path(path)}: nesting deeper than 64 levels")
            stack = stack | {id(value)}
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for k, v in value.items():
                name = _scalar_key(k, key_path(path))
                if name in out:
                    raise ConfigError(f"{key_path((*path, name))}: duplicate key")
                out[name] = walk(v, (*path, name), stack)
            return out
        if isinstance(value, list | tuple):
            return [walk(v, (*path, f"[{i}]"), stack) for i, v in enumerate(value)]
        if isinstance(value, set | frozenset):
            raise ConfigError(f"{key_path(path)}: YAML sets are not supported")
        if isinstance(value, datetime.date):
            return value.isoformat()
        if value is None or isinstance(value, str | bool | int | float):
            return value
        raise ConfigError(f"{key_path(path)}: unsupported YAML value of type {type_name(value)}")

    return walk(data, (), set())


def type_name(value: Any) -> str:
    """A YAML-flavoured type name for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    return type(value).__name__


def format_scalar(value: Any) -> str:
    """How a scalar reads when interpolated into a string (Go ``%v`` style: ``true``, ``0.7``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if value is None:
        return ""
    return str(value)


# ---------------------------------------------------------------------------------------------
# ${env.NAME}


def _env_value(name: str, env: Mapping[str, str] | None, source: str) -> str:
    value = (env if env is not None else os.environ).get(name)
    if value is None:
        raise ConfigError(
            f"{source}: environment variable {name!r} is not set (used as ${{env.{name}}})"
        )
    if any(ch in value for ch in "\n\r\0"):
        raise ConfigError(
            f"{source}: environment variable {name!r} contains a newline, carriage return or NUL; "
            "it cannot be substituted safely into YAML"
        )
    return value


def _strings_in(value: Any) -> list[str]:
    """Every string in a parsed tree; each shared (anchored) container is visited once."""
    out: list[str] = []
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping | list | tuple):
            if id(item) in seen:
                continue
            seen.add(id(item))
            if isinstance(item, Mapping):
                stack.extend(item.keys())
                stack.extend(item.values())
            else:
                stack.extend(item)
    return out


def substitute_env_text(text: str, source: str, env: Mapping[str, str] | None) -> str:
    """Replace ``${env.NAME}`` in raw YAML text, except where it appears only in YAML comments.

    Like llama-swap, the text is first parsed (which drops comments) to learn which names are really
    used; those are then substituted at string level so ``ttl: ${env.TTL}`` still decodes as a number.
    ``\\`` and ``"`` are escaped as llama-swap does (safe inside double-quoted scalars).
    """
    if "${env." not in text:
        return text
    try:
        parsed = yaml.safe_load(text)
        used_in = "\n".join(_strings_in(parsed))
    except Exception:  # best effort: any YAML problem is reported by the real parse afterwards
        used_in = text  # so the user sees the env error rather than a confusing YAML error
    names = list(dict.fromkeys(ENV_MACRO_RE.findall(used_in)))
    _check_env(names, source, env)  # every missing variable in one run, not one per run
    for name in names:
        value = _env_value(name, env, source)
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        text = text.replace(f"${{env.{name}}}", escaped)
    return text


def substitute_env_tree(data: Any, source: str, env: Mapping[str, str] | None) -> Any:
    """``${env.NAME}`` for an already-parsed tree (``parse_config``): string values only."""
    _check_env(ENV_MACRO_RE.findall("\n".join(_strings_in(data))), source, env)
    return _substitute_tree(data, source, env)


def _check_env(names: list[str], source: str, env: Mapping[str, str] | None) -> None:
    """Every variable used must be usable; all the bad ones are reported together."""
    errors = []
    for name in dict.fromkeys(names):
        try:
            _env_value(name, env, source)
        except ConfigError as exc:
            errors.append(str(exc))
    if errors:
        raise ConfigError.collected(errors, [])


def _substitute_tree(data: Any, source: str, env: Mapping[str, str] | None) -> Any:
    if isinstance(data, Mapping):
        return {k: _substitute_tree(v, source, env) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute_tree(v, source, env) for v in data]
    if isinstance(data, str) and "${env." in data:
        return ENV_MACRO_RE.sub(lambda m: _env_value(m.group(1), env, source), data)
    return data


# ---------------------------------------------------------------------------------------------
# Files and merge


def source_files(
    path: str | os.PathLike[str] | None, config_dir: str | os.PathLike[str] | None
) -> list[Path]:
    """The files to merge, in order: the config file, then the dir's YAML files sorted by name."""
    if path is None and config_dir is None:
        raise ConfigError("config: give a config file, a config directory, or both")
    files: list[Path] = []
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found (or not a regular file)")
        files.append(p)
    if config_dir is not None:
        d = Path(config_dir)
        if not d.is_dir():
            raise ConfigError(f"{d}: config directory not found")
        for child in sorted(d.iterdir(), key=lambda c: c.name):
            if child.suffix in (".yml", ".yaml") and child.is_file():
                if files and child.resolve() == files[0].resolve():
                    raise ConfigError(
                        f"{child}: the same file is given as the config file and inside the config directory"
                    )
                files.append(child)
    return files


def read_source(path: Path, env: Mapping[str, str] | None) -> dict[str, Any] | None:
    """One file -> mapping (None when the file is empty or only comments)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    text = substitute_env_text(text, str(path), env)
    data = parse_yaml(text, str(path))
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type_name(data)}")
    return data


def merge_sources(sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Merge parsed files (llama-swap rules): maps recursively, lists concatenate, scalars must agree."""
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for name, data in sources:
        _merge_into(merged, data, (), name, origin)
    return merged


def _owner(origin: dict[tuple[str, ...], str], path: tuple[str, ...]) -> str:
    """The file that set ``path`` (a subtree copied whole is owned by its root's file)."""
    for i in range(len(path), 0, -1):
        if path[:i] in origin:
            return origin[path[:i]]
    return "?"


def _merge_into(
    dst: dict[str, Any],
    src: Mapping[str, Any],
    path: tuple[str, ...],
    name: str,
    origin: dict[tuple[str, ...], str],
) -> None:
    identity = path in IDENTITY_MAPS
    for key, value in src.items():
        sub = (*path, key)
        if key not in dst:
            dst[key] = value
            origin[sub] = name
            continue
        if identity:
            raise ConfigError(
                f"{key_path(sub)}: duplicate {path[-1]} {key!r} found in {_owner(origin, sub)} and {name}"
            )
        old = dst[key]
        if old is None:
            dst[key] = value
            origin[sub] = name
        elif value is None:
            continue
        elif isinstance(old, dict) and isinstance(value, dict):
            _merge_into(old, value, sub, name, origin)
        elif isinstance(old, list) and isinstance(value, list):
            dst[key] = old + value
        elif isinstance(old, dict | list) or isinstance(value, dict | list):
            raise ConfigError(
                f"conflict at {key_path(sub)}: {type_name(old)} in {_owner(origin, sub)} "
                f"but {type_name(value)} in {name}"
            )
        elif old != value or type(old) is not type(value):
            raise ConfigError(
                f"conflict at {key_path(sub)}: {old!r} in {_owner(origin, sub)} but {value!r} in {name}"
            )
