"""Run the FlowEngine simulator as its own process.

    ROLLBACK_DRILL_TASKDB_DSN=postgresql://... \\
    python -m rollback_drill.flowengine --port 0 --dsn-env ROLLBACK_DRILL_TASKDB_DSN \\
        --pilot-repo compliance-service --state-file /path/flowengine-state.json \\
        --allowlist-source file:/path/allowlist.json

The DSN is read from the environment variable that ``--dsn-env`` names, never from the
command line (argv is visible in ``ps``). When the simulator listens, one JSON line
``{"url": ..., "pid": ...}`` goes to stdout; the log lines go to stderr. SIGTERM (or
SIGINT) stops it cleanly, exit code 0.

``--state-file`` is the simulator's own file: the active injections, so that a restarted
simulator keeps them. ``--allowlist-source`` says where the allowlist view comes from
(``allowlist_sources``):

- ``static`` (default): ``--available-pods`` pods serving the pilot plus ``--repos``;
- ``file:PATH``: a JSON file ``{"available_pods": N, "repos": [...]}``, read again when it changes;
- ``env:VAR``: this process is one FlowEngine pod, serving the pilot plus the repos of its own
  ``REPO_ALLOWLIST`` (a comma-separated ``VAR``), as a real replica does;
- ``MODULE:FACTORY``: ``FACTORY(**kwargs)`` returns the source (a callable giving an
  ``AllowlistView``), with kwargs from ``--allowlist-arg KEY=VALUE``; this is how the
  cluster-backed source (a Kubernetes watch) plugs in.

In a pod (``--in-pod``, on the ``kind`` target) it serves on the pod's own addresses for its
Service, keeps injections in TaskDB so that every replica sees them (``--shared-injections``),
and exits with status 1 at start while ``FLOWENGINE_FAULT`` is ``crash-loop`` (the pod's
fault annotation, through the downward API): a real crash loop, restarts and back-off included.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from rollback_drill.errors import InputError
from rollback_drill.flowengine.allowlist_sources import allowlist_source
from rollback_drill.flowengine.simulator import Simulator
from rollback_drill.timing.wait import hold

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

DEFAULT_DSN_ENV = "ROLLBACK_DRILL_TASKDB_DSN"
DEFAULT_PILOT = "compliance-service"
POD_DRAIN_S = 8.0
"""After SIGTERM a pod keeps serving this long (its terminationGracePeriodSeconds is longer): kube-proxy
removes a terminating pod from the Service within seconds, longer on a busy node."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rollback_drill.flowengine",
        description="The FlowEngine reference simulator (RB-LAUNCH-002 drills), on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument(
        "--dsn-env", default=DEFAULT_DSN_ENV, metavar="VAR", help="environment variable holding the TaskDB DSN"
    )
    parser.add_argument("--pilot-repo", default=DEFAULT_PILOT, metavar="REPO")
    parser.add_argument(
        "--state-file", type=Path, metavar="PATH", help="where active injections are kept across restarts"
    )
    parser.add_argument(
        "--allowlist-source",
        default="static",
        metavar="SPEC",
        help="static | file:PATH | MODULE:FACTORY (see module doc)",
    )
    parser.add_argument(
        "--allowlist-arg", action="append", default=[], metavar="KEY=VALUE", help="keyword argument for MODULE:FACTORY"
    )
    parser.add_argument("--repos", default="", help="static source: repos served besides the pilot, comma-separated")
    parser.add_argument("--available-pods", type=int, default=3, help="static source: available pods")
    parser.add_argument("--seed", type=int, help="seed for simulated durations and costs")
    parser.add_argument("--flow-latency-s", type=float, default=0.05, help="real time each flow takes")
    parser.add_argument("--no-injection", action="store_true", help="refuse incident injection (403)")
    parser.add_argument("--quiet", action="store_true", help="do not copy log lines to stderr")
    parser.add_argument(
        "--in-pod",
        action="store_true",
        help="run as a FlowEngine pod: serve on the pod's addresses (only inside a Kubernetes pod)",
    )
    parser.add_argument(
        "--shared-injections", action="store_true", help="keep injections in TaskDB, shared by every pod"
    )
    parser.add_argument(
        "--cri-log",
        type=Path,
        metavar="PATH",
        help="also append log lines in the CRI format kubelets write, for kwok to serve as `kubectl logs`",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    dsn = os.environ.get(args.dsn_env)
    if not dsn:
        print(f"flowengine simulator: the TaskDB DSN is not set; export {args.dsn_env}=postgresql://USER:PASSWORD@HOST:PORT/DB",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.in_pod and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        print("flowengine simulator: --in-pod is for a container of a Kubernetes pod; elsewhere it serves on "
              "127.0.0.1 only (drop --in-pod)", file=sys.stderr)  # fmt: skip
        return 2
    fault = os.environ.get("FLOWENGINE_FAULT", "")
    if fault == "crash-loop":
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"{stamp} CRITICAL flowengine cannot start: staged fault {fault!r} (the pod's fault annotation)",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - the signal API's signature
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    cri_log = args.cri_log.open("a", buffering=1) if args.cri_log else None

    def to_stderr(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)
        if cri_log is not None:
            # <RFC 3339 time> <stream> <F: a full line> <message>, as kubectl logs expects from a kubelet.
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            cri_log.write(f"{stamp} stdout F {line}\n")

    try:
        source = allowlist_source(
            args.allowlist_source,
            pilot=args.pilot_repo,
            repos=args.repos,
            available_pods=args.available_pods,
            args=args.allowlist_arg,
        )
        simulator = Simulator(
            args.pilot_repo,
            dsn,
            source,
            rng=random.Random(args.seed),  # noqa: S311 - simulated durations, not secrets
            flow_latency_s=args.flow_latency_s,
            accept_injection=not args.no_injection,
            port=args.port,
            state_file=args.state_file,
            log_sink=None if args.quiet and cri_log is None else to_stderr,
            in_pod=args.in_pod,
            shared_injections=args.shared_injections,
        )
        url = simulator.start()
    except (InputError, OSError) as exc:
        print(f"flowengine simulator: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"url": url, "pid": os.getpid()}), flush=True)
    try:
        stop.wait()  # a signal handler sets it; the wait is interruptible on POSIX
        if args.in_pod:
            # Endpoints drop a terminating pod within a second or two; until then requests still arrive here.
            simulator.log("INFO", f"terminating: serving {POD_DRAIN_S:.0f} s more while the Service forgets this pod")
            hold(POD_DRAIN_S, describe="the pod's drain after SIGTERM")
    finally:
        simulator.log("INFO", "stopping on signal")
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
