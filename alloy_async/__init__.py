"""alloy-async: the async-first Python SDK for the Alloy Automation Connectivity API.

>>> from alloy_async import AlloyClient
>>> async with AlloyClient() as alloy:          # doctest: +SKIP
...     user = await alloy.users.create(username="merchant_123@example.com")
"""

from ._core import CallStats
from ._http import Request, Response, Timeout
from ._version import __version__
from .client import AlloyClient
from .engine import BulkRun, SqliteJournal
from .errors import (
    AlloyError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    CoordinatorError,
    CredentialQuarantinedError,
    InvalidRequestError,
    InvalidResponseError,
    JournalError,
    JournalLockedError,
    NotFoundError,
    OutcomeUnknownError,
    PaginationError,
    PermissionDeniedError,
    ProxyError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
    TLSError,
    UnprocessableEntityError,
    UnusableSchemaError,
)
from .limiters import AdaptiveLimiter, ConcurrencyLimiter, RateLimiter
from .models import BulkReport, ExecuteJob, ExecutionResult, JobOutcome
from .pagination import AsyncPaginator, Page
from .retry import RetryPolicy
from .transports import FakeTransport, Transport

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AdaptiveLimiter",
    "AlloyClient",
    "AlloyError",
    "AsyncPaginator",
    "AuthenticationError",
    "BadRequestError",
    "BulkReport",
    "BulkRun",
    "CallStats",
    "ConcurrencyLimiter",
    "ConfigurationError",
    "ConflictError",
    "CoordinatorError",
    "CredentialQuarantinedError",
    "ExecuteJob",
    "ExecutionResult",
    "FakeTransport",
    "InvalidRequestError",
    "InvalidResponseError",
    "JobOutcome",
    "JournalError",
    "JournalLockedError",
    "NotFoundError",
    "OutcomeUnknownError",
    "Page",
    "PaginationError",
    "PermissionDeniedError",
    "ProxyError",
    "RateLimitError",
    "RateLimiter",
    "Request",
    "Response",
    "ResponseTooLargeError",
    "RetryPolicy",
    "ServerError",
    "SqliteJournal",
    "TLSError",
    "Timeout",
    "Transport",
    "UnprocessableEntityError",
    "UnusableSchemaError",
    "__version__",
]
