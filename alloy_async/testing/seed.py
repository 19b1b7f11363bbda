"""Demo data for the simulator: users with working credentials, ready for a fan-out.

The ``alloy-async sandbox`` command and ``--sandbox`` option seed their :class:`FakeAlloy`
with it; tests use it to know the ids a sandbox started with the same seed holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fake import FakeAlloy

__all__ = ["seed_demo"]


def seed_demo(fake: FakeAlloy, users: int) -> list[tuple[str, str]]:
    """Add ``users`` demo users to ``fake``, each with a SendGrid and a HubSpot credential.

    The users are named ``demo``, ``demo-1``, ``demo-2``, ... (full name ``Demo User <i>``).
    Returns one ``(user_id, sendgrid_credential_id)`` pair per user, in that order. The ids
    come from the simulator's seeded generator: two :class:`FakeAlloy` built with the same
    ``seed`` and seeded the same way hold the same ids.
    """
    out = []
    for i in range(users):
        uid = fake.add_user("demo" if i == 0 else f"demo-{i}", f"Demo User {i}")
        out.append((uid, fake.add_credential(uid, "sendgrid")))
        fake.add_credential(uid, "hubspot")
    return out
