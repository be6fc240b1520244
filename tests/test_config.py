"""Config validation rules (reference §1.2-1.6, 1.12): top level, models, macros, groups, scheduler."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
import yaml

from llamaswap.config import Config, ConfigError, parse_config
from llamaswap.core.policies import scheduler_names
from llamaswap.core.spec import GroupSpec, ModelSpec


def cfg(text: str, **kwargs: Any) -> Config:
    return parse_config(yaml.safe_load(text) or {}, **kwargs)


def err(text: str, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        cfg(text, **kwargs)
    return str(info.value)


ONE = """
models:
  m:
    cmd: server --port ${PORT}
"""


# ---------------------------------------------------------------------------------------------
# top level


def test_defaults() -> None:
    c = cfg(ONE)
    assert c.health_check_timeout == 120
    assert c.log_level == "info"
    assert c.start_port == 5800
    assert c.global_ttl == 0
    assert c.unload_timeout == 10
    assert c.api_keys == () and c.preload == ()
    assert c.include_aliases_in_list is False and c.send_loading_state is False
    assert c.scheduler == "serial"  # our default, not llama-swap's fifo
    assert c.groups == () and c.warnings == ()
    m = c.models["m"]
    assert m.cmd == ("server", "--port", "5800")
    assert m.proxy == "http://localhost:5800" and m.port == 5800
    assert m.check_endpoint == "/health" and m.health_check_url == "http://localhost:5800/health"
    assert m.ttl == 0 and m.unload_timeout == 10 and m.concurrency_limit == 10
    assert m.cmd_stop == "" and m.env == {} and m.aliases == ()


def test_health_check_timeout_is_raised_to_15() -> None:
    assert cfg("healthCheckTimeout: 3\n" + ONE).health_check_timeout == 15
    assert cfg("healthCheckTimeout: 40\n" + ONE).health_check_timeout == 40
    msg = err("healthCheckTimeout: soon\n" + ONE)
    assert msg.startswith("healthCheckTimeout: must be a number, got string")


def test_log_level() -> None:
    assert cfg("logLevel: debug\n" + ONE).log_level == "debug"
    c = cfg("logLevel: chatty\n" + ONE)
    assert c.log_level == "info"
    assert [w for w in c.warnings if w.startswith("logLevel:")] == [
        "logLevel: unknown level 'chatty' (valid: debug, info, warn, error); using info"
    ]


@pytest.mark.parametrize(
    ("text", "prefix"),
    [
        ("startPort: 0", "startPort: must be between 1 and 65535, got 0"),
        ("startPort: high", "startPort: must be an integer, got string"),
        ("startPort: 1.5", "startPort: must be an integer, got 1.5"),
        ("globalTTL: -1", "globalTTL: must be >= 0, got -1"),
        ("globalTTL: [1]", "globalTTL: must be a number, got list"),
        ("unloadTimeout: -2", "unloadTimeout: must be >= 0, got -2"),
        ("includeAliasesInList: 'sure'", "includeAliasesInList: must be true or false"),
        ("sendLoadingState: 1", "sendLoadingState: must be true or false"),
        ("apiKeys: ['']", "apiKeys[0]: empty api key"),
        ("apiKeys: ['ok', 'has space']", "apiKeys[1]: api key cannot contain spaces"),
        ("apiKeys: sk-one", "apiKeys: must be a list, got string"),
        ("apiKeys: [{a: 1}]", "apiKeys[0]: must be a string, got mapping"),
        ("models: [a, b]", "models: must be a mapping, got list"),
        ("models: {m: server}", "models.m: must be a mapping, got string"),
        ("hooks: [1]", "hooks: must be a mapping, got list"),
        ("routing: 5", "routing: must be a mapping, got integer"),
    ],
)
def test_top_level_errors_name_the_key(text: str, prefix: str) -> None:
    extra = "" if text.startswith("models") else ONE
    assert err(text + "\n" + extra).startswith(prefix)


def test_non_mapping_top_level() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: the top level must be a mapping, got list"):
        parse_config(["a"])  # type: ignore[arg-type]


def test_start_port_and_unload_timeout_values() -> None:
    c = cfg("startPort: 9000\nunloadTimeout: 0\nglobalTTL: 30\n" + ONE)
    assert c.start_port == 9000 and c.models["m"].port == 9000
    assert c.unload_timeout == 10
    assert c.global_ttl == 30 and c.models["m"].ttl == 30


def test_api_keys() -> None:
    assert cfg("apiKeys: [sk-a, sk-b]\n" + ONE).api_keys == ("sk-a", "sk-b")


def test_preload_trimmed_alias_resolved_unknown_dropped_with_warning() -> None:
    c = cfg(
        """
