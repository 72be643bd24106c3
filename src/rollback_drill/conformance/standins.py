"""Stand-ins for the tools the runbook calls that the drill has no binary of: ``blocks``, ``slack-cli``,
``pagerduty`` and ``mail``.

The conformance run puts a small script of each name on the PATH of the shell that runs
a runbook command, and the script runs ``python -m rollback_drill.conformance.standins
TOOL ARGS...``. So ``echo "..." | mail -s "..." a@x,b@y`` runs as written: the pipe, the
quoting and the arguments are the shell's, and only the last hop is ours:

- ``blocks`` talks to FlowEngine through ``FlowEngineClient`` (the production FlowEngine,
  or staging with ``--env staging``) and prints its answers in the runbook's words
  (``enabled: false``, ``Quality Gates: 5/5 passed``), which is what the runbook's
  ``# Expected:`` lines are checked against;
- ``slack-cli``, ``pagerduty`` and ``mail`` deliver through the drill's real senders
  (Slack webhook, PagerDuty Events v2, SMTP) to the local notification sinks.

Where things are comes from ``RB_CONF_*`` environment variables the run sets (see
``StandinEnvironment``). Exit codes: 0 done, 1 the tool ran and the answer was a failure,
2 bad arguments or environment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn

from rollback_drill.errors import DrillError
from rollback_drill.evidence.redact import add_secret, redact_text
from rollback_drill.flowengine.client import FlowEngineClient, FlowResult
from rollback_drill.notify.messages import Kind, Message
from rollback_drill.notify.senders import (
    PagerDutyEventsSender,
    SendFailed,
    SlackWebhookSender,
    SmtpEndpoint,
    SmtpSender,
)
from rollback_drill.runbook.decision import decide_live
from rollback_drill.timing.clock import Clock
from rollback_drill.timing.wait import Deadline

TOOLS: Final = ("blocks", "slack-cli", "pagerduty", "mail")
FLOW_FILE: Final = "flow.json"
"""What ``blocks generate --output DIR`` writes into DIR, and ``blocks verify --path DIR`` reads."""
_DURATION: Final = re.compile(r"(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


@dataclass(frozen=True)
class StandinEnvironment:
    """Where the stand-ins send things; the run writes it as ``RB_CONF_*`` variables."""

    flowengine_urls: Mapping[str, str]
    """``production`` and ``staging`` FlowEngine URLs (``blocks --env NAME``; production by default)."""
    time_scale: float
    """Scales ``blocks test soak --duration`` (the drill's ``time_scale``)."""
    slack_webhook_url: str
    pagerduty_url: str
    pagerduty_routing_key: str
    pagerduty_dedup_key: str
    smtp_host: str
    smtp_port: int
    mail_from: str

    def variables(self) -> dict[str, str]:
        return {
            "RB_CONF_FLOWENGINE_URLS": json.dumps(dict(self.flowengine_urls)),
            "RB_CONF_TIME_SCALE": repr(self.time_scale),
            "RB_CONF_SLACK_WEBHOOK_URL": self.slack_webhook_url,
            "RB_CONF_PAGERDUTY_URL": self.pagerduty_url,
            "RB_CONF_PAGERDUTY_ROUTING_KEY": self.pagerduty_routing_key,
            "RB_CONF_PAGERDUTY_DEDUP_KEY": self.pagerduty_dedup_key,
            "RB_CONF_SMTP": f"{self.smtp_host}:{self.smtp_port}",
            "RB_CONF_MAIL_FROM": self.mail_from,
        }

    @classmethod
    def from_variables(cls, environ: Mapping[str, str]) -> StandinEnvironment:
        try:
            host, _, port = environ["RB_CONF_SMTP"].rpartition(":")
            urls = json.loads(environ["RB_CONF_FLOWENGINE_URLS"])
            found = cls(
                flowengine_urls={str(k): str(v) for k, v in urls.items()},
                time_scale=float(environ["RB_CONF_TIME_SCALE"]),
                slack_webhook_url=environ["RB_CONF_SLACK_WEBHOOK_URL"],
                pagerduty_url=environ["RB_CONF_PAGERDUTY_URL"],
                pagerduty_routing_key=environ["RB_CONF_PAGERDUTY_ROUTING_KEY"],
                pagerduty_dedup_key=environ["RB_CONF_PAGERDUTY_DEDUP_KEY"],
                smtp_host=host,
                smtp_port=int(port),
                mail_from=environ["RB_CONF_MAIL_FROM"],
            )
        except (KeyError, ValueError, AttributeError) as exc:
            _fail(
                f"the conformance run did not set up this stand-in ({type(exc).__name__}: {exc}); it runs only inside one"
            )
        for secret in (found.slack_webhook_url, found.pagerduty_routing_key):
            add_secret(secret)
        return found


class _Usage(Exception):
    """Bad arguments: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _Usage(f"{self.prog}: {message}")


def _fail(message: str, code: int = 2) -> NoReturn:
    print(redact_text(message), file=sys.stderr)
    raise SystemExit(code)


def parse_duration_s(text: str) -> float:
    """``2h``, ``30m``, ``1h30m``, ``45s``, ``90`` (seconds)."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = list(_DURATION.finditer(text))
    if not parts or "".join(p.group(0) for p in parts) != text.replace(" ", ""):
        raise _Usage(f"duration {text!r} is not like 2h, 30m, 1h30m or 45s")
    return sum(float(p.group("value")) * _UNIT_S[p.group("unit")] for p in parts)


# --- blocks -----------------------------------------------------------------------------------------


def _client(env: StandinEnvironment, name: str | None) -> FlowEngineClient:
    name = name or "production"
    url = env.flowengine_urls.get(name)
    if url is None:
        _fail(f"blocks: no FlowEngine for --env {name} (known: {', '.join(sorted(env.flowengine_urls))})")
    return FlowEngineClient(url, timeout_s=10)


def _print_flow(result: FlowResult, verbose: bool) -> None:
    if result.completed:
        print("✅ Flow completed successfully")
        print(f"Flow: {result.flow_id}")
        print(f"Duration: {result.duration_s:.1f}s" if result.duration_s is not None else "Duration: unknown")
        print(f"Cost: ${result.cost_usd:.2f}" if result.cost_usd is not None else "Cost: unknown")
        print(f"Quality Gates: {result.gates_passed}/{len(result.quality_gates)} passed")
        if verbose:
            for gate in result.quality_gates:
                print(f"  {'✅' if gate.passed else '❌'} {gate.name}")
    elif result.status == "refused":
        print(f"🚫 Flow refused: {result.reason}")
    else:
        print(f"❌ Flow failed: {result.cause}" + (f" ({result.reason})" if result.reason else ""))


def _blocks_generate(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="blocks generate")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--family", default="compliance")
    parser.add_argument("--block-type", default="attestation")
    parser.add_argument("--config")
    parser.add_argument("--output")
    parser.add_argument("--env")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    config: object = None
    if args.config:
        path = Path(args.config)
        if path.is_file():
            try:
                config = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                _fail(f"blocks generate: --config {args.config} is not JSON")
        else:
            print(f"blocks generate: {args.config} is not a file here; FlowEngine gets its name only", file=sys.stderr)
            config = {"file": args.config}
    result = _client(env, args.env).generate(args.repo, family=args.family, block_type=args.block_type, config=config)
    _print_flow(result, args.verbose)
    if args.output and result.flow_id is not None:
        directory = Path(args.output)
        directory.mkdir(parents=True, exist_ok=True)
        record = {"flow_id": result.flow_id, "repo": result.repo, "status": result.status}
        (directory / FLOW_FILE).write_text(json.dumps(record) + "\n", encoding="utf-8")
        print(f"Output: {directory / FLOW_FILE}")
    return 0 if result.completed else 1


def _blocks_verify(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="blocks verify")
    parser.add_argument("--path", required=True)
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--env")
    args = parser.parse_args(argv)
    record_path = Path(args.path) / FLOW_FILE if Path(args.path).is_dir() else Path(args.path)
    try:
        flow_id = int(json.loads(record_path.read_text(encoding="utf-8"))["flow_id"])
    except (OSError, ValueError, KeyError, TypeError):
        _fail(f"blocks verify: no flow recorded at {args.path} (run `blocks generate --output {args.path}` first)", 1)
    verification = _client(env, args.env).verify(flow_id, strict=args.strict)
    total = len(verification.gates)
    if verification.passed and verification.gates_passed == total:
        print(f"All {total} gates passed")
    else:
        print(f"{verification.gates_passed} of {total} gates passed")
    for gate in verification.gates:
        if not gate.passed:
            print(f"  ❌ {gate.name}")
    print(f"Verification: {'passed' if verification.passed else 'FAILED'} ({'strict' if args.strict else 'lenient'})")
    return 0 if verification.passed else 1


def _blocks_config_show(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="blocks config show")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--env")
    args = parser.parse_args(argv)
    config = _client(env, args.env).repo_config(args.repo)
    print(f"repo: {config.repo}")
    print(f"enabled: {'true' if config.enabled else 'false'}")
    if config.reason:
        print(f'reason: "{config.reason}"')
    return 0


def _blocks_metrics_query(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="blocks metrics query")
    parser.add_argument("--metric", required=True)
    parser.add_argument("--last", default="1h")
    parser.add_argument("--group-by")
    parser.add_argument("--sort", choices=("asc", "desc"), default="desc")
    parser.add_argument("--env")
    args = parser.parse_args(argv)
    parse_duration_s(args.last)
    samples = _client(env, args.env).metric_samples(args.metric)
    totals: dict[str, float] = {}
    for sample in samples:
        key = (sample.label(args.group_by) if args.group_by else args.metric) or "(none)"
        totals[key] = totals.get(key, 0.0) + sample.value
    print(f"# {args.metric} by {args.group_by or 'total'}, last {args.last} (counters since FlowEngine started)")
    for key, value in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]) if args.sort == "desc" else (kv[1], kv[0])):
        print(f"{key}\t{value:g}")
    return 0


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def _blocks_test_soak(env: StandinEnvironment, argv: Sequence[str], *, clock: Clock | None = None) -> int:
    parser = _Parser(prog="blocks test soak")
    parser.add_argument("--env", default="staging")
    parser.add_argument("--repos", required=True)
    parser.add_argument("--duration", default="2h")
    parser.add_argument("--concurrency", type=int, default=5)
    args = parser.parse_args(argv)
    client = _client(env, args.env)
    repos = [r.strip() for r in args.repos.split(",") if r.strip()]
    if not repos or args.concurrency < 1:
        _fail("blocks test soak: --repos needs at least one repo and --concurrency at least 1")
    documented_s = parse_duration_s(args.duration)
    duration_s = documented_s * env.time_scale
    soak_window = Deadline(duration_s, clock)
    results: list[FlowResult] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(offset: int) -> None:
        turn = offset
        while not soak_window.passed():
            repo = repos[turn % len(repos)]
            turn += 1
            try:
                result = client.generate(repo)
            except DrillError as exc:
                with lock:
                    errors.append(str(exc))
                continue
            with lock:
                results.append(result)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    completed = [r for r in results if r.completed]
    failed = len(results) - len(completed) + len(errors)
    total = len(results) + len(errors)
    print(
        f"Soak on {args.env}: {', '.join(repos)}, concurrency {args.concurrency}, "
        f"{duration_s:.1f}s ({args.duration} x time scale {env.time_scale:g})"
    )
    print(f"Flows: {total} ({failed} failed)")
    print(f"Success rate: {100.0 * len(completed) / total:.1f}%" if total else "Success rate: no flows")
    p95 = _percentile([r.duration_s for r in completed if r.duration_s is not None], 0.95)
    print(f"P95 latency: {p95:.1f}s" if p95 is not None else "P95 latency: no completed flow")
    active = client.incidents()
    causes = sorted({str(r.cause or r.reason) for r in results if not r.completed} | set(errors))
    if not failed and not active:
        print("Zero recurrence of incident symptoms")
    else:
        symptoms = [f"active injection {i.name}" for i in active] + causes
        print(f"Incident symptoms recurred: {'; '.join(symptoms)}")
    return 0


