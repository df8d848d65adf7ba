"""What the service refuses, as exceptions the API turns into HTTP answers.

::

    ServiceError            the request cannot be done (its ``status`` is the HTTP answer)
    ├── BadRequest          400: a body, a field or an option that is wrong
    ├── Unauthorized        401: no token, or not a valid one
    ├── Forbidden           403: a valid token without the scope the route needs
    ├── NotFound            404: no such run (or inventory)
    └── Conflict            409: the run is not in a state that allows it, a wrong plan hash,
                            an expired plan
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["BadRequest", "Conflict", "Forbidden", "NotFound", "ServiceError", "Unauthorized"]


class ServiceError(Exception):
    """A request the service refuses; ``str()`` is the message the client reads."""

    status: ClassVar[int] = 500

    def __init__(self, message: str, *, problems: tuple[str, ...] = ()) -> None:
        """``problems``: every line that explains it (an inventory's errors, as ``validate``)."""
        super().__init__(message)
        self.problems = problems


class BadRequest(ServiceError):
    """The request is malformed (400)."""

    status = 400


class Unauthorized(ServiceError):
    """No valid bearer token (401)."""

    status = 401


class Forbidden(ServiceError):
    """The token lacks the route's scope (403)."""

    status = 403


class NotFound(ServiceError):
    """No such thing (404)."""

    status = 404


class Conflict(ServiceError):
    """Not now: the run's state, its plan's hash or its plan's age forbids it (409)."""

    status = 409
