"""Every exception alloy-async raises.

::

    AlloyError
    ├── ConfigurationError        missing key, bad base URL
    ├── JournalError              a checkpoint journal cannot be opened or written
    │   ├── JournalLockedError    another run holds the checkpoint (.holder)
    │   └── CoordinatorError      the shared state (Redis) cannot be reached or refused a write
    ├── InvalidRequestError       refused before sending: an empty id, CR/LF in a header, a bad
    │                             argument, a body the action's schema refuses (.problems)
    ├── UnusableSchemaError       preflight: the action's schema cannot be applied; not sent
    ├── CredentialQuarantinedError  execute_many: its credential got 401/403 from the third
    │                             party earlier in the run; not sent (.credential_id, .error)
    ├── APIConnectionError        no answer
    │   ├── APITimeoutError
    │   ├── OutcomeUnknownError   the request may have been processed (sent, then no answer)
    │   ├── TLSError              a certificate refused, either way (.reason); never retried
    │   └── ProxyError            the proxy refused the request, e.g. 407 (.status); never retried
    ├── ResponseTooLargeError     the answer was bigger than the configured cap
    ├── InvalidResponseError      a 2xx answer that is not the JSON we expected
    │   └── PaginationError       a list that does not page: repeated page, oversized page, cycle
    └── APIStatusError            .status .code .message .source .request_id .body
        ├── BadRequestError 400, AuthenticationError 401, PermissionDeniedError 403,
        ├── NotFoundError 404, ConflictError 409, UnprocessableEntityError 422,
        ├── RateLimitError 429 (.retry_after)
        └── ServerError 5xx

Messages never contain the API key or any other credential: they are built only from the
status, the error code and message the server sent, the method and the path.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AlloyError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "CredentialQuarantinedError",
    "CoordinatorError",
    "InvalidRequestError",
    "InvalidResponseError",
    "JournalError",
    "JournalLockedError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PaginationError",
    "PermissionDeniedError",
    "ProxyError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ServerError",
    "TLSError",
    "UnprocessableEntityError",
    "UnusableSchemaError",
    "status_error_class",
]


class AlloyError(Exception):
    """Base class of every error alloy-async raises."""


class ConfigurationError(AlloyError):
    """The client is misconfigured: a missing API key, a bad base URL, a closed client."""


class JournalError(AlloyError):
    """A checkpoint journal could not be opened, read or written.

    ``execute_many`` never sends a job whose intent the journal could not record: a journal
    that fails stops the run.
    """


class JournalLockedError(JournalError):
    """Another run (in this or another process) holds the checkpoint journal.

    Attributes:
        path: the journal's path.
        holder: who holds it, as that run recorded it (process id, host, start time).
    """

    def __init__(self, message: str, *, path: str, holder: str) -> None:
        super().__init__(message)
        self.path = path
        self.holder = holder


class CoordinatorError(JournalError):
    """A distributed coordinator (``alloy_async.distributed.RedisCoordinator``) could not reach
    or write its shared state.

    A subclass of :class:`JournalError` because the promise is the same: ``execute_many``
    sends nothing it could not coordinate; the run stops and every job not yet sent stays
    unsent (a rerun runs it).
    """


class InvalidRequestError(AlloyError, ValueError):
    """The request was refused before sending: an empty id, CR/LF in a header, a bad argument.

    Attributes:
        field: the name of the offending argument or header, when there is one.
        problems: preflight validation (``validate=True``): each reason the action's schema
            refuses the call (:class:`~alloy_async.validation.Problem`: pointer, message,
            keyword); empty otherwise.
    """

    def __init__(
        self, message: str, *, field: str | None = None, problems: tuple[Any, ...] = ()
    ) -> None:
        super().__init__(message)
        self.field = field
        self.problems = tuple(problems)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), (str(self),), self.__dict__))


class UnusableSchemaError(AlloyError):
    """Preflight validation could not use the action's schema (not valid JSON Schema, an
    unresolvable ``$ref``). Nothing was sent; ``validate="best_effort"`` sends such calls
    unvalidated instead.

    Attributes:
        action: ``connector_id.action_id``.
        reason: what is wrong with the schema.
    """

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(f"cannot validate {action}: its schema is unusable ({reason})")
        self.action = action
        self.reason = reason

    def __reduce__(self) -> Any:
        return (type(self), (self.action, self.reason))


class CredentialQuarantinedError(AlloyError):
    """``execute_many`` did not send this job: its credential failed with 401 or 403 at the
    third party earlier in the run (revoked or expired access), so every job of it would fail
    the same way. Journaled as not sent: a rerun after the user reconnects sends it.

    Attributes:
        credential_id: the quarantined credential.
        user_id: its user, when known.
        error: the error that quarantined it (an :class:`APIStatusError`).
    """

    def __init__(self, credential_id: str, user_id: str | None, error: BaseException) -> None:
        super().__init__(
            f"credential {credential_id} was quarantined earlier in this run (or a run "
            f"sharing its coordinator) after {type(error).__name__} from the third party; "
            "not sent (reconnect it, then rerun)"
        )
        self.credential_id = credential_id
        self.user_id = user_id
        self.error = error

    def __reduce__(self) -> Any:
        return (type(self), (self.credential_id, self.user_id, self.error))


def _rebuild(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    error = cls(*args)
    error.__dict__.update(state)
    return error


class APIConnectionError(AlloyError):
    """No answer came from the API.

    Unless it is an :class:`OutcomeUnknownError`, the request never reached the server (the
    connection could not be made, or the request was not written), so sending it again is safe.

    Attributes:
        method: the HTTP method of the request.
        path: the URL path of the request (never the query string).
    """

    def __init__(self, message: str, *, method: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.path = path

    def __str__(self) -> str:
        base = super().__str__()
        if self.method and self.path:
            return f"{base} ({self.method} {self.path})"
        return base


class APITimeoutError(APIConnectionError):
    """The request timed out, or the call's deadline ran out.

    Attributes:
        sent: True when the request may have been written before the timeout; for a POST
            execute that means the action may have run (see :class:`OutcomeUnknownError`).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        path: str | None = None,
        sent: bool = False,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.sent = sent