hooks:
  on_startup:
    preload: ["  big ", small-alias, ghost, ""]
models:
  big: {cmd: "a ${PORT}"}
  small: {cmd: "b ${PORT}", aliases: [small-alias]}
"""
    )
    assert c.preload == ("big", "small")
    assert c.warnings == ("hooks.on_startup.preload[2]: unknown model 'ghost'; not preloaded",)


def test_resolve() -> None:
    c = cfg("models:\n  m: {cmd: 'x ${PORT}', aliases: [mm]}\n")
    assert c.resolve("m") == "m" and c.resolve("mm") == "m" and c.resolve("nope") is None


# ---------------------------------------------------------------------------------------------
# models


def test_cmd_required_unless_simulating() -> None:
    assert err("models:\n  m: {proxy: 'http://h:1'}\n").startswith("models.m.cmd: required")
    assert err("models:\n  m:\n").startswith("models.m: must be a mapping")
    c = cfg("models:\n  m: {ttl: 5}\n  n:\n", require_cmd=False)
    assert c.models["m"].cmd == () and c.models["m"].proxy == "" and c.models["m"].ttl == 5
    assert c.models["n"].health_check_url is None
    assert set(c.routing_spec().models) == {"m", "n"}


def test_cmd_multiline_comments_continuations_shlex() -> None:
    c = cfg(
        r"""
models:
  m:
    cmd: |
      # a comment line
      /usr/bin/server \
        --model "my model.gguf"
        # indented comment
      --flag 'a b' --port ${PORT}
"""
    )
    assert c.models["m"].cmd == (
        "/usr/bin/server",
        "--model",
        "my model.gguf",
        "--flag",
        "a b",
        "--port",
        "5800",
    )


@pytest.mark.parametrize(
    ("cmd", "prefix"),
    [
        ("'# only a comment'", "models.m.cmd: empty command"),
        ("''", "models.m.cmd: empty command"),
        ('"server \'unclosed --port ${PORT}"', "models.m.cmd: cannot split command"),
        ("[server, --x]", "models.m.cmd: must be a string, got list"),
    ],
)
def test_bad_cmd(cmd: str, prefix: str) -> None:
    assert err(f"models:\n  m:\n    proxy: http://h:1\n    cmd: {cmd}\n").startswith(prefix)


def test_cmd_stop_keeps_pid_but_cmd_may_not_use_it() -> None:
    c = cfg(
        "models:\n  m:\n    cmd: srv ${PORT}\n    cmdStop: |\n      # stop it\n      kill -TERM ${PID} # port ${PORT}\n"
    )
    assert c.models["m"].cmd_stop == "kill -TERM ${PID} # port 5800"
    msg = err("models:\n  m:\n    cmd: srv ${PORT} ${PID}\n")
    assert msg == "models.m.cmd: unknown macro '${PID}' found in models.m.cmd"


def test_proxy_rules() -> None:
    fixed = cfg("models:\n  m: {cmd: srv --port 9000, proxy: 'http://127.0.0.1:9000'}\n")
    assert fixed.models["m"].port is None and fixed.models["m"].proxy == "http://127.0.0.1:9000"
    msg = err("models:\n  m: {cmd: srv --port 9000, proxy: 'http://127.0.0.1:${PORT}'}\n")
    assert msg.startswith("models.m.proxy: uses ${PORT} but cmd does not")
    assert err("models:\n  m: {cmd: srv, proxy: 'ftp://x'}\n").startswith(
        "models.m.proxy: must be an http(s) URL with a host, got 'ftp://x'"
    )
    assert err("models:\n  m: {cmd: srv, proxy: 'http://h:99999'}\n").startswith("models.m.proxy:")


def test_fixed_port_cmd_without_proxy_is_skipped_loudly() -> None:
    c = cfg("models:\n  m: {cmd: srv --port 9000}\n  n: {cmd: 'srv ${PORT}'}\n")
    assert set(c.models) == {"n"}
    assert len(c.warnings) == 1
    assert c.warnings[0].startswith("models.m.proxy: not set and cmd does not use ${PORT}")


def test_port_allocation_sorted_and_only_for_models_using_it() -> None:
    c = cfg(
        """
