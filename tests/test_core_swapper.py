"""Group swapper semantics (reference §1.6, §4.7), as a pure function and through the router."""

from recording_host import Harness

from llamaswap.core import GroupSpec, RoutingSpec
from llamaswap.core.swapper import DEFAULT_GROUP, EvictAllSwapper, GroupSwapper


def swapper(*groups: GroupSpec, loose: tuple[str, ...] = ()) -> GroupSwapper:
    models = [m for g in groups for m in g.members] + list(loose)
    return GroupSwapper(groups, models)


def test_without_groups_every_model_is_in_the_default_group_one_at_a_time() -> None:
    s = GroupSwapper((), ["A", "B", "C"])
    group = s.group_of("A")
    assert group is not None
    assert (group.name, group.members, group.swap, group.exclusive) == (
        DEFAULT_GROUP,
        ("A", "B", "C"),
        True,
        True,
    )
    assert s.eviction_for("A", ["B", "C"]) == ["B", "C"]


def test_swap_group_runs_one_member_at_a_time() -> None:
    s = swapper(GroupSpec("g", ("A", "B", "C"), swap=True, exclusive=False))
    assert s.eviction_for("A", ["C", "B"]) == ["B", "C"]


def test_non_swap_group_members_coexist() -> None:
    s = swapper(GroupSpec("g", ("A", "B"), swap=False, exclusive=True))
    assert s.eviction_for("A", ["B"]) == []


def test_exclusive_target_evicts_every_other_group_except_persistent_ones() -> None:
    s = swapper(
        GroupSpec("x", ("A",), swap=True, exclusive=True),
        GroupSpec("other", ("B", "C"), swap=False, exclusive=False),
        GroupSpec("pinned", ("P",), swap=True, exclusive=False, persistent=True),
    )
    assert s.eviction_for("A", ["B", "C", "P"]) == ["B", "C"]


def test_non_exclusive_target_never_unloads_other_groups_even_exclusive_ones() -> None:
    """Quirk 6: backwards-compatible 'gotcha' kept as is."""
    s = swapper(
        GroupSpec("soft", ("A",), swap=True, exclusive=False),
        GroupSpec("hard", ("B",), swap=True, exclusive=True),
    )
    assert s.eviction_for("A", ["B"]) == []
    assert s.eviction_for("B", ["A"]) == ["A"]


def test_persistent_only_protects_against_other_groups_not_within_its_own() -> None:
    s = swapper(GroupSpec("pinned", ("P", "Q"), swap=True, exclusive=True, persistent=True))
    assert s.eviction_for("Q", ["P"]) == ["P"]


def test_loose_models_form_an_exclusive_default_group_that_evicts_grouped_models() -> None:
    s = swapper(
        GroupSpec("g", ("A", "B"), swap=False, exclusive=False),
        GroupSpec("pinned", ("P",), persistent=True),
        loose=("X", "Y"),
    )
    assert s.eviction_for("X", ["A", "B", "P", "Y"]) == ["A", "B", "Y"]
    assert s.eviction_for("A", ["X", "B"]) == [], "g is not exclusive"


def test_target_never_evicts_itself_and_unknown_names_are_ignored() -> None:
    s = GroupSwapper((), ["A", "B"])
    assert s.eviction_for("A", ["A", "B", "ghost"]) == ["B"]
    assert s.eviction_for("ghost", ["A", "B"]) == []


def test_on_swap_start_counts_real_swaps() -> None:
    s = GroupSwapper((), ["A"])
    s.on_swap_start("A", [])
    e = EvictAllSwapper()
    e.on_swap_start("A", ["B"])
    assert (s.swaps_started, e.swaps_started) == (1, 1)


def test_evict_all_swapper_ignores_groups() -> None:
    assert EvictAllSwapper().eviction_for("A", ["C", "A", "B"]) == ["B", "C"]


# ---------------------------------------------------------------------- through the router


def test_persistent_group_stays_loaded_while_exclusive_models_swap_around_it() -> None:
    groups = (
        GroupSpec("embed", ("E",), swap=True, exclusive=False, persistent=True),
        GroupSpec("chat", ("A", "B"), swap=True, exclusive=True),
    )
    h = Harness(RoutingSpec.simple("E", "A", "B", scheduler="fifo", groups=groups))
    h.request("e1", "E")
    h.ready("E")
    h.request("a1", "A")
    h.ready("A")
    h.finish_all()
    h.request("b1", "B")
    assert h.host.terminated_models() == ["A"]
    h.settle()
    assert h.router.running_models() == ["B", "E"]
    assert h.host.granted_ids() == ["e1", "a1", "b1"]


def test_group_swap_false_exclusive_false_models_all_run_side_by_side_under_fifo() -> None:
    groups = (GroupSpec("all", ("A", "B", "C"), swap=False, exclusive=False),)
    h = Harness(RoutingSpec.simple("A", "B", "C", scheduler="fifo", groups=groups))
    for m in "ABC":
        h.request(m.lower(), m)
    assert h.host.spawned_models() == ["A", "B", "C"]
    h.settle()
    assert h.router.running_models() == ["A", "B", "C"]
    assert h.host.terminated == []
