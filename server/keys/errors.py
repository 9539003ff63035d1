"""Errors the server's hierarchy (`server.errors`) lacks yet: 409 Conflict.

TokenwireError
└── Conflict        409 ALREADY_EXISTS  (creating what exists)
"""

from __future__ import annotations

import grpc

from server.errors import TokenwireError


class Conflict(TokenwireError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409
    type = "invalid_request_error"
    code = "already_exists"