startPort: 7000
models:
  zeta: {cmd: "z --port ${PORT}"}
  alpha: {cmd: "a --port ${PORT}"}
  fixed: {cmd: "f --port 1234", proxy: "http://localhost:1234"}
  beta: {cmd: "b --port ${PORT}", metadata: {port: "${PORT}", text: "on ${PORT}"}}
"""
    )
    assert {k: m.port for k, m in c.models.items()} == {
        "zeta": 7002,
        "alpha": 7000,
        "fixed": None,
        "beta": 7001,
    }
    assert c.models["beta"].metadata == {"port": 7001, "text": "on 7001"}
    assert list(c.models) == ["zeta", "alpha", "fixed", "beta"]  # declaration order kept


def test_port_range_exhausted() -> None:
    msg = err("startPort: 65535\nmodels:\n  a: {cmd: 'a ${PORT}'}\n  b: {cmd: 'b ${PORT}'}\n")
    assert msg.startswith("models.b.cmd: no port left for ${PORT}")


def test_aliases() -> None:
    c = cfg(
        "models:\n  a: {cmd: 'a ${PORT}', aliases: [x, y]}\n  b: {cmd: 'b ${PORT}', aliases: [z]}\n"
    )
    assert c.aliases == {"x": "a", "y": "a", "z": "b"}
    msg = err(
        "models:\n  a: {cmd: 'a ${PORT}', aliases: [x]}\n  b: {cmd: 'b ${PORT}', aliases: [x]}\n"
    )
    assert msg == "models.b.aliases[0]: duplicate alias 'x', already used by model 'a'"
    msg = err("models:\n  a: {cmd: 'a ${PORT}', aliases: [b]}\n  b: {cmd: 'b ${PORT}'}\n")
    assert msg == "models.a.aliases[0]: alias 'b' is also a model id"
    assert err("models:\n  a: {cmd: 'a ${PORT}', aliases: x}\n").startswith(
        "models.a.aliases: must be a list, got string"
    )
    assert err("models:\n  a: {cmd: 'a ${PORT}', aliases: [' ']}\n").startswith(
        "models.a.aliases[0]: alias must not be empty"
    )


def test_env() -> None:
    c = cfg(
        "models:\n  a: {cmd: 'a ${PORT}', env: ['CUDA=0,1', 'EMPTY=', 'EQ=a=b', 'P=${PORT}']}\n"
    )
    assert c.models["a"].env == {"CUDA": "0,1", "EMPTY": "", "EQ": "a=b", "P": "5800"}
    assert err("models:\n  a: {cmd: 'a ${PORT}', env: [NOVALUE]}\n") == (
        "models.a.env[0]: must be NAME=value, got 'NOVALUE'"
    )
    assert err("models:\n  a: {cmd: 'a ${PORT}', env: {A: b}}\n").startswith(
        "models.a.env: must be a list, got mapping"
    )
    assert err("models:\n  a: {cmd: 'a ${PORT}', env: ['=x']}\n").startswith("models.a.env[0]:")


def test_check_endpoint() -> None:
    c = cfg(
        "models:\n  a: {cmd: 'a ${PORT}', checkEndpoint: none}\n  b: {cmd: 'b ${PORT}', checkEndpoint: /ready}\n"
    )
    assert c.models["a"].check_endpoint == "none" and c.models["a"].health_check_url is None
    assert c.models["b"].health_check_url == "http://localhost:5801/ready"


def test_ttl() -> None:
    base = "globalTTL: 300\nmodels:\n  llama:\n    cmd: 'a ${PORT}'\n"
    assert cfg(base).models["llama"].ttl == 300
    assert cfg(base + "    ttl: -1\n").models["llama"].ttl == 300
    assert cfg(base + "    ttl: 0\n").models["llama"].ttl == 0
    assert cfg(base + "    ttl: 45\n").models["llama"].ttl == 45
    assert err(base + "    ttl: -5\n") == "models.llama.ttl: must be >= -1, got -5"
    assert err(base + "    ttl: -0.5\n").startswith(
        "models.llama.ttl: must be -1 (use globalTTL) or >= 0"
    )
    assert err(base + "    ttl: forever\n").startswith(
        "models.llama.ttl: must be a number, got string"
    )
    assert err(base + "    ttl: true\n").startswith(
        "models.llama.ttl: must be a number, got boolean"
    )


def test_unload_timeout_and_concurrency_limit() -> None:
    base = "unloadTimeout: 25\nmodels:\n  m:\n    cmd: 'a ${PORT}'\n"
    assert cfg(base).models["m"].unload_timeout == 25
    assert cfg(base + "    unloadTimeout: 0\n").models["m"].unload_timeout == 25
    assert cfg(base + "    unloadTimeout: 3\n").models["m"].unload_timeout == 3
    assert err(base + "    unloadTimeout: -1\n").startswith("models.m.unloadTimeout: must be >= 0")
    assert cfg(base + "    concurrencyLimit: 0\n").models["m"].concurrency_limit == 10
    assert cfg(base + "    concurrencyLimit: 2\n").models["m"].concurrency_limit == 2
    assert err(base + "    concurrencyLimit: -1\n").startswith(
        "models.m.concurrencyLimit: must be >= 0"
    )
    assert err(base + "    concurrencyLimit: 1.5\n").startswith(
        "models.m.concurrencyLimit: must be an integer"
    )
    comfy = cfg("models:\n  comfyui_auto: {cmd: 'c ${PORT}', concurrencyLimit: 4}\n")
    assert comfy.models["comfyui_auto"].concurrency_limit == 50


def test_simple_model_fields() -> None:
    c = cfg(
        """
