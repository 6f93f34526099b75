"""The simulator's two kinds of error: a bad file at start, and a bad request at run time.

`SimulatorFileError` lists every problem found in the persona config, a dataset, a replay file
or a latency profile file, each naming the file, the line or key path and the bad value.
`pareto simulate` prints them and exits with status 2.

`SimulatedAPIError` is an HTTP error that the server returns in OpenAI's error envelope::

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": null}}
"""

from __future__ import annotations

from typing import Any


class SimulatorFileError(Exception):
    """Raised for simulator input files that cannot be used, with one sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class SimulatedAPIError(Exception):
    """An error returned to the client with `status` and an OpenAI-shaped body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        """Return the error envelope as a JSON-ready dict."""
        return error_body(self.message, self.error_type, self.code, self.param)


def error_body(
    message: str, error_type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """Build OpenAI's error envelope."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def bad_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> SimulatedAPIError:
    """Build a 400 `invalid_request_error`."""
    return SimulatedAPIError(400, message, param=param, code=code)


def show(value: object, limit: int = 80) -> str:
    """Format a value for an error message, cut to `limit` characters."""
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    return text if len(text) <= limit else text[: limit - 3] + "..."
