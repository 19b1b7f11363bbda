"""Test kit: FakeAlloy (the in-memory Alloy simulator), fault injection and a virtual clock.

Use it to test your own code without network or API key::

    fake = FakeAlloy()
    async with fake.client() as alloy:
        user = await alloy.users.create(username="jane@example.com")
"""

from .clock import VirtualTimeLoop, run_virtual
from .fake import DEFAULT_API_KEY, FakeAlloy
from .faults import Fault, FaultPlan, SimulatedDisconnect
from .records import ExecutionRecord, FaultRecord, RecordedRequest
from .seed import seed_demo

__all__ = [
    "DEFAULT_API_KEY",
    "ExecutionRecord",
    "FakeAlloy",
    "Fault",
    "FaultPlan",
    "FaultRecord",
    "RecordedRequest",
    "SimulatedDisconnect",
    "VirtualTimeLoop",
    "run_virtual",
    "seed_demo",
]
