"""llama-swap's own example config, read in place, must load with warnings only."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamaswap.config import load_config
from sim.shared import SharedDirMissingError, shared_path

EXAMPLE_NAME = "reference/llama-swap-config.example.yaml"
ENV = {
    "HOME": "/home/op",
    "API_KEY_1": "sk-one",
    "API_KEY_2": "sk-two",
    "OPENROUTER_API_KEY": "sk-or",
}


def _example() -> Path:
    try:
        return shared_path(EXAMPLE_NAME)
    except SharedDirMissingError as exc:
        pytest.skip(f"{EXAMPLE_NAME} not available (CI without ../shared): {exc}")


def test_example_config_loads_with_warnings_only() -> None:
    cfg = load_config(_example(), env=ENV)
    assert set(cfg.models) == {"gpt-oss-120b", "docker-llama"}
    gpt = cfg.models["gpt-oss-120b"]
    # macros: model-local default_ctx overrides the global; latest-llama carries ${PORT}.
    assert gpt.cmd == (
        "/path/to/llama-server/llama-server-ec9e0301",
        "--port",
        "10002",
        "--model",
        "path/to/gpt-oss-120B.gguf",
        "--ctx-size",
        "16384",
        "--temperature",
        "0.7",
    )
    assert gpt.port == 10002
    assert gpt.proxy == "http://127.0.0.1:8999"
    assert gpt.metadata["port"] == 10002 and gpt.metadata["temperature"] == 0.7
    assert gpt.metadata["an_obj"]["c"] == [0.7, False, "model: gpt-oss-120b"]
    assert gpt.strip_params == ("temperature", "top_k", "top_p")
    assert gpt.aliases == ("gpt-4o-mini",)
    assert gpt.send_loading_state is False and gpt.ttl == 60
    docker = cfg.models["docker-llama"]
    assert docker.port == 10001 and docker.proxy == "http://127.0.0.1:10001"
    assert docker.cmd_stop == "docker stop docker-llama"
    assert docker.send_loading_state is True
    assert cfg.api_keys == (
        "sk-hunter2",
        "sk-gyCPiKUcIfPlaM4OSMZekkprgijPx6+OsmQs8Rsg0xZ9qpy6gKWsIKqHOk+cgXVx",
        "sk-one",
        "sk-two",
    )
    assert cfg.health_check_timeout == 500 and cfg.start_port == 10001
    assert cfg.scheduler == "fifo"
    joined = "\n".join(cfg.warnings)
    for key in (
        "ui",
        "performance",
        "upstream",
        "captureBuffer",
        "logToStdout",
        "logTimeFormat",
        "metricsMaxInMemory",
        "routing.router.settings.matrix",
        "models.gpt-oss-120b.compat",
        "models.gpt-oss-120b.capabilities",
        "models.gpt-oss-120b.filters.setParamsByID",
    ):
        assert sum(w.startswith(key + ":") for w in cfg.warnings) == 1, key
    assert "models.unlisted-model.proxy" in joined
    # peers and selectors are read, not warned about
    assert not [w for w in cfg.warnings if w.startswith("peers")]
    assert cfg.peers["openrouter"].proxy == "https://openrouter.ai/api"
    assert cfg.peers["openrouter"].strip_params == ("temperature", "top_p")
    assert cfg.peer_route("z-ai/glm-4.7") is not None
    assert cfg.peer_route("llama-swap-peer/embeddings/model_c") is not None
    assert sorted(cfg.selectors) == ["coding-model", "llama", "llm-plan"]
    assert dict(cfg.profiles["coding"].pins) == {
        "llm-code": "gpt-oss-120b",
        "image-gen": "",
    }  # llm-plan -> qwen-unlisted (the skipped unlisted-model's alias) dropped with a warning
    assert [t.key for t in cfg.selectors["llm-plan"].spec.targets] == [
        "gpt-oss-120b",
        "openrouter/z-ai/glm-4.7",
    ]
    # illustrative targets naming no model (the skipped unlisted-model's alias, modelA/B) drop
    assert [t.key for t in cfg.selectors["llama"].spec.targets] == ["docker-llama"]
    assert sum(w.startswith("selectors.") and w.endswith("; dropped") for w in cfg.warnings) == 3
    assert sum(w.startswith("profiles.") and w.endswith("; dropped") for w in cfg.warnings) == 1
    assert len(cfg.warnings) == len(set(cfg.warnings))
    spec = cfg.routing_spec()
    assert set(spec.models) == {"gpt-oss-120b", "docker-llama"}


def test_example_timeouts_are_read_with_llama_swap_names_and_defaults() -> None:
    """Issue 19: ``timeouts`` is supported now (it was ignored with a warning)."""
    t = load_config(_example(), env=ENV).models["gpt-oss-120b"].timeouts
    assert (t.connect, t.keepalive, t.response_header, t.tls_handshake, t.idle_conn) == (
        30,
        0,
        60,
        10,
        90,
    )
    assert t.expect_continue == 1  # not in the example: llama-swap's default
