"""The embedded Prometheus: its configuration, start, reload and stop, all on 127.0.0.1."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rollback_drill.monitoring import process
from rollback_drill.monitoring._http import request_json
from rollback_drill.monitoring.promql import PrometheusClient
from rollback_drill.monitoring.rules import RULE_FILE_SUFFIX
from rollback_drill.ports import free_port
from rollback_drill.timing.wait import wait_until

PROMETHEUS_BINARY = Path("/usr/bin/prometheus")
RELOAD_TIMEOUT_S = 15.0
"""A reload of a handful of rule files takes milliseconds; the rest is a busy machine."""


@dataclass(frozen=True)
class PrometheusSettings:
    """What the embedded Prometheus scrapes and evaluates, and whom it alerts."""

    scrape_targets: dict[str, tuple[str, ...]]
    """Job name -> ``host:port`` targets (all on 127.0.0.1)."""
    alertmanager: str
    """``host:port`` of the Alertmanager that gets the alerts."""
    scrape_interval_s: float = 1.0
    """A drill scales its windows down; a 1 s scrape lets a rule fire within seconds of the incident."""
    evaluation_interval_s: float = 1.0
    """Same reason as ``scrape_interval_s``."""
    external_labels: dict[str, str] = field(default_factory=dict)
    alert_resend_delay_s: float | None = None
    """How often firing alerts are re-sent to Alertmanager (Prometheus's default: 1 m). An alert whose rule is
    removed lives on in Alertmanager for four of these; a drill that re-seeds its rules wants that short."""


@dataclass(frozen=True)
class Prometheus:
    server: process.ServerProcess
    directory: Path
    rules_dir: Path

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> PrometheusClient:
        return PrometheusClient(self.url)


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def config(settings: PrometheusSettings, rules_dir: Path) -> dict[str, Any]:
    """``prometheus.yml``: the rule files of ``rules_dir``, the scrape jobs, alerting to the Alertmanager."""
    global_config: dict[str, Any] = {
        "scrape_interval": _duration(settings.scrape_interval_s),
        "evaluation_interval": _duration(settings.evaluation_interval_s),
    }
    if settings.external_labels:
        global_config["external_labels"] = dict(settings.external_labels)
    return {
        "global": global_config,
        "rule_files": [str(rules_dir / f"*{RULE_FILE_SUFFIX}")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [settings.alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]}
            for job, targets in sorted(settings.scrape_targets.items())
        ],
    }


def start(settings: PrometheusSettings, directory: Path, *, port: int | None = None) -> Prometheus:
    """Write the configuration under ``directory`` and start Prometheus on 127.0.0.1 (a free port unless given)."""
    directory.mkdir(parents=True, exist_ok=True)
    rules_dir = directory / "rules"
    rules_dir.mkdir(exist_ok=True)
    config_file = directory / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config(settings, rules_dir), sort_keys=False))
    listen = f"{process.LOOPBACK}:{port or free_port()}"
    argv = [
        str(PROMETHEUS_BINARY),
        f"--config.file={config_file}",
        f"--web.listen-address={listen}",
        f"--storage.tsdb.path={directory / 'data'}",
        "--web.enable-lifecycle",
        # Links in alerts and pages (generatorURL, client_url) name the loopback address, not the host name.
        f"--web.external-url=http://{listen}",
    ]
    if settings.alert_resend_delay_s is not None:
        argv.append(f"--rules.alert.resend-delay={_duration(settings.alert_resend_delay_s)}")
    server = process.start(
        "prometheus",
        argv,
        url=f"http://{listen}",
        ready_url=f"http://{listen}/-/ready",
        log=directory / "prometheus.log",
        cwd=directory,
    )
    return Prometheus(server, directory, rules_dir)


def _loaded_files(prometheus: Prometheus) -> set[str]:
    return {Path(group.file).name for group in prometheus.client().rules()}


def reload(prometheus: Prometheus, timeout_s: float = RELOAD_TIMEOUT_S) -> set[str]:
    """``POST /-/reload``, then wait until ``/api/v1/rules`` holds exactly the rule files on disk.

    A rule file without groups loads nothing, so only files with at least one group are expected.
    Returns the names of the loaded files.
    """
    request_json("POST", prometheus.url + "/-/reload", what="Prometheus", fix="start it with --web.enable-lifecycle")
    expected = {
        path.name
        for path in prometheus.rules_dir.glob(f"*{RULE_FILE_SUFFIX}")
        if (yaml.safe_load(path.read_text()) or {}).get("groups")
    }

    def reflects() -> set[str] | None:
        loaded = _loaded_files(prometheus)
        return (loaded or {"(none)"}) if loaded == expected else None

    wait_until(
        reflects,
        timeout_s=timeout_s,
        describe=f"Prometheus at {prometheus.url} to load the rule files {sorted(expected)}",
        hint=f"a rule file it cannot parse stays unloaded; see {prometheus.server.log} and `promtool check rules`",
    )
    return expected


def stop(prometheus: Prometheus) -> bool:
    return process.stop(prometheus.server)