sendLoadingState: true
models:
  m:
    cmd: 'a ${PORT}'
    unlisted: true
    useModelName: org/model
    name: "Model ${MODEL_ID}"
    description: 42
    sendLoadingState: false
  n:
    cmd: 'b ${PORT}'
"""
    )
    m, n = c.models["m"], c.models["n"]
    assert m.unlisted and m.use_model_name == "org/model" and m.name == "Model m"
    assert m.description == "42"
    assert m.send_loading_state is False and n.send_loading_state is True
    assert err("models:\n  m: {cmd: 'a ${PORT}', unlisted: 'nah'}\n").startswith(
        "models.m.unlisted: must be true or false"
    )
    assert err("models:\n  m: {cmd: 'a ${PORT}', name: [x]}\n").startswith(
        "models.m.name: must be a string, got list"
    )


def test_filters() -> None:
    c = cfg(
        """
models:
  m:
    cmd: 'a ${PORT}'
    filters:
      stripParams: "top_k, temperature,model, ,top_k"
      setParams: {temperature: 0.2, model: other, nested: {a: [1, 2]}}
  legacy:
    cmd: 'b ${PORT}'
    filters: {strip_params: "seed"}
"""
    )
    m = c.models["m"]
    assert m.strip_params == ("temperature", "top_k")
    assert m.set_params == {"temperature": 0.2, "nested": {"a": [1, 2]}}
    assert c.models["legacy"].strip_params == ("seed",)
    assert sorted(c.warnings) == [
        "models.m.filters.setParams.model: 'model' is protected and cannot be set; ignored",
        "models.m.filters.stripParams: 'model' is protected and cannot be stripped; ignored",
    ]
    assert err("models:\n  m: {cmd: 'a ${PORT}', filters: {setParams: [a]}}\n").startswith(
        "models.m.filters.setParams: must be a mapping, got list"
    )
    assert err("models:\n  m: {cmd: 'a ${PORT}', filters: [a]}\n").startswith(
        "models.m.filters: must be a mapping, got list"
    )


# ---------------------------------------------------------------------------------------------
# macros


def test_macros_global_local_typed_metadata() -> None:
    c = cfg(
        """
