"""``retry.decide``, the retry loop's one decision, judged without an event loop.

Every test here is a plain function: ``decide`` is given an attempt and its outcome and says
what follows (return the response, raise the error, or retry after some seconds). The rules
are the ones the SDK has always kept (DESIGN.md section 5); each test names the deliberate
bug it catches.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

import backoff
import pytest

from alloy_async import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    BadRequestError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from alloy_async._http import Request, Response
from alloy_async.errors import AlloyError
from alloy_async.retry import Attempt, Decision, Retry, decide, may_have_acted


def request(method: str, path: str) -> Request:
    return Request(method, f"https://api.example{path}", body=b"{}", path=path)


EXECUTE = request("POST", "/connectors/c/actions/a/execute")
GET = request("GET", "/connectors")
DELETE = request("DELETE", "/users/u1")


def attempt(
    request: Request, number: int = 1, *, maybe_acted: bool = False, remaining: float | None = None
) -> Attempt:
    idempotent = request.method != "POST"
    return Attempt(request, number, idempotent, maybe_acted, remaining)


def answer(status: int, **headers: str) -> Response:
    return Response(status, {k.replace("_", "-"): v for k, v in headers.items()}, b"")


def timeout(request: Request, *, sent: bool) -> APITimeoutError:
    return APITimeoutError("timed out", method=request.method, path=request.path, sent=sent)


def raised(decision: Decision) -> AlloyError:
    assert isinstance(decision, AlloyError), decision
    return decision


def raised_status(decision: Decision) -> int:
    error = raised(decision)
    assert isinstance(error, APIStatusError), error
    return error.status


def retried(decision: Decision) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


def test_a_429_waits_its_retry_after_even_for_an_execute() -> None:
    """Catches: Retry-After ignored (a backoff wait instead), or a 429 on a POST raised
    although the server said it did not act."""
    step = retried(decide(RetryPolicy(), attempt(EXECUTE), answer(429, retry_after="7")))
    assert step.delay == 7.0
    assert isinstance(step.reason, RateLimitError) and step.reason.retry_after == 7.0


def test_a_503_retry_after_is_waited_for_a_read() -> None:
    """Catches: Retry-After read only from a 429 (a 503's own header ignored)."""
    step = retried(decide(RetryPolicy(), attempt(GET), answer(503, retry_after="3")))
    assert step.delay == 3.0


def test_a_retry_after_beyond_the_maximum_raises_at_once() -> None:
    """Catches: a long Retry-After waited for (or capped) instead of handed to the caller."""
    policy = RetryPolicy(max_retry_after=60.0)
    error = raised(decide(policy, attempt(GET), answer(429, retry_after="3600")))
    assert isinstance(error, RateLimitError) and error.retry_after == 3600.0


def test_an_execute_is_retried_on_503_but_never_on_a_5xx_that_may_have_acted() -> None:
    """A POST (execute, no idempotency of its own) is sent again only after 429/503.
    Catches: a 500/502/504 or a CDN 520-524 re-sending an execute that may have run, or a 503
    (which says it did not act) raised."""
    policy = RetryPolicy()
    assert isinstance(retried(decide(policy, attempt(EXECUTE), answer(503))).reason, ServerError)
    for status in (500, 502, 504, 520, 521, 522, 523, 524):
        error = raised(decide(policy, attempt(EXECUTE), answer(status)))
        assert isinstance(error, ServerError) and error.status == status
        assert isinstance(decide(policy, attempt(GET), answer(status)), Retry)  # reads do retry


def test_retry_unsafe_retries_an_execute_on_a_5xx() -> None:
    """Catches: the retry_unsafe opt-in ignored by the decision."""
    step = decide(RetryPolicy(retry_unsafe=True), attempt(EXECUTE), answer(502))
    assert isinstance(step, Retry)


def test_a_status_that_is_not_transient_is_raised_at_once() -> None:
    """Catches: every error status retried (a 400 or a 501 gets the same answer again)."""
    assert isinstance(raised(decide(RetryPolicy(), attempt(GET), answer(400))), BadRequestError)
    assert raised_status(decide(RetryPolicy(), attempt(GET), answer(501))) == 501


def test_outcome_unknown_is_never_retried_for_an_execute() -> None:
    """Catches: an execute sent, then silent, re-sent (it may have run: never twice)."""
    unknown = OutcomeUnknownError("reset after sending", method="POST", path=EXECUTE.path)
    assert raised(decide(RetryPolicy(), attempt(EXECUTE), unknown)) is unknown
    assert isinstance(decide(RetryPolicy(), attempt(GET), unknown), Retry)  # a read may


def test_a_timeout_after_sending_an_execute_is_outcome_unknown() -> None:
    """Catches: a sent-then-timed-out execute retried, or raised as a plain timeout (the caller
    must know it may have run)."""
    sent = timeout(EXECUTE, sent=True)
    error = raised(decide(RetryPolicy(), attempt(EXECUTE), sent))
    assert type(error) is OutcomeUnknownError and error.__cause__ is sent
    assert isinstance(decide(RetryPolicy(), attempt(EXECUTE), timeout(EXECUTE, sent=False)), Retry)
    connection = APIConnectionError("refused", method="POST", path=EXECUTE.path)
    assert isinstance(decide(RetryPolicy(), attempt(EXECUTE), connection), Retry)  # never sent


def test_max_retries_is_the_number_of_retries_after_the_first_attempt() -> None:
    """Catches: an off-by-one in the retry budget (max_retries=3 is four attempts)."""
    policy = RetryPolicy(max_retries=3)
    assert isinstance(decide(policy, attempt(GET, 3), answer(502)), Retry)
    assert raised_status(decide(policy, attempt(GET, 4), answer(502))) == 502
    assert isinstance(decide(RetryPolicy(max_retries=0), attempt(GET), answer(502)), ServerError)


def test_a_wait_that_would_pass_the_deadline_ends_the_call() -> None:
    """Catches: a retry scheduled past the call's deadline (the deadline ignored), or one
    refused while time is left."""
    throttled = answer(503, retry_after="2")
    assert isinstance(decide(RetryPolicy(), attempt(GET, remaining=2.5), throttled), Retry)
    assert raised_status(decide(RetryPolicy(), attempt(GET, remaining=2.0), throttled)) == 503
    error = raised(decide(RetryPolicy(), attempt(GET, remaining=0.0), timeout(GET, sent=False)))
    assert type(error) is APITimeoutError


def test_the_deadline_ending_an_execute_sent_then_silent_is_outcome_unknown() -> None:
    """Catches: the deadline's final error skipping the sent-then-silent rule."""
    policy = RetryPolicy(retry_unsafe=True)  # retryable, so only the deadline stops it
    sent = timeout(EXECUTE, sent=True)
    error = raised(decide(policy, attempt(EXECUTE, remaining=0.0), sent))
    assert error is sent  # retry_unsafe: the caller said repeats are safe
    unknown = raised(decide(RetryPolicy(), attempt(EXECUTE, remaining=9.0), sent))
    assert type(unknown) is OutcomeUnknownError


def test_the_backoff_is_backoffs_expo_with_full_jitter() -> None:
    """The wait before retry n is ``full_jitter(expo)``'s n-th value, capped at backoff_max.
    Catches: a wait that does not grow with the attempt, is not jittered, or ignores the cap."""
    policy = RetryPolicy(max_retries=10, backoff_base=0.5, backoff_max=8.0)
    for number, raw in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (7, 8.0)]:
        random.seed(number)
        step = retried(decide(policy, attempt(GET, number), answer(502)))
        random.seed(number)
        assert step.delay == backoff.full_jitter(raw)
        waits = {
            retried(decide(policy, attempt(GET, number), answer(502))).delay for _ in range(50)
        }
        assert len(waits) > 1 and all(0 <= w <= raw for w in waits)


