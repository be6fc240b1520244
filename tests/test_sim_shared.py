"""``sim.shared``: the one place that finds ``../shared``, from a clone, a worktree or an override."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sim.shared import (
    ENV,
    SharedDirMissingError,
    candidates,
    shared_dir,
    shared_path,
    shared_relative,
)


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """``tmp/main`` (a real git clone) with ``tmp/shared`` beside it, and a real linked worktree
    ``tmp/wt/feature`` of it (nothing is beside the worktree)."""
    monkeypatch.delenv(ENV, raising=False)
    main = tmp_path / "main"
    main.mkdir()
    _git("init", "-q", cwd=main)
    (main / "README").write_text("x")
    _git("add", "README", cwd=main)
    _git("commit", "-q", "-m", "init", cwd=main)
    worktree = tmp_path / "wt" / "feature"
    _git("worktree", "add", "-q", str(worktree), cwd=main)
    shared = tmp_path / "shared"
    (shared / "traces" / "raw").mkdir(parents=True)
    (shared / "traces" / "raw" / "t.csv").write_text("a\n")
    return main, worktree, shared


def test_found_beside_the_clone_and_from_a_worktree_of_it(layout: tuple[Path, Path, Path]) -> None:
    main, worktree, shared = layout
    assert shared_dir(main) == shared
    assert shared_dir(worktree) == shared  # via the worktree's .git file -> the main checkout
    assert candidates(worktree) == [worktree.parent / "shared", shared]
    assert shared_path("traces/raw/t.csv", worktree) == shared / "traces" / "raw" / "t.csv"


def test_the_override_comes_first(
    layout: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    main, _, _ = layout
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.setenv(ENV, str(other))
    assert shared_dir(main) == other


def test_absent_shared_dir_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV, raising=False)
    clone = tmp_path / "clone"
    clone.mkdir()
    assert shared_dir(clone) is None
    with pytest.raises(SharedDirMissingError) as info:
        shared_path("traces/raw/x.csv", clone)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "shared") in message and ENV in message


def test_a_missing_file_names_the_shared_dir(layout: tuple[Path, Path, Path]) -> None:
    main, _, shared = layout
    with pytest.raises(SharedDirMissingError) as info:
        shared_path("nope.csv", main)
    assert str(info.value) == f"nope.csv: not found in the shared directory ({shared})"


def test_scenario_spelling_of_shared_paths() -> None:
    assert shared_relative("../shared/traces/raw/a.csv") == Path("traces/raw/a.csv")
    assert shared_relative("traces/a.csv") is None
    assert shared_relative("../shared") is None


def test_a_scenario_in_a_worktree_resolves_its_shared_trace(
    layout: tuple[Path, Path, Path],
) -> None:
    from sim.scenario import resolve_path

    _, worktree, shared = layout
    scenario = worktree / "scenarios" / "s.yaml"
    scenario.parent.mkdir()
    resolved = resolve_path(scenario, "../shared/traces/raw/t.csv")
    assert resolved == shared / "traces" / "raw" / "t.csv"