def _blocks_test_rollback(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="blocks test rollback")
    parser.add_argument("--env", default="staging")
    parser.add_argument("--simulate-incident", required=True)
    parser.add_argument("--participants", default="")
    args = parser.parse_args(argv)
    client = _client(env, args.env)
    participants = [p for p in args.participants.split(",") if p]
    print(f"Rollback drill on {args.env}: incident {args.simulate_incident}, participants {', '.join(participants)}")
    started = time.monotonic()
    record = client.inject(args.simulate_incident)
    try:
        decision = decide_live(client)
        detected_s = time.monotonic() - started
        print(f"Incident injected: {record.name} on {len(record.repos)} repo(s)")
        print(f"Time to detect incident: {detected_s:.2f}s (decision {decision.priority}: {decision.action})")
        print(
            "Time to initiate, complete and verify the rollback: measured by the full drill, "
            f"`rollback-drill run --incident {args.simulate_incident}`"
        )
    finally:
        client.clear_incidents()
    return 0 if decision.rolls_back else 1


_BLOCKS: Final = {
    ("config", "show"): _blocks_config_show,
    ("generate",): _blocks_generate,
    ("verify",): _blocks_verify,
    ("metrics", "query"): _blocks_metrics_query,
    ("test", "soak"): _blocks_test_soak,
    ("test", "rollback"): _blocks_test_rollback,
}