class OutcomeUnknownError(APIConnectionError):
    """The request was sent but no answer came: the server may have acted on it.

    A non-idempotent call (``actions.execute``) that ends this way is never re-sent by the SDK:
    the caller must check whether the side effect happened before trying again.
    """


class TLSError(APIConnectionError):
    """TLS refused the connection: a retry would meet the same certificates, so none is made.

    Never sent: the connection failed before the server processed any request. Either the
    server's certificate was refused (not signed by a CA in ``verify``, or not valid for the
    host), or the server refused ours (mutual TLS: no ``cert``, or one it does not trust; the
    server's "certificate required" alert proves it read nothing), or the two sides share no
    TLS version (e.g. https to a plain-http port).

    Attributes:
        reason: ``"certificate_verify_failed"``, ``"hostname_mismatch"``,
            ``"certificate_required"``, ``"certificate_rejected"`` or ``"handshake_failed"``.
        retryable: always False: the retry policy never retries this error.
    """

    retryable = False

    def __init__(
        self, message: str, *, reason: str = "", method: str | None = None, path: str | None = None
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.reason = reason


class ProxyError(APIConnectionError):
    """The proxy refused the request: 407 (proxy authentication required: no or wrong proxy
    credentials) or another 4xx answer to the tunnel request (a proxy policy).

    Never sent to the API. The message and attributes never hold the proxy's credentials.
    (A proxy that cannot be reached is an :class:`APIConnectionError`, retried like any
    connection failure.)

    Attributes:
        status: the proxy's HTTP status (407 for authentication).
        retryable: always False: the retry policy never retries this error.
    """

    retryable = False

    def __init__(
        self, message: str, *, status: int = 0, method: str | None = None, path: str | None = None
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status = status


class ResponseTooLargeError(AlloyError):
    """The response body was larger than the client's ``max_response_bytes``."""


class InvalidResponseError(AlloyError):
    """A 2xx answer could not be decoded (not JSON, or not the shape of the documented model).

    Attributes:
        status: the HTTP status of the answer.
        request_id: the request id of the answer, if any.
    """

    def __init__(
        self, message: str, *, status: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id


class PaginationError(InvalidResponseError):
    """A list that does not page: iterating it would fetch the same data forever.

    Raised while iterating an :class:`~alloy_async.pagination.AsyncPaginator` (for example
    ``actions.paginate``) when a page holds the same items as the page before it, a page has
    more items than the ``limit`` asked for, a cursor or offset comes back, or the default
    ``max_pages`` runs out while the server still announces more. The items of the pages
    before it have already been delivered. It is an :class:`InvalidResponseError`, so code
    that caught that for a stuck ``nextOffset`` keeps working.

    Attributes:
        action: what was being paged, e.g. ``"hubspot.listContacts"`` or ``"actions.catalog"``.
        page: the 1-based number of the page that showed the problem.
        reason: ``"repeated_page"``, ``"oversized_page"``, ``"offset_cycle"``,
            ``"cursor_cycle"`` or ``"max_pages"``.
    """

    def __init__(self, message: str, *, action: str = "", page: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.action = action
        self.page = page
        self.reason = reason


class APIStatusError(AlloyError):
    """The API answered with a non-2xx status.

    Attributes:
        status: the HTTP status code.
        code: the machine-readable error code from the body (e.g. ``INVALID_INPUT``), if any.
        message: the human-readable message from the body (or the HTTP reason).
        source: who failed, when the API says so (``CONNECTIVITY_API`` or ``THIRD_PARTY``).
        details: the ``details`` object of the error body, if any.
        request_id: the ``x-request-id`` / ``request-id`` header of the answer, if any.
        body: the decoded JSON body, or the text when it was not JSON.
        method: the HTTP method of the request.
        path: the URL path of the request.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        source: str | None = None,
        details: Any = None,
        request_id: str | None = None,
        body: Any = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.source = source
        self.details = details
        self.request_id = request_id
        self.body = body
        self.method = method
        self.path = path

    def __str__(self) -> str:
        parts = [f"{self.status}"]
        if self.code:
            parts.append(self.code)
        text = " ".join(parts) + f": {self.message}"
        if self.source:
            text += f" [source={self.source}]"
        if self.method and self.path:
            text += f" ({self.method} {self.path})"
        if self.request_id:
            text += f" request_id={self.request_id}"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments need help to survive pickling (multiprocessing).
        return (_rebuild_status_error, (type(self), self.message, self.__dict__))


def _rebuild_status_error(cls: type[APIStatusError], message: str, state: dict[str, Any]) -> Any:
    err = cls.__new__(cls)
    AlloyError.__init__(err, message)
    err.__dict__.update(state)
    return err


class BadRequestError(APIStatusError):
    """400: the API rejected the request's content."""


class AuthenticationError(APIStatusError):
    """401: the API key (or the user's credential at the third party) was refused."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but may not do this."""


class NotFoundError(APIStatusError):
    """404: no such user, connector, action, credential or file."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the current state (e.g. a username already taken)."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but its values were refused."""


class RateLimitError(APIStatusError):
    """429: too many requests.

    Attributes:
        retry_after: seconds the server asked us to wait, when it said (``Retry-After``).
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = super().__str__()
        if self.retry_after is not None:
            text += f" retry_after={self.retry_after:g}s"
        return text


class ServerError(APIStatusError):
    """5xx: the API (or the third party behind it) failed."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """Return the :class:`APIStatusError` subclass for an HTTP status."""
    if status >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status, APIStatusError)