macros:
  ctx: 4096
  args: "--ctx ${ctx}"
  flag: true
  temp: 0.5
models:
  m:
    macros:
      ctx: 8192
      only: "${MODEL_ID}-x"
    cmd: "srv ${args} --port ${PORT} --id ${only} --f ${flag}"
    metadata:
      ctx: "${ctx}"
      temp: "${temp}"
      flag: "${flag}"
      text: "${MODEL_ID} at ${temp}"
      list: ["${ctx}", "k=${ctx}"]
      nested: {deep: "${only}"}
  n:
    cmd: "srv ${args} --port ${PORT}"
"""
    )
    m = c.models["m"]
    assert m.cmd == ("srv", "--ctx", "8192", "--port", "5800", "--id", "m-x", "--f", "true")
    assert m.metadata == {
        "ctx": 8192,
        "temp": 0.5,
        "flag": True,
        "text": "m at 0.5",
        "list": [8192, "k=8192"],
        "nested": {"deep": "m-x"},
    }
    assert c.models["n"].cmd == ("srv", "--ctx", "4096", "--port", "5801")


def test_typed_macro_in_numeric_field() -> None:
    c = cfg("macros: {t: 90}\nmodels:\n  m: {cmd: 'a ${PORT}', ttl: '${t}'}\n")
    assert c.models["m"].ttl == 90


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("macros: {PORT: 1}", "macros.PORT: PORT is a reserved macro name"),
        ("macros: {MODEL_ID: x}", "macros.MODEL_ID: MODEL_ID is a reserved macro name"),
        ("macros: {'bad name': x}", "macros.bad name: invalid macro name"),
        ("macros: {" + "a" * 64 + ": x}", "macros." + "a" * 64 + ": invalid macro name"),
        (
            "macros: {a: [1]}",
            "macros.a: macro values must be a string, number or boolean, got list",
        ),
        ("macros: {a: ~}", "macros.a: macro values must be a string, number or boolean, got null"),
        ("macros: {a: 'x ${a}'}", "macros.a: macro refers to itself"),
        ("macros: {a: '${b}', b: x}", "macros.a: uses '${b}', which is declared after it"),
        ("macros: [a]", "macros: must be a mapping of macro name to value, got list"),
    ],
)
def test_macro_errors(text: str, expected: str) -> None:
    assert err(text + "\n" + ONE).startswith(expected)


def test_macro_name_63_chars_is_fine() -> None:
    name = "a" * 63
    c = cfg(f"macros: {{{name}: v}}\nmodels:\n  m: {{cmd: 'x ${{{name}}} ${{PORT}}'}}\n")
    assert c.models["m"].cmd == ("x", "v", "5800")


def test_unknown_macro_errors_name_the_field() -> None:
    assert err("models:\n  m: {cmd: 'srv ${x} ${PORT}'}\n") == (
        "models.m.cmd: unknown macro '${x}' found in models.m.cmd"
    )
    assert err("models:\n  m: {cmd: 'srv ${PORT}', metadata: {a: [1, '${nope}']}}\n") == (
        "models.m.metadata.a[1]: unknown macro '${nope}' found in models.m.metadata.a[1]"
    )
    assert err("models:\n  m: {cmd: 'srv ${PORT}', filters: {stripParams: '${q}'}}\n").startswith(
        "models.m.filters.stripParams: unknown macro '${q}'"
    )
    assert err("models:\n  m: {cmd: 'srv ${PORT}', cmdStop: 'stop ${PIDX}'}\n").startswith(
        "models.m.cmdStop: unknown macro '${PIDX}'"
    )
    msg = err("models:\n  m: {cmd: 'srv', proxy: 'http://h:1', name: 'on ${PORT}'}\n")
    assert msg.startswith("models.m.name: uses ${PORT} but the model's cmd does not")


def test_model_macro_may_use_global_and_local_override_in_place() -> None:
    c = cfg(
        "macros: {a: one, b: '${a}-two'}\nmodels:\n  m:\n    macros: {a: uno}\n    cmd: 'x ${b} ${PORT}'\n"
    )
    assert c.models["m"].cmd == ("x", "uno-two", "5800")


# ---------------------------------------------------------------------------------------------
# groups


def test_groups() -> None:
    c = cfg(
        """
