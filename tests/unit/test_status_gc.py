"""The collector pause around folds: overlapping folds, and never off for long."""

from __future__ import annotations

import gc

import pytest

from herald import status


def test_overlapping_pauses_turn_the_collector_back_on_at_the_last() -> None:
    assert gc.isenabled()
    first, second = status._gc_paused(), status._gc_paused()
    first.__enter__()
    second.__enter__()
    assert not gc.isenabled()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_collector_someone_else_turned_off_stays_off() -> None:
    gc.disable()
    try:
        with status._gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_collects_when_folds_overlap_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    collected = []
    monkeypatch.setattr(status, "GC_PAUSE_MAX_S", 0.0)
    monkeypatch.setattr(gc, "collect", lambda *a: collected.append(a) or 0)
    with status._gc_paused():
        with status._gc_paused():
            pass
        assert collected  # the outer pause still holds; the inner end collected once
        assert not gc.isenabled()
    assert gc.isenabled()


def test_an_error_inside_turns_it_back_on() -> None:
    with pytest.raises(RuntimeError), status._gc_paused():
        raise RuntimeError("fold failed")
    assert gc.isenabled()
