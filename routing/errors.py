"""Typed OCPI failures. Raised anywhere below ``hub/``; only ``hub/envelope.py`` turns them into bytes.

Owns: one exception class per OCPI status code the hub emits itself (status_codes §5). The HTTP status that
goes with each lives in the envelope table, not here. Must not: build responses or do I/O.
"""

from __future__ import annotations

from typing import ClassVar

from routing.outcome import Outcome


class OcpiError(Exception):
    """Failure that ends as an OCPI envelope."""

    ocpi_status: ClassVar[int] = 3000
    #: What the request's log line and metrics call this failure.
    outcome: ClassVar[Outcome] = Outcome.SERVER_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(OcpiError):
    """2000: generic client error."""

    ocpi_status = 2000
    outcome = Outcome.CLIENT_ERROR


class InvalidParametersError(OcpiError):
    """2001: invalid or missing parameters."""

    ocpi_status = 2001
    outcome = Outcome.CLIENT_ERROR


class MalformedBodyError(InvalidParametersError):
    """2001 with HTTP 400: the body is not the JSON the endpoint needs (status_codes §5)."""


class BodyTooLargeError(InvalidParametersError):
    """2001 with HTTP 413: the body exceeds ``max_body_size``."""


class UnauthorizedError(ClientError):
    """HTTP 401: missing or unknown token (transport_and_format §4.1.2)."""

    outcome = Outcome.REFUSED


class ForbiddenError(ClientError):
    """HTTP 403: a known platform that may not do this now (suspended)."""

    outcome = Outcome.REFUSED


class NotFoundError(ClientError):
    """HTTP 404: no such endpoint or object."""


class UnknownObjectError(ClientError):
    """HTTP 404: a GET of an object the hub holds no copy of (status_codes §5: a GET of a missing resource)."""


class UnknownLocationError(UnknownObjectError):
    """2003 Unknown Location (status_codes §5.2)."""

    ocpi_status = 2003


class UnknownTokenError(UnknownObjectError):
    """2004 Unknown Token (status_codes §5.2)."""

    ocpi_status = 2004


class RateLimitedError(ClientError):
    """HTTP 429 with Retry-After: the platform is over the rate limit the operator set for it."""

    outcome = Outcome.RATE_LIMITED

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MethodNotAllowedError(ClientError):
    """HTTP 405: e.g. credentials POST by a registered platform (credentials §7.2)."""


class ServerError(OcpiError):
    """3000: generic server error (also: registry unavailable)."""

    ocpi_status = 3000


class ServiceUnavailableError(ServerError):
    """3000 with HTTP 503: the hub cannot take the request now (shutting down); the requester may retry."""


class ClientApiError(OcpiError):
    """3001: unable to use the client's API (its versions or details cannot be fetched)."""

    ocpi_status = 3001


class UnsupportedVersionError(OcpiError):
    """3002: no mutual OCPI version."""

    ocpi_status = 3002


class NoMatchingEndpointsError(OcpiError):
    """3003: the client lacks the endpoints its roles need."""

    ocpi_status = 3003


class HubError(OcpiError):
    """4000: generic hub error."""

    ocpi_status = 4000


class UnknownReceiverError(HubError):
    """4001: the OCPI-to party is not known to the hub."""

    ocpi_status = 4001
    outcome = Outcome.UNKNOWN_RECEIVER


class ForwardTimeoutError(HubError):
    """4002: the receiver did not answer within the forwarding timeout."""

    ocpi_status = 4002
    outcome = Outcome.TIMEOUT


class ReceiverUnreachableError(HubError):
    """4003: the receiver could not be reached (refused, reset, unresolvable, closed mid-answer)."""

    ocpi_status = 4003
    outcome = Outcome.UNREACHABLE


class ReceiverSuspendedError(ReceiverUnreachableError):
    """4003 without contacting it: the operator suspended the receiver."""

    outcome = Outcome.RECEIVER_SUSPENDED


class ReceiverOfflineError(ReceiverUnreachableError):
    """4003 without contacting it: the receiver failed its liveness checks (OFFLINE)."""

    outcome = Outcome.RECEIVER_OFFLINE


class ReceiverPlannedError(ReceiverUnreachableError):
    """4003 without contacting it: the receiver is declared but has not registered yet (PLANNED)."""

    outcome = Outcome.RECEIVER_PLANNED


class NoEndpointError(ReceiverUnreachableError):
    """4003 without contacting it: the receiver publishes no endpoint for that module and interface role."""

    outcome = Outcome.NO_ENDPOINT


class OverloadedError(ReceiverUnreachableError):
    """4003 at once: too many requests to that receiver are pending at the hub (a circuit breaker, not a queue)."""

    outcome = Outcome.OVERLOADED