def blocks(env: StandinEnvironment, argv: Sequence[str]) -> int:
    for words, handler in _BLOCKS.items():
        if tuple(argv[: len(words)]) == words:
            return handler(env, argv[len(words) :])
    known = ", ".join(" ".join(w) for w in _BLOCKS)
    _fail(f"blocks: `{' '.join(argv[:2])}` is not one of: {known}")


# --- notifications ----------------------------------------------------------------------------------


def _kind(text: str) -> Kind:
    return "completion-notice" if re.search(r"\bcomplete", text, re.IGNORECASE) else "incident-alert"


def slack_cli(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="slack-cli")
    parser.add_argument("action", choices=("post",))
    parser.add_argument("--channel", "-c", required=True)
    parser.add_argument("--message", "-m", required=True)
    args = parser.parse_args(argv)
    channel = args.channel if args.channel.startswith("#") else f"#{args.channel}"
    message = Message(_kind(args.message), "slack", (channel,), "", args.message)
    SlackWebhookSender(env.slack_webhook_url).deliver(message)
    print(f"posted to {channel} ({len(args.message)} characters)")
    return 0


def pagerduty(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="pagerduty")
    parser.add_argument("action", choices=("trigger", "acknowledge", "resolve"))
    parser.add_argument("--severity", default="critical")
    parser.add_argument("--title", default="")
    parser.add_argument("--details", default="")
    args = parser.parse_args(argv)
    try:
        sender = PagerDutyEventsSender(
            env.pagerduty_url, env.pagerduty_routing_key, dedup_key=env.pagerduty_dedup_key, severity=args.severity
        )
    except ValueError as exc:
        _fail(f"pagerduty: {exc}", 1)
    payload = {"event_action": args.action, "severity": args.severity}
    message = Message("incident-alert", "pagerduty", ("incident-commander",), args.title, args.details, payload)
    sent = sender.deliver(message)
    print(f"{args.action}: accepted (HTTP {sent.status}, dedup key {sent.reference})")
    return 0