def test_a_2xx_is_returned_as_it_came() -> None:
    """Catches: a success judged as an error."""
    ok = answer(200)
    assert decide(RetryPolicy(), attempt(EXECUTE), ok) is ok


def test_a_delete_that_may_have_acted_answering_404_is_done() -> None:
    """Catches: a retried DELETE whose first attempt deleted the resource reported as
    NotFoundError; or the rule applied without a prior attempt that may have acted, or to a
    GET."""
    gone = decide(RetryPolicy(), attempt(DELETE, 2, maybe_acted=True), answer(404, x_id="r"))
    assert isinstance(gone, Response) and gone.status == 204 and gone.body == b""
    assert gone.headers == {"x-id": "r"}
    first = decide(RetryPolicy(), attempt(DELETE), answer(404))
    assert isinstance(first, NotFoundError)
    read = decide(RetryPolicy(), attempt(GET, 2, maybe_acted=True), answer(404))
    assert isinstance(read, NotFoundError)


@pytest.mark.parametrize(
    ("outcome", "acted"),
    [
        (answer(500), True),
        (answer(502), True),
        (answer(524), True),
        (answer(503), False),
        (answer(521), False),
        (answer(429), False),
        (answer(404), False),
        (OutcomeUnknownError("reset after sending"), True),
        (timeout(GET, sent=True), True),
        (timeout(GET, sent=False), False),
        (APIConnectionError("refused"), False),
    ],
)
def test_which_outcomes_may_have_acted(outcome: Response | AlloyError, acted: bool) -> None:
    """Catches: a 5xx that says "not handled" (503, a CDN's 521-523) counted as acting (a
    DELETE's later 404 would then be taken as done), or a sent-then-silent attempt not."""
    assert may_have_acted(outcome) is acted


def test_the_decision_module_does_no_io() -> None:
    """retry.py is sans-I/O. Catches: the decision reaching for asyncio, a transport or the
    pipeline (a decision that could only be tested on an event loop)."""
    path = Path(__file__).resolve().parent.parent / "alloy_async" / "retry.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    io = {"asyncio", "aiohttp", "socket", "transports", "_core", "transports.base"}
    assert names & io == set(), names
