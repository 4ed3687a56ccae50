"""One converge pass at a time per ModelApp (`turns.Turns`): pure thread coordination, no I/O.

Design notes: child events must never block a thread on a busy ModelApp (in a burst every child thread
would wait), yet no event may be lost: a child event that finds a pass running asks it to go once more.
A ModelApp event waits its turn instead, since it must run its own full pass.
"""

from __future__ import annotations

import threading

from modelapp_operator.turns import Turns

KEY = ("ns", "app")


def test_a_child_event_during_a_pass_makes_that_pass_go_once_more() -> None:
    turns = Turns()
    assert turns.enter(KEY, wait=False)
    assert not turns.enter(KEY, wait=False)  # a child event: no wait, but a request for one more pass
    assert not turns.enter(KEY, wait=False)  # two requests make one more pass, not two
    assert turns.more(KEY)
    assert not turns.more(KEY)  # the turn ended
    assert turns.enter(KEY, wait=False)  # free again
    assert not turns.more(KEY)


def test_other_modelapps_are_independent() -> None:
    turns = Turns()
    assert turns.enter(KEY, wait=False)
    assert turns.enter(("ns", "other"), wait=False)


def test_a_modelapp_event_waits_for_the_running_pass_and_a_failed_pass_frees_the_turn() -> None:
    turns = Turns()
    assert turns.enter(KEY, wait=True)
    entered = threading.Event()

    def reconcile() -> None:
        turns.enter(KEY, wait=True)
        entered.set()

    thread = threading.Thread(target=reconcile)
    thread.start()
    assert not entered.wait(0.2)  # blocked while the pass runs
    assert not turns.enter(KEY, wait=False)
    turns.leave(KEY)  # the pass failed: the turn ends, the request for one more stays
    assert entered.wait(5)
    thread.join(5)
    assert turns.more(KEY)  # the waiting pass inherits the pending request
    assert not turns.more(KEY)