def mail(env: StandinEnvironment, argv: Sequence[str]) -> int:
    parser = _Parser(prog="mail")
    parser.add_argument("-s", "--subject", default="")
    parser.add_argument("recipients", nargs="+")
    args = parser.parse_args(argv)
    recipients = tuple(r.strip() for arg in args.recipients for r in arg.split(",") if r.strip())
    body = sys.stdin.read()
    message = Message(_kind(args.subject + body), "email", recipients, args.subject, body)
    sender = SmtpSender(SmtpEndpoint(env.smtp_host, env.smtp_port, "none"), sender=env.mail_from)
    sent = sender.deliver(message)
    print(f"mailed {len(recipients)} recipient(s): {', '.join(recipients)} ({sent.reference})")
    return 0


_TOOLS: Final = {"blocks": blocks, "slack-cli": slack_cli, "pagerduty": pagerduty, "mail": mail}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _TOOLS:
        _fail(f"usage: python -m rollback_drill.conformance.standins {{{','.join(TOOLS)}}} ARGS...")
    env = StandinEnvironment.from_variables(os.environ)
    try:
        return _TOOLS[args[0]](env, args[1:])
    except _Usage as exc:
        _fail(str(exc))
    except SendFailed as exc:
        _fail(f"{args[0]}: not delivered: {exc}", 1)
    except DrillError as exc:
        _fail(f"{args[0]}: {exc}", 1)


if __name__ == "__main__":
    sys.exit(main())
