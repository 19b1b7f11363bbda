"""alloy-async: the async-first Python SDK for the Alloy Automation Connectivity API.

>>> from alloy_async import AlloyClient
>>> async with AlloyClient() as alloy:          # doctest: +SKIP
...     user = await alloy.users.create(username="merchant_123@example.com")
"""

__version__ = "0.1.0"

from ._http import Request, Response
from .client import AlloyClient
from .errors import (
    AlloyError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InvalidRequestError,
    InvalidResponseError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    UnprocessableEntityError,
)
from .retry import RetryPolicy
from .transports import FakeTransport, Transport

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AlloyClient",
    "AlloyError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "FakeTransport",
    "InvalidRequestError",
    "InvalidResponseError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "Request",
    "Response",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "Transport",
    "UnprocessableEntityError",
    "__version__",
]
