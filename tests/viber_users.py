"""Viber users for pipeline tests: Viber addresses user ids, so before a campaign sends on
Viber its contacts open the simulator's bot through a deep link carrying their contact id.
The simulator posts the signed conversation_started (and, for phones that are Viber users by
simulator/outcomes.py, subscribed) callbacks through the ingress; the status role links each
user id to its contact. The demo does the same (herald.demo.link_viber_users)."""

from __future__ import annotations

from herald.demo import link_viber_users

__all__ = ["link_viber_users"]
