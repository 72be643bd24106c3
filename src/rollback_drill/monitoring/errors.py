"""What can go wrong with Prometheus and Alertmanager, grouped by what the caller does next."""

from __future__ import annotations

from rollback_drill.errors import InputError, RetryableError, ToolchainError


class MonitoringUnreachable(RetryableError):
    """Prometheus or Alertmanager did not answer (refused, reset, timed out): worth another try."""


class NotAMonitoringApi(InputError):
    """Something answered at the URL, but not the Prometheus or Alertmanager HTTP API: the URL is wrong."""


class QueryRejected(InputError):
    """Prometheus or Alertmanager answered, and refused the request (a bad query, a bad silence)."""


class MonitoringProcessFailed(ToolchainError):
    """A Prometheus, Alertmanager or kube-state-metrics process is missing, or exited instead of serving."""
