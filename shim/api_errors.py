"""Errors of the HTTP API in the OpenAI shape, and how cluster errors map
onto HTTP statuses.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "size", "code": "invalid"}}

``code`` is the HydraMesh error code (PROTOCOL.md §4) where one applies, so
a client can tell a full cluster (``busy``) from the shim's own rate limit
(``rate_limited``); ``type`` is the OpenAI error class of the status.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import JSONResponse

from hydramesh.common.errors import ErrorCode

# Request fields whose names differ between the OpenAI body and a TASK.
OPENAI_PARAM = {"width": "size", "height": "size", "format": "output_format"}

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
          404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
          429: "rate_limit_error"}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.retry_after is not None:
            # delay-seconds is a whole number (RFC 9110 §10.2.3); round up.
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def from_cluster(code: ErrorCode, message: str, *, field: str | None, retry_after: float | None, model: str | None) -> ApiError:
    """The HTTP answer for a cluster's terminal ``error`` result."""
    if code is ErrorCode.INVALID:
        return ApiError(400, message, code=str(code), param=OPENAI_PARAM.get(field or "", field))
    if code is ErrorCode.BUSY:
        return ApiError(429, message, code=str(code), retry_after=retry_after if retry_after is not None else 1.0)
    if code is ErrorCode.UNKNOWN_MODEL:
        if model is not None:
            return ApiError(404, message, code=str(code), param="model")
        return ApiError(503, message, code="no_workers", retry_after=5.0)
    if code is ErrorCode.TIMEOUT:
        return ApiError(504, message, code=str(code))
    if code is ErrorCode.CANCELLED:
        return ApiError(503, message, code=str(code))
    # worker_failed, internal: the request was fine, a worker was not.
    return ApiError(502, message, code=str(code))
