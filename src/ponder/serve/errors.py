"""Errors in OpenAI's JSON shape, so any OpenAI client shows them as it shows OpenAI's own.

``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` with the HTTP status
that says who is at fault: 4xx the caller (bad body, unknown model, bad key, limits), 5xx the
upstream engine or ponder (502 the engine failed, 504 it did not answer in time).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

# OpenAI's error types by status (what its own API sends).
_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
}


class ApiError(Exception):
    """A request that ends with an error response; raised anywhere in a route."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else "api_error")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        headers = {}
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, round(self.retry_after)))
        return JSONResponse(self.body(), status_code=self.status, headers=headers)
