"""What happened to one request or broadcast copy, as one bounded vocabulary.

Owns: ``Outcome``, the label every log line and metric uses for a request's fate. Errors carry their outcome
(routing/errors.py), so the proxy, the broadcaster and the metrics never spell these strings themselves.
Must not: depend on anything but the standard library.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """A request's fate; a receiver's 4003 is split by cause so an operator can tell a party's state from a network
    failure (suspended, planned and offline receivers and a missing endpoint are answered without contacting it)."""

    OK = "ok"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"
    REFUSED = "refused"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_RECEIVER = "unknown_receiver"
    RECEIVER_SUSPENDED = "receiver_suspended"
    RECEIVER_OFFLINE = "receiver_offline"
    RECEIVER_PLANNED = "receiver_planned"
    NO_ENDPOINT = "no_endpoint"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    OVERLOADED = "overloaded"
    #: A broadcast copy the recipient answered with an HTTP error status.
    ERROR = "error"

    @classmethod
    def of_status(cls, status: int) -> Outcome:
        """The outcome of an answer the receiver gave (its HTTP status)."""
        return cls.SERVER_ERROR if status >= 500 else cls.CLIENT_ERROR if status >= 400 else cls.OK


#: Outcomes a request to a receiver can have (the metrics pre-bind these).
REQUEST_OUTCOMES = tuple(o for o in Outcome if o is not Outcome.ERROR)
#: Outcomes of one broadcast copy or control-plane push.
DELIVERY_OUTCOMES = (Outcome.OK, Outcome.ERROR, Outcome.TIMEOUT, Outcome.UNREACHABLE)
