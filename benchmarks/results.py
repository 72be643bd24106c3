"""What a benchmark run records: figures (every run, then median/min/max), the machine, and the load on it.

``Results`` is written to ``results.json`` after every section, so a run that dies
half-way still leaves what it measured. The README and the plot are made from that
file only (``report.py``), never from memory.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA = "rollback-drill-bench/1"


def summarize(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
    }


@dataclass
class Figure:
    """One measured quantity: every run's value, in the order taken."""

    id: str
    label: str
    unit: str
    group: str
    repos: int | None = None
    runs: list[float] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "unit": self.unit,
            "group": self.group,
            "repos": self.repos,
            "runs": [round(v, 4) for v in self.runs],
            **summarize(self.runs),
            "note": self.note,
        }


class LoadSampler:
    """The 1-minute load average every ``interval_s``, on a daemon thread: other people use this machine too."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self._start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def now(self) -> list[float]:
        return [round(v, 2) for v in os.getloadavg()]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((round(time.monotonic() - self._start, 1), round(os.getloadavg()[0], 2)))
            self._stop.wait(self.interval_s)

    def as_dict(self) -> dict[str, Any]:
        values = [v for _, v in self.samples]
        return {
            "cores": os.cpu_count(),
            "load_1m": summarize(values),
            "samples_t_s_load_1m": self.samples,
        }


class Results:
    """The figures of one run, the sections' load averages, and any section that failed."""

    def __init__(self, path: Path, *, quick: bool) -> None:
        self.path = path
        self.started = datetime.now(UTC)
        self._t0 = time.monotonic()
        self.quick = quick
        self.figures: dict[str, Figure] = {}
        self.sections: list[dict[str, Any]] = []
        self.errors: list[dict[str, str]] = []
        self.checks: list[str] = []
        self.machine: dict[str, Any] = {}
        self.versions: dict[str, Any] = {}
        self.params: dict[str, Any] = {}
        self.load = LoadSampler().start()

    def add(
        self, fid: str, value: float, *, label: str, unit: str, group: str, repos: int | None = None, note: str = ""
    ) -> None:
        figure = self.figures.setdefault(fid, Figure(fid, label, unit, group, repos, note=note))
        figure.runs.append(float(value))

    def section(self, name: str) -> _Section:
        return _Section(self, name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "started_at": self.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "finished_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_s": round(time.monotonic() - self._t0, 1),
            "quick": self.quick,
            "machine": self.machine,
            "versions": self.versions,
            "params": self.params,
            "load": {**self.load.as_dict(), "sections": self.sections},
            "figures": [f.as_dict() for f in self.figures.values()],
            "checks": self.checks,
            "errors": self.errors,
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=2) + "\n")
        tmp.replace(self.path)


class _Section:
    """Times a section, notes the load at its start and end, records its failure and lets the run go on."""

    def __init__(self, results: Results, name: str) -> None:
        self.results = results
        self.name = name

    def __enter__(self) -> None:
        self.start = time.monotonic()
        self.load_start = self.results.load.now()
        log(f"== {self.name} (load {self.load_start})")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object) -> bool:
        elapsed = round(time.monotonic() - self.start, 1)
        record = {
            "name": self.name,
            "elapsed_s": elapsed,
            "load_start": self.load_start,
            "load_end": self.results.load.now(),
        }
        self.results.sections.append(record)
        if exc is not None and isinstance(exc, Exception):
            self.results.errors.append({"section": self.name, "error": f"{type(exc).__name__}: {exc}"[:2000]})
            log(f"!! {self.name} failed after {elapsed}s: {type(exc).__name__}: {exc}")
        else:
            log(f"== {self.name} done in {elapsed}s")
        self.results.save()
        return exc is not None and isinstance(exc, Exception)  # KeyboardInterrupt still ends the run


def log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def _run(argv: list[str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({type(exc).__name__})"
    return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else "?"


def _meminfo_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def machine_info() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(kubectl: Path, project_root: Path) -> dict[str, Any]:
    from rollback_drill.toolchain import build  # noqa: PLC0415 - only once the venv is known to be there

    sha = _run(["git", "-C", str(project_root), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(project_root), "status", "--porcelain"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "rollback-drill": _dist("rollback-drill"),
        "git": f"{sha}{' (working tree has uncommitted changes)' if dirty else ''}",
        "kubernetes (apiserver, kubectl)": build.KUBERNETES_VERSION,
        "etcd": build.ETCD_VERSION,
        "kwok": build.KWOK_VERSION,
        "kubectl --client": _run([str(kubectl), "version", "--client"]),
        "kubernetes (python client)": _dist("kubernetes"),
        "psycopg": _dist("psycopg"),
        "pytest": _dist("pytest"),
        "pytest-bdd": _dist("pytest-bdd"),
        "matplotlib": _dist("matplotlib"),
        "docker": _run(["docker", "version", "--format", "{{.Server.Version}}"]),
        "go": _run(["go", "version"])
        if _run(["which", "go"]).startswith("/")
        else _run(["/usr/local/go/bin/go", "version"]),
    }
