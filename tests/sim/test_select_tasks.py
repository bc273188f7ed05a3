"""`tasks=` as vla collect, vla eval and vla bench read it (one function: sim.factory.select_tasks)."""

import pytest

from sim.factory import select_tasks

AVAILABLE = ["place_red_on_blue_plate", "stack_red_on_green", "push_red_left"]


@pytest.mark.parametrize("requested, expected", [
    (None, AVAILABLE),
    ("all", AVAILABLE),
    ("push_red_left", ["push_red_left"]),
    ("push_red_left, stack_red_on_green", ["push_red_left", "stack_red_on_green"]),
    (2, ["push_red_left"]),                       # `tasks=2` on the command line
    ([0, "push_red_left"], ["place_red_on_blue_plate", "push_red_left"]),
])
def test_selection_forms(requested, expected):
    assert select_tasks(requested, AVAILABLE) == expected


@pytest.mark.parametrize("requested, message", [
    (["push_red_lft"], "unknown task 'push_red_lft'. Did you mean 'push_red_left'.*Valid tasks"),
    ([3], r"task index 3 out of range 0\.\.2"),
    (["push_red_left", 2], "lists a task twice"),
])
def test_bad_selection_is_a_clear_error(requested, message):
    with pytest.raises(ValueError, match=message):
        select_tasks(requested, AVAILABLE)
