"""Config sources: file + directory merge, ``${env.NAME}``, strict YAML (reference §1.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap.config import ConfigError, load_config

MODEL_A = "models:\n  a:\n    cmd: srv-a --port ${PORT}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_err(*args: object, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


# ---------------------------------------------------------------------------------------------
# merge


def test_file_then_dir_sorted_merge(tmp_path: Path) -> None:
    main = write(tmp_path / "config.yaml", "healthCheckTimeout: 30\napiKeys: [k1]\n" + MODEL_A)
    d = tmp_path / "conf.d"
    write(d / "20-b.yml", "apiKeys: [k3]\nmodels:\n  b:\n    cmd: srv-b --port ${PORT}\n")
    write(
        d / "10-c.yaml",
        "apiKeys: [k2]\nhealthCheckTimeout: 30\nmodels:\n  c:\n    cmd: c ${PORT}\n",
    )
    write(d / "empty.yaml", "# nothing here\n")
    write(d / "notes.txt", "not: [yaml")
    write(d / "sub" / "x.yaml", "models: {z: {cmd: z}}\n")  # no recursion
    cfg = load_config(main, d, env={})
    assert set(cfg.models) == {"a", "b", "c"}
    assert cfg.api_keys == ("k1", "k2", "k3")  # sequences concatenate in source order
    assert cfg.health_check_timeout == 30  # equal scalars are fine
    assert cfg.sources == (
        str(main),
        str(d / "10-c.yaml"),
        str(d / "20-b.yml"),
        str(d / "empty.yaml"),
    )
    # ports follow sorted model ids across files
    assert {m: c.port for m, c in cfg.models.items()} == {"a": 5800, "b": 5801, "c": 5802}


def test_dir_only_and_nested_maps_merge(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", MODEL_A + "routing:\n  scheduler:\n    use: fifo\n")
    write(
        tmp_path / "b.yaml",
        "routing:\n  scheduler:\n    settings:\n      fifo:\n        priority: {a: 4}\n",
    )
    cfg = load_config(None, tmp_path, env={})
    assert cfg.scheduler == "fifo" and cfg.scheduler_settings["fifo"] == {"priority": {"a": 4}}


def test_conflicting_scalars(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "healthCheckTimeout: 30\n" + MODEL_A)
    write(tmp_path / "d" / "x.yaml", "healthCheckTimeout: 60\n")
    msg = load_err(main, tmp_path / "d", env={})
    assert msg.startswith("conflict at healthCheckTimeout: 30 in ")
    assert str(main) in msg and "x.yaml" in msg


def test_null_yields_and_type_conflicts(tmp_path: Path) -> None:
    main = write(tmp_path / "main.yaml", "globalTTL:\n" + MODEL_A)
    write(tmp_path / "d" / "x.yaml", "globalTTL: 5\n")
    assert load_config(main, tmp_path / "d", env={}).global_ttl == 5
    write(tmp_path / "d" / "y.yaml", "globalTTL: [5]\n")
    assert load_err(main, tmp_path / "d", env={}).startswith("conflict at globalTTL: integer in ")


@pytest.mark.parametrize(
    ("first", "second", "path"),
    [
        (MODEL_A, MODEL_A, "models.a"),
        (
            "groups:\n  g: {members: [a]}\n",
            "groups:\n  g: {members: [a]}\n",
            "groups.g",
        ),
        (
            "routing: {router: {settings: {groups: {g: {members: [a]}}}}}\n",
            "routing: {router: {settings: {groups: {g: {members: [a]}}}}}\n",
            "routing.router.settings.groups.g",
        ),
    ],
)
def test_identity_maps_reject_duplicates_naming_both_files(
    tmp_path: Path, first: str, second: str, path: str
) -> None:
    f1 = write(tmp_path / "one.yaml", first if first == MODEL_A else MODEL_A + first)
    f2 = write(tmp_path / "d" / "two.yaml", second)
    msg = load_err(f1, tmp_path / "d", env={})
    assert msg.startswith(f"{path}: duplicate ")
    assert str(f1) in msg and str(f2) in msg


def test_source_problems(tmp_path: Path) -> None:
    assert load_err(None, None).startswith("config: give a config file")
    assert load_err(tmp_path / "missing.yaml").endswith(
        "config file not found (or not a regular file)"
    )
    assert load_err(None, tmp_path / "nodir").endswith("config directory not found")
    f = write(tmp_path / "d" / "c.yaml", MODEL_A)
    assert "the same file is given as the config file and inside the config directory" in load_err(
        f, tmp_path / "d"
    )
    bad = write(tmp_path / "bad.yaml", "models: [unclosed\n")
    assert load_err(bad).startswith(f"{bad}: invalid YAML")
    lst = write(tmp_path / "list.yaml", "- a\n- b\n")
    assert load_err(lst) == f"{lst}: the top level must be a mapping, got list"
    dup = write(tmp_path / "dup.yaml", MODEL_A + "  a:\n    cmd: again\n")
    assert "duplicate key 'a'" in load_err(dup)
    binary = write(tmp_path / "bin.yaml", "models: !!binary aGVsbG8=\n")
    assert load_err(binary).startswith("models: unsupported YAML value")
    huge = write(tmp_path / "huge.yaml", "startPort: " + "9" * 5000 + "\n")
    assert load_err(huge).startswith(f"{huge}: invalid YAML value")
    raw = tmp_path / "latin1.yaml"
    raw.write_bytes(b"name: \xff\xfe\n")
    assert load_err(raw).startswith(f"{raw}: cannot read")


def test_empty_file_gives_empty_config(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path / "e.yaml", ""), env={})
    assert cfg.models == {} and cfg.scheduler == "serial"


def test_yaml_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    lines.append("metadata_bomb: *a8")
    f = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    assert "config too large" in load_err(f)


def test_yaml_dates_stay_strings(tmp_path: Path) -> None:
    f = write(tmp_path / "c.yaml", MODEL_A + "    metadata: {released: 2024-05-01}\n")
    assert load_config(f, env={}).models["a"].metadata == {"released": "2024-05-01"}


# ---------------------------------------------------------------------------------------------
# ${env.NAME}


def test_env_substitution_typed_and_in_strings(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.yaml",
        "# ${env.ONLY_IN_COMMENT} is never looked up\n"
        "globalTTL: ${env.TTL}  # ${env.ALSO_COMMENT}\n"
        "apiKeys: ['${env.KEY}']\n"
        "models:\n  a:\n    cmd: ${env.BIN} --port ${PORT}\n",
    )
    cfg = load_config(f, env={"TTL": "42", "KEY": "sk-x", "BIN": "/opt/srv"})
    assert cfg.global_ttl == 42
    assert cfg.api_keys == ("sk-x",)
    assert cfg.models["a"].cmd == ("/opt/srv", "--port", "5800")


def test_env_unset_and_unsafe_values(tmp_path: Path) -> None:
    f = write(tmp_path / "c.yaml", MODEL_A + "    name: ${env.NAME}\n")
    msg = load_err(f, env={})
    assert msg == f"{f}: environment variable 'NAME' is not set (used as ${{env.NAME}})"
    for bad in ("a\nb", "a\rb", "a\0b"):
        assert "contains a newline, carriage return or NUL" in load_err(f, env={"NAME": bad})


def test_env_mapping_replaces_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LS_FROM_OS", "os-value")
    f = write(tmp_path / "c.yaml", MODEL_A + "    name: ${env.LS_FROM_OS}\n")
    assert load_config(f).models["a"].name == "os-value"
    assert "LS_FROM_OS" in load_err(f, env={})


def test_env_quotes_are_escaped_like_llama_swap(tmp_path: Path) -> None:
    f = write(tmp_path / "c.yaml", MODEL_A + '    description: "${env.D}"\n')
    cfg = load_config(f, env={"D": 'say "hi" \\o/'})
    assert cfg.models["a"].description == 'say "hi" \\o/'


def test_env_scan_of_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 ['${env.HOME}', x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    f = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\n")
    assert "config too large" in load_err(f, env={"HOME": "/h"})


def test_scalars_read_like_go_yaml_v3(tmp_path: Path) -> None:
    f = write(
        tmp_path / "c.yaml",
        "models:\n  on:\n    cmd: srv ${PORT}\n    aliases: [yes, 'no']\n    unlisted: yes\n"
        "    metadata: {enabled: off, t: 1:30, d: 2024-05-01, o: 0755, h: 0x1F, e: 1e3, b: TRUE, s: '12'}\n",
    )
    cfg = load_config(f, env={})
    m = cfg.models["on"]
    assert m.aliases == ("yes", "no")
    assert m.unlisted is True  # YAML 1.1 words still work where a boolean is expected
    assert m.metadata == {
        "enabled": "off",
        "t": "1:30",
        "d": "2024-05-01",
        "o": 493,
        "h": 31,
        "e": 1000.0,
        "b": True,
        "s": "12",
    }