models:
  a: {cmd: 'a ${PORT}'}
  b: {cmd: 'b ${PORT}'}
  c: {cmd: 'c ${PORT}'}
routing:
  router:
    use: group
    settings:
      groups:
        pair: {swap: false, members: [a, b]}
        keep: {persistent: true, exclusive: false, members: [c, ghost]}
"""
    )
    assert c.groups == (
        GroupSpec("pair", ("a", "b"), swap=False, exclusive=True, persistent=False),
        GroupSpec("keep", ("c",), swap=True, exclusive=False, persistent=True),
    )
    assert c.warnings == (
        "routing.router.settings.groups.keep.members[1]: unknown model 'ghost'; ignored",
    )
    assert c.routing_spec().groups == c.groups


def test_legacy_groups_and_mixing() -> None:
    c = cfg("groups:\n  g: {members: [m]}\n" + ONE)
    assert c.groups == (GroupSpec("g", ("m",)),)
    msg = err("groups:\n  g: {members: [m]}\nrouting: {router: {use: group}}\n" + ONE)
    assert msg.startswith(
        "groups: the legacy top-level 'groups' cannot be combined with 'routing.router'"
    )


@pytest.mark.parametrize(
    ("groups", "prefix"),
    [
        ("g: {swap: false}", "routing.router.settings.groups.g.members: required"),
        ("g: {members: m}", "routing.router.settings.groups.g.members: must be a list, got string"),
        (
            "g: {members: [m, m]}",
            "routing.router.settings.groups.g.members[1]: duplicate member 'm'",
        ),
        (
            "g: {members: [m]}\n        h: {members: [m]}",
            "routing.router.settings.groups.h.members[0]: model 'm' is already a member of group 'g'",
        ),
        (
            "g: {members: [m], swap: 'nope'}",
            "routing.router.settings.groups.g.swap: must be true or false",
        ),
        ("g: [m]", "routing.router.settings.groups.g: must be a mapping, got list"),
    ],
)
def test_group_errors(groups: str, prefix: str) -> None:
    text = ONE + "routing:\n  router:\n    settings:\n      groups:\n        " + groups + "\n"
    assert err(text).startswith(prefix)


def test_router_use() -> None:
    msg = err("routing: {router: {use: matrix}}\n" + ONE)
    assert msg.startswith("routing.router.use: 'matrix' is not supported by llamaswap yet")
    assert err("routing: {router: {use: random}}\n" + ONE).startswith(
        "routing.router.use: unknown router 'random' (valid: group)"
    )


# ---------------------------------------------------------------------------------------------
# scheduler


def test_scheduler_names_come_from_the_registry() -> None:
    for name in scheduler_names():
        assert cfg(f"routing: {{scheduler: {{use: {name}}}}}\n" + ONE).scheduler == name
    msg = err("routing: {scheduler: {use: lottery}}\n" + ONE)
    assert msg == (
        f"routing.scheduler.use: unknown scheduler 'lottery' (valid: {', '.join(scheduler_names())})"
    )


def test_fifo_priority_by_real_id() -> None:
    c = cfg(
        """
models:
  big: {cmd: 'a ${PORT}', aliases: [b]}
  small: {cmd: 'b ${PORT}'}
routing:
  scheduler:
    use: fifo
    settings:
      fifo:
        priority: {b: 10, small: 1, ghost: 3}
      serial: {anything: 1}
