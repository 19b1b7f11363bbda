"""The resource services attached to :class:`~alloy_async.AlloyClient`."""

from .actions import Actions
from .connectors import Connectors
from .credentials import Credentials
from .files import Files
from .users import Users

__all__ = ["Actions", "Connectors", "Credentials", "Files", "Users"]
