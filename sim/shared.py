"""Where the shared data lives: ``../shared`` beside the checkout (real traces, reference files).

The real public traces are read in place, never copied into the repository, from a ``shared``
directory next to the checkout (``/work/main`` -> ``/work/shared``). Every consumer (scenario files
naming ``../shared/...``, ``eval/``, ``bench/``, the tests) finds it through this one helper, so a
clean clone, a git worktree elsewhere (``/work/wt/NAME``: ``../shared`` is not beside it, but it is
beside the main checkout the worktree belongs to) and an explicit override all behave the same.

Search order: ``$LLAMASWAP_SHARED``; ``<checkout>/../shared``; for a git worktree,
``<main checkout>/../shared`` (read from the worktree's ``.git`` file, no ``git`` process).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath

ENV = "LLAMASWAP_SHARED"
CHECKOUT = Path(__file__).resolve().parents[1]
"""The checkout this code runs from (the repository root)."""


class SharedDirMissingError(FileNotFoundError):
    """No shared directory (or not the part asked for); the message lists every place tried."""


def _main_checkout(checkout: Path) -> Path | None:
    """The main working tree of ``checkout`` if it is a linked git worktree, else None."""
    dot_git = checkout / ".git"
    if not dot_git.is_file():
        return None
    try:
        line = dot_git.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not line.startswith("gitdir:"):
        return None
    gitdir = (checkout / line.removeprefix("gitdir:").strip()).resolve()
    try:
        common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    except OSError:
        return None
    return common.parent if common.name == ".git" else None


def candidates(checkout: Path = CHECKOUT) -> list[Path]:
    """Every place the shared directory may be, in search order."""
    found: list[Path] = []
    override = os.environ.get(ENV)
    if override:
        found.append(Path(override).expanduser())
    found.append(checkout.parent / "shared")
    main = _main_checkout(checkout)
    if main is not None and main != checkout:
        found.append(main.parent / "shared")
    return found


def shared_dir(checkout: Path = CHECKOUT) -> Path | None:
    """The shared directory, or None when there is none on this machine."""
    for place in candidates(checkout):
        if place.is_dir():
            return place
    return None


def shared_path(relative: str | PurePath, checkout: Path = CHECKOUT) -> Path:
    """``relative`` inside the shared directory; :class:`SharedDirMissingError` (one clear line) if absent."""
    tried = candidates(checkout)
    dirs = [place for place in tried if place.is_dir()]
    for place in dirs:
        if (place / relative).exists():
            return place / relative
    if dirs:
        raise SharedDirMissingError(
            f"{relative}: not found in the shared directory ({', '.join(map(str, dirs))})"
        )
    raise SharedDirMissingError(
        f"no shared data directory (for {relative}): looked in "
        f"{', '.join(map(str, tried))}; set {ENV}=DIR to point at it"
    )


def shared_relative(name: str | PurePath) -> PurePath | None:
    """For a path written as ``../shared/REST`` (the scenario files' spelling), REST; else None."""
    parts = PurePath(name).parts
    if len(parts) > 2 and parts[0] == ".." and parts[1] == "shared":
        return PurePath(*parts[2:])
    return None