"""
    )
    assert c.scheduler == "fifo"
    # keyed by the alias in the file, stored by real id (llama-swap quirk 14 fixed)
    assert c.scheduler_settings["fifo"] == {"priority": {"big": 10, "small": 1}}
    assert c.scheduler_settings["serial"] == {"anything": 1}
    assert c.warnings == (
        "routing.scheduler.settings.fifo.priority.ghost: unknown model 'ghost'; ignored",
        "routing.scheduler.settings.serial: the scheduler in use is 'fifo', so these settings do "
        "nothing",
    )
    assert c.routing_spec().settings_for("fifo")["priority"] == {"big": 10, "small": 1}


@pytest.mark.parametrize(
    ("settings", "prefix"),
    [
        (
            "{fifo: {priority: {m: high}}}",
            "routing.scheduler.settings.fifo.priority.m: must be an integer",
        ),
        (
            "{fifo: {priority: [m]}}",
            "routing.scheduler.settings.fifo.priority: must be a mapping, got list",
        ),
        ("{fifo: 3}", "routing.scheduler.settings.fifo: must be a mapping, got integer"),
        ("[fifo]", "routing.scheduler.settings: must be a mapping, got list"),
        (
            "{fifo: {priority: {m: 1, mm: 2}}}",
            "routing.scheduler.settings.fifo.priority.mm: model 'm' already has priority 1",
        ),
    ],
)
def test_scheduler_setting_errors(settings: str, prefix: str) -> None:
    text = (
        "models:\n  m: {cmd: 'a ${PORT}', aliases: [mm]}\nrouting: {scheduler: {settings: "
        + settings
        + "}}\n"
    )
    assert err(text).startswith(prefix)


def test_routing_spec() -> None:
    c = cfg(
        "healthCheckTimeout: 60\nglobalTTL: 9\nmodels:\n  m: {cmd: 'a ${PORT}', concurrencyLimit: 3, unloadTimeout: 4}\n"
    )
    spec = c.routing_spec()
    assert spec.models == {"m": ModelSpec("m", concurrency_limit=3, ttl=9, unload_timeout=4)}
    assert spec.scheduler == "serial" and spec.health_check_timeout == 60


# ---------------------------------------------------------------------------------------------
# unsupported and unknown keys


UNSUPPORTED_TOP = [
    "logTimeFormat",
    "logToStdout",
    "logRequests",
    "metricsMaxInMemory",
    "captureBuffer",
    "store",
    "ui",
    "performance",
    "upstream",
    "matrix",
]


@pytest.mark.parametrize("key", UNSUPPORTED_TOP)
def test_each_unsupported_top_level_key_warns_once(key: str) -> None:
    c = cfg(f"{key}: {{x: 1}}\n" + ONE)
    assert len(c.warnings) == 1
    assert re.match(rf"^{key}: .*(not supported|deprecated).*ignored", c.warnings[0])


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("compat", "{ignoreWebsockets: true}"),
        ("capabilities", "{tools: true}"),
        ("healthCheckTimeout", "30"),
    ],
)
def test_unsupported_model_keys_warn_once(key: str, value: str) -> None:
    c = cfg(f"models:\n  m:\n    cmd: 'a ${{PORT}}'\n    {key}: {value}\n")
    assert len(c.warnings) == 1 and c.warnings[0].startswith(f"models.m.{key}: ")


def test_unknown_keys_warn_with_path() -> None:
    c = cfg(
        """
colour: blue
models:
  m:
    cmd: 'a ${PORT}'
    flavour: x
    filters: {setParamsByID: {a: {b: 1}}, other: 1}
routing:
  extra: 1
  router: {settings: {matrix: {}, odd: 1}, more: 2}
  scheduler: {settings: {edf: {}}, knob: 1}
