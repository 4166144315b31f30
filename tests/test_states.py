"""The state machines in dispatch.domain.states, and the bulk updates that go through them."""

from __future__ import annotations

import pytest

from dispatch.db.job_rows import offers_moving, workers_moving
from dispatch.domain.errors import IllegalTransition
from dispatch.domain.states import (
    Availability,
    BatchStatus,
    OfferStatus,
    availability_from,
    check_availability_transition,
    check_batch_transition,
    client_state_lists,
    sql_in,
)


def test_a_bulk_offer_update_refuses_a_move_the_map_does_not_allow() -> None:
    stmt = offers_moving(OfferStatus.PENDING, OfferStatus.EXPIRED)
    assert stmt.compile().params["status"] == "expired"
    with pytest.raises(IllegalTransition):
        offers_moving(OfferStatus.EXPIRED, OfferStatus.PENDING)
    with pytest.raises(IllegalTransition):
        offers_moving(OfferStatus.DECLINED, OfferStatus.WITHDRAWN)


def test_a_bulk_worker_update_moves_only_from_what_the_map_allows() -> None:
    # Busy is reached from online (an accept) and offline (setting out for a booked window).
    assert availability_from(Availability.BUSY) == ["offline", "online"]
    sql = str(workers_moving(Availability.BUSY).compile(
        compile_kwargs={"literal_binds": True}))
    assert "'offline', 'online'" in sql and "'busy'" in sql.split("WHERE")[0]
    with pytest.raises(IllegalTransition):
        workers_moving(Availability.OFFLINE, current=Availability.BUSY)


def test_availability_and_batch_moves() -> None:
    check_availability_transition("online", "online")  # no change is no move
    check_availability_transition("busy", "online")
    with pytest.raises(IllegalTransition):
        check_availability_transition("busy", "offline")
    check_batch_transition(BatchStatus.FAILED, BatchStatus.PROCESSING)
    with pytest.raises(IllegalTransition):
        check_batch_transition(BatchStatus.DONE, BatchStatus.PROCESSING)


def test_pages_get_the_lists_from_the_state_machine() -> None:
    lists = client_state_lists()
    assert lists["active"] == ["assigned", "en_route", "arrived", "in_progress"]
    assert lists["worker_moves"]["assigned"] == ["dispatching", "en_route", "arrived"]
    assert (lists["cant_make_it"], lists["give_back"]) == (["assigned", "en_route"], ["assigned"])
    cancellable = [s for s, moves in lists["resident_moves"].items() if "cancelled" in moves]
    assert cancellable == ["requested", "dispatching", "assigned", "en_route"]
    assert sql_in(frozenset({OfferStatus.PENDING, OfferStatus.ACCEPTED})) == (
        "('accepted', 'pending')")
