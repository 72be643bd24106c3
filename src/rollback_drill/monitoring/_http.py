"""JSON over HTTP for the Prometheus and Alertmanager APIs, with the errors named by what to do next."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from rollback_drill.monitoring.errors import MonitoringUnreachable, NotAMonitoringApi, QueryRejected

REQUEST_TIMEOUT_S = 10.0
"""One request's limit: a healthy local Prometheus answers in milliseconds, a team's in well under this."""

ERROR_BODY_LIMIT = 300
"""Characters of a refusal's body quoted in the error message."""


def request_json(
    method: str,
    url: str,
    *,
    what: str,
    fix: str,
    params: dict[str, str] | None = None,
    body: Any = None,
    timeout_s: float = REQUEST_TIMEOUT_S,
) -> Any:
    """Send one request and return its decoded JSON body (``None`` for an empty one).

    ``what`` names the API ("Prometheus", "Alertmanager") and ``fix`` says what to check when the
    URL answers but is not that API; both end up in the error message beside the URL.
    """
    full = url + ("?" + urlencode(params) if params else "")
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(full, data=data, method=method, headers=headers)  # noqa: S310 - http(s) URLs of the user's monitoring
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - same
            raw = response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace")
        if exc.code in {400, 422, 500}:  # 500: a reload that found a broken file
            raise QueryRejected(f"{what} at {url} refused {method} ({exc.code}): {_error_text(text)}") from None
        if exc.code in {502, 503, 504}:
            raise MonitoringUnreachable(
                f"{what} at {url} is not ready ({exc.code}); it may still be starting"
            ) from None
        raise NotAMonitoringApi(
            f"{what} at {url} answered {exc.code} to {method}: is this the {what} HTTP API? {fix}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitoringUnreachable(f"{what} at {url} did not answer ({reason}); {fix}") from None
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise NotAMonitoringApi(
            f"{what} at {url} answered with something that is not JSON ({raw[:80]!r}): {fix}"
        ) from None


def _error_text(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()[:ERROR_BODY_LIMIT]
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])[:ERROR_BODY_LIMIT]
    return text.strip()[:ERROR_BODY_LIMIT]