hooks: {on_shutdown: 1, on_startup: {warm: 1}}
"""
    )
    assert sorted(c.warnings) == sorted(
        [
            "colour: unknown key; ignored",
            "models.m.flavour: unknown key; ignored",
            "models.m.filters.setParamsByID: not supported by llamaswap yet; ignored (its keys are not registered as aliases)",
            "models.m.filters.other: unknown key; ignored",
            "routing.extra: unknown key; ignored",
            "routing.router.more: unknown key; ignored",
            "routing.router.settings.matrix: matrix routing is not supported by llamaswap yet; ignored",
            "routing.router.settings.odd: unknown key; ignored",
            "routing.scheduler.knob: unknown key; ignored",
            f"routing.scheduler.settings.edf: no scheduler named 'edf' (valid: {', '.join(scheduler_names())}); ignored",
            "hooks.on_shutdown: unknown key; ignored",
            "hooks.on_startup.warm: unknown key; ignored",
        ]
    )


def test_parse_config_env_and_nulls() -> None:
    c = parse_config(
        {
            "models": {"m": {"cmd": "srv ${env.BIN_ARG} --port ${PORT}", "ttl": None}},
            "logLevel": None,
        },
        env={"BIN_ARG": "--fast"},
    )
    assert c.models["m"].cmd == ("srv", "--fast", "--port", "5800")
    with pytest.raises(ConfigError, match="environment variable 'BIN_ARG' is not set"):
        parse_config({"models": {"m": {"cmd": "srv ${env.BIN_ARG}"}}}, env={})


def test_cmd_stop_multiline_is_shell_splittable() -> None:
    c = cfg(
        "models:\n  m:\n    cmd: srv ${PORT}\n    cmdStop: |\n      # graceful\n      docker stop \\\n        --time 5 ${MODEL_ID}\n"
    )
    assert shlex.split(c.models["m"].cmd_stop) == ["docker", "stop", "--time", "5", "m"]


@pytest.mark.parametrize("where", ["metadata: {a: [.nan]}", "filters: {setParams: {t: .inf}}"])
def test_non_finite_numbers_rejected_in_json_bound_values(where: str) -> None:
    msg = err(f"models:\n  m:\n    cmd: srv ${{PORT}}\n    {where}\n")
    assert re.match(
        r"^models\.m\.(metadata\.a\[0\]|filters\.setParams\.t): must be a finite number", msg
    )


def test_legacy_strip_params_only_when_strip_params_empty() -> None:
    c = cfg(
        "models:\n  m:\n    cmd: srv ${PORT}\n    filters: {stripParams: 'a', strip_params: 'b'}\n"
    )
    assert c.models["m"].strip_params == ("a",)
    assert c.warnings == (
        "models.m.filters.strip_params: ignored because filters.stripParams is set",
    )
    c = cfg(
        "models:\n  m:\n    cmd: srv ${PORT}\n    filters: {stripParams: '', strip_params: 'b'}\n"
    )
    assert c.models["m"].strip_params == ("b",) and c.warnings == ()
    assert err(
        "models:\n  m:\n    cmd: srv ${PORT}\n    filters: {strip_params: [b]}\n"
    ).startswith("models.m.filters.strip_params: must be a string, got list")


def test_global_macros_in_top_level_values() -> None:
    c = cfg(
        """
macros: {main: big, hct: 45, key: sk-1}
healthCheckTimeout: ${hct}
apiKeys: ["${key}", "${key}-b"]
hooks: {on_startup: {preload: ["${main}"]}}
models:
  big: {cmd: "a ${PORT}"}
routing: {router: {settings: {groups: {g: {members: ["${main}"]}}}}}
"""
    )
    assert c.health_check_timeout == 45 and c.api_keys == ("sk-1", "sk-1-b")
    assert c.preload == ("big",) and c.groups[0].members == ("big",)
    assert (
        err("apiKeys: ['${nope}']\n" + ONE)
        == "apiKeys[0]: unknown macro '${nope}' found in apiKeys[0]"
    )
    assert err("hooks: {on_startup: {preload: ['${MODEL_ID}']}}\n" + ONE).startswith(
        "hooks.on_startup.preload[0]: unknown macro '${MODEL_ID}'"
    )
    # unsupported sections are ignored whole, macros included
    assert cfg("performance: {every: '${whatever}'}\n" + ONE).warnings == (
        "performance: not supported by llamaswap yet; ignored",
    )
    # peers are supported: a leftover macro there is an error like anywhere else
    assert err(
        "peers: {p: {proxy: 'http://h', models: [x], apiKey: '${whatever}'}}\n" + ONE
    ).startswith("peers.p.apiKey: unknown macro '${whatever}'")
