"""A game day: people run RB-LAUNCH-002 by hand; the drill injects, announces, watches, times and records.

``run_gameday`` injects the incident and rolls nothing back. It announces the
runbook's steps one at a time with their budgets and commands, and marks a step
verified only when the state the runbook expects is observed (``watch``). A step
is announced when the previous one is verified, when a participant types
``skip``, or when ``step_timeout_s`` passes; a step left behind keeps being
watched until the end. Participants type ``ack ROLE`` to acknowledge the current
step. Ctrl-C ends the game day as ``aborted``, with a complete bundle.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import re
import shutil
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import IO, Any

from rollback_drill.config import DrillConfig, load_config
from rollback_drill.environment import EnvironmentState
from rollback_drill.errors import InputError
from rollback_drill.evidence.bundle import load_evidence
from rollback_drill.evidence.finalize import finalize_bundle
from rollback_drill.evidence.history import HistoryEntry, load_history
from rollback_drill.evidence.recorder import Recorder, format_utc
from rollback_drill.evidence.redact import add_secret
from rollback_drill.flowengine.client import FlowEngineClient
from rollback_drill.flowengine.incidents import CATALOGUE
from rollback_drill.gameday.plan import LOCAL_HINTS, STEP_IDS, STEPS, GamedayStep, runbook_commands, shell_file
from rollback_drill.gameday.watch import Observation, WatchContext, Watcher
from rollback_drill.runbook.actions import Runbook
from rollback_drill.runbook.drill import drill_metadata
from rollback_drill.taskdb.providers import TaskDB
from rollback_drill.taskdb.schema import ROLLBACK_FILE, migration_sql
from rollback_drill.timing.clock import Clock, SystemClock
from rollback_drill.timing.wait import hold, poll_until
from rollback_drill.world import incidents
from rollback_drill.world.seed import read_world, seed_world

ENV_FILE_NAME = "gameday.env"
STATUS_PAGE_TOKEN_BYTES = 16
INPUT_POLL_S = 0.1
"""How often a waiting game day looks for a participant's line: quick enough that an ack feels immediate."""
_STEP_ID_RE = re.compile(r"^(pre-[1-3]|step-[1-8])$")


@dataclass(frozen=True)
class GamedayResult:
    verdict: str
    bundle_dir: Path
    unverified: tuple[str, ...]


@dataclass
class _StepState:
    step: GamedayStep
    announced_mono: float | None = None
    announced_at: str | None = None
    verified_mono: float | None = None
    verified_at: str | None = None
    skipped_by_participant: bool = False
    timed_out: bool = False
    out_of_order: bool = False
    last: Observation | None = None

    @property
    def verified(self) -> bool:
        return self.verified_mono is not None


@dataclass
class _Game:
    """Everything the loop keeps between polls."""

    steps: dict[str, _StepState]
    ctx: WatchContext = field(default_factory=WatchContext)
    current: int = -1
    acks: list[dict[str, Any]] = field(default_factory=list)
    ended_by: str | None = None


def _say(out: IO[str], text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s"


def _reader(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    """Participants' input, line by line, on its own thread (the loop must keep watching while nobody types)."""
    try:
        for line in iter(stream.readline, ""):
            lines.put(line.strip())
    except (OSError, ValueError):
        pass
    lines.put(None)


def _world_needs_reset(runbook: Runbook, phase: int) -> bool:
    config = runbook.config
    world = read_world(runbook.api, config, runbook.taskdb, phase)
    expected_rules = {f"{repo}-alerts" for repo in config.expanded_for(phase)}
    return (
        world.allowlist != config.allowlist_for(phase)
        or world.replicas != config.replicas_for(phase)
        or not expected_rules <= set(world.alert_rules)
        or world.schema_version == config.schema.pilot_version
    )


def _env_variables(
    state: EnvironmentState, db: TaskDB, flowengine_url: str, tmp_dir: Path, status_page_token: str
) -> dict[str, str]:
    sinks = state.services["sinks"]
    http_url = str(sinks["http_url"]).rstrip("/")
    kubectl = ensure_kubectl()
    rollback_sql = tmp_dir.parent / "rollback_to_pilot.sql"
    rollback_sql.write_text(migration_sql(ROLLBACK_FILE))
    return {
        "KUBECONFIG": str(state.kubeconfig),
        "PATH": f"{Path(kubectl).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "KUBECTL": str(kubectl),
        "FLOWENGINE_URL": flowengine_url,
        "PGHOST": db.host,
        "PGPORT": str(db.port),
        "PGDATABASE": db.database,
        "PGUSER": db.user,
        "PGPASSWORD": db.password,
        "ROLLBACK_SQL": str(rollback_sql),
        "GAMEDAY_TMP": str(tmp_dir),
        "SLACK_WEBHOOK_URL": f"{http_url}/services/T0GAMEDAY/B0GAMEDAY/gameday",
        "PAGERDUTY_EVENTS_URL": f"{http_url}/v2/enqueue",
        "STATUS_PAGE_URL": f"{http_url}/api/incidents",
        "STATUS_PAGE_API_KEY": status_page_token,
        "SMTP_HOST": str(sinks.get("smtp_host", "127.0.0.1")),
        "SMTP_PORT": str(sinks["smtp_port"]),
    }


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    path.chmod(0o600)


def _is_gameday(entry: HistoryEntry) -> bool:
    if not entry.bundle:
        return False
    try:
        return load_evidence(Path(entry.bundle)).get("mode") == "gameday"
    except Exception:  # noqa: BLE001 - a bundle moved or removed since: count it as what it most likely was
        return False


def compare_with_history(steps: list[dict[str, Any]], history: list[HistoryEntry]) -> list[dict[str, Any]]:
    """Each game-day step beside the automated drills' times for it (passed drills only)."""
    automated = [e for e in history if e.verdict == "pass" and not _is_gameday(e)]
    rows = []
    for step in steps:
        samples = [float(v) for e in automated if (v := e.steps.get(step["id"])) is not None]
        rows.append(
            {
                "step": step["id"],
                "budget_s": step["budget_s"],
                "gameday_s": step["elapsed_s"],
                "gameday_status": step["status"],
                "automated_median_s": round(median(samples), 3) if samples else None,
                "automated_last_s": round(samples[-1], 3) if samples else None,
                "automated_drills": len(samples),
            }
        )
    return rows


class _Session:
    def __init__(
        self,
        recorder: Recorder,
        watcher: Watcher,
        *,
        participants: Mapping[str, str],
        out: IO[str],
        lines: queue.Queue[str | None],
        clock: Clock,
        step_timeout_s: float,
        poll_s: float,
        facilitator: bool,
    ) -> None:
        self.recorder = recorder
        self.watcher = watcher
        self.participants = dict(participants)
        self.out = out
        self.lines = lines
        self.clock = clock
        self.step_timeout_s = step_timeout_s
        self.poll_s = poll_s
        self.facilitator = facilitator
        self.game = _Game(steps={s.id: _StepState(s) for s in STEPS})
        self.commands = runbook_commands()
        self.input_open = True

    # -- announcing ------------------------------------------------------------------------------

    def announce_next(self) -> None:
        game = self.game
        game.current += 1
        if game.current >= len(STEP_IDS):
            return
        state = game.steps[STEP_IDS[game.current]]
        step = state.step
        now = self.clock.monotonic()
        state.announced_mono, state.announced_at = now, format_utc(self.clock.wall())
        game.ctx.announced_journal_line[step.id] = self.watcher.journal_length()
        if step.id == "step-5" and game.ctx.flow_baseline is None:
            game.ctx.flow_baseline = self.watcher.max_flow_id()
        if step.id == "step-5" and game.ctx.health_since_s is None:
            game.ctx.health_since_s = 0.0
        self.recorder.begin_step(step.id, step.title, step.budget_s)
        self.recorder.event("gameday_announced", step=step.id)
        _say(self.out)
        _say(self.out, f">>> [{step.id}] {step.title} -- budget {_duration(step.budget_s)}")
        _say(self.out, f"    verified when the drill observes: {step.verified_by}")
        _say(self.out, "    the runbook's commands:")
        for text in self.commands.get(step.id, ()):
            for line in text.splitlines():
                _say(self.out, f"      $ {line}" if line is text.splitlines()[0] else f"        {line}")
        for hint in LOCAL_HINTS.get(step.id, ()):
            _say(self.out, f"    here: {hint}")
        _say(self.out, f"    acknowledge with: ack ROLE   (roles: {', '.join(self.participants)})")
        if state.verified:
            # Done before it was announced: it counts, at zero elapsed time, and is flagged.
            self._close_step(state, already=True)

    # -- verifying -------------------------------------------------------------------------------

    def watchable(self, step_id: str) -> bool:
        state = self.game.steps[step_id]
        # Steps that only read (pre-1, Step 6) or whose trace is a message (pre-2, 7, 8) count once announced:
        # a healthy system before Step 6 is asked for is not the team having verified it.
        if step_id in {"pre-1", "pre-2", "step-6", "step-7", "step-8"}:
            return state.announced_mono is not None
        return True

    def poll_world(self) -> None:
        game = self.game
        for step_id in STEP_IDS:
            state = game.steps[step_id]
            if state.verified or not self.watchable(step_id):
                continue
            observation = self.watcher.check(step_id, game.ctx)
            if self.facilitator and (state.last is None or state.last.detail != observation.detail):
                _say(self.out, f"    [watch] {step_id}: {observation.detail}")
            state.last = observation
            if observation.ok:
                self._verified(state)

    def _verified(self, state: _StepState) -> None:
        game = self.game
        step_id = state.step.id
        state.verified_mono, state.verified_at = self.clock.monotonic(), format_utc(self.clock.wall())
        # Out of order: done while an earlier step was still expected (one the team skipped or let time out is not).
        earlier = [
            s
            for s in STEP_IDS[: STEP_IDS.index(step_id)]
            if not (game.steps[s].verified or game.steps[s].skipped_by_participant or game.steps[s].timed_out)
        ]
        if earlier:
            state.out_of_order = True
            self.recorder.warn(
                "gameday-out-of-order",
                f"{step_id} was observed done before {', '.join(earlier)}",
                step=step_id,
            )
        if step_id == "step-4":
            game.ctx.flow_baseline = self.watcher.max_flow_id()
            game.ctx.health_since_s = 0.0
        self.recorder.event("gameday_verified", step=step_id, observed=state.last.detail if state.last else None)
        if state.announced_mono is not None:
            self._close_step(state, already=False)
        else:
            _say(self.out, f"    (observed: {step_id} is already done, before it was announced)")

    def _close_step(self, state: _StepState, *, already: bool) -> None:
        entry = self.recorder.end_step(state.step.id)
        detail = state.last.detail if state.last else ""
        note = " (done before it was announced)" if already else ""
        _say(
            self.out,
            f"VERIFIED [{state.step.id}] after {_duration(entry['elapsed_s'])} of {_duration(state.step.budget_s)}"
            f" ({entry['status']}){note}: {detail}",
        )

    def tick_health_window(self, elapsed_s: float) -> None:
        if self.game.ctx.health_since_s is not None:
            self.game.ctx.health_since_s += elapsed_s

    # -- participants ----------------------------------------------------------------------------

    def handle(self, line: str) -> None:
        words = line.split()
        if not words:
            return
        verb = words[0].lower()
        if verb == "ack":
            self._ack(words[1:])
        elif verb in {"skip", "next"}:
            self._skip()
        elif verb in {"end", "done", "quit"}:
            self.game.ended_by = "a participant ended the game day"
        elif verb == "status":
            self.print_status()
        else:
            _say(self.out, "    commands: ack ROLE [STEP] | skip | status | end")

    def _current(self) -> _StepState | None:
        index = self.game.current
        return self.game.steps[STEP_IDS[index]] if 0 <= index < len(STEP_IDS) else None

    def _ack(self, words: list[str]) -> None:
        step_id = None
        if words and _STEP_ID_RE.match(words[-1]):
            step_id = words.pop()
        role_text = " ".join(words).strip()
        role = next((r for r in self.participants if r.lower() == role_text.lower()), None)
        if role is None:
            _say(self.out, f"    unknown role {role_text!r}; roles: {', '.join(self.participants)}")
            return
        current = self._current()
        step_id = step_id or (current.step.id if current else None)
        if step_id is None or self.game.steps[step_id].announced_mono is None:
            _say(self.out, f"    nothing to acknowledge yet ({step_id or 'no step announced'})")
            return
        state = self.game.steps[step_id]
        ack = {
            "step": step_id,
            "role": role,
            "name": self.participants[role],
            "at": format_utc(self.clock.wall()),
            "after_announce_s": round(self.clock.monotonic() - (state.announced_mono or 0.0), 3),
            "step_verified_then": state.verified,
        }
        self.game.acks.append(ack)
        self.game.ctx.acknowledged.add(step_id)
        self.recorder.event("gameday_ack", **ack)
        _say(self.out, f"ACK [{step_id}] {role} ({self.participants[role]})")

    def _skip(self) -> None:
        current = self._current()
        if current is None:
            return
        if not current.verified:
            current.skipped_by_participant = True
            self.recorder.warn(
                "gameday-step-skipped",
                f"{current.step.id} was skipped by the participants, not observed done",
                step=current.step.id,
            )
            _say(self.out, f"SKIPPED [{current.step.id}] (still watched: it counts if it is done later)")
        self.announce_next()

    # -- the loop --------------------------------------------------------------------------------

    def settled(self) -> bool:
        """Every step announced, and each verified, skipped, or past its timeout."""
        if self.game.current < len(STEP_IDS) - 1:
            return False
        now = self.clock.monotonic()
        return all(
            s.verified
            or s.skipped_by_participant
            or (s.announced_mono is not None and now - s.announced_mono >= self.step_timeout_s)
            for s in self.game.steps.values()
        )

    def maybe_advance(self) -> None:
        current = self._current()
        while current is not None and self.game.current < len(STEP_IDS) - 1:
            overdue = current.announced_mono is not None and (
                self.clock.monotonic() - current.announced_mono >= self.step_timeout_s
            )
            if not (current.verified or overdue):
                return
            if overdue and not current.verified:
                current.timed_out = True
                _say(
                    self.out,
                    f"TIMEOUT [{current.step.id}] not observed after {_duration(self.step_timeout_s)}; moving on (still watched)",
                )
            self.announce_next()
            current = self._current()

    def drain_input(self, wait_s: float) -> None:
        """Handle what the participants typed, waiting up to ``wait_s`` on the session's clock for a first line.

        Polled on the clock rather than blocked on the queue, so a ``FakeClock`` drives a
        game day in tests; a person typing waits at most ``INPUT_POLL_S`` to be read.
        """
        if not self.input_open:
            hold(wait_s, describe="the game day's observation interval", clock=self.clock)
            return
        first = poll_until(
            self._typed_line,
            timeout_s=max(0.0, wait_s),
            describe="a participant's input",
            interval_s=INPUT_POLL_S,
            clock=self.clock,
        )
        if first is None:
            return
        for (line,) in itertools.chain([first], iter(self._typed_line, None)):
            if line is None:
                self.input_open = False
                return
            self.handle(line)

    def _typed_line(self) -> tuple[str | None] | None:
        """The next line typed, as a 1-tuple (a line may be empty; ``(None,)`` is the end of input); None if none yet."""
        try:
            return (self.lines.get_nowait(),)
        except queue.Empty:
            return None

    def run(self) -> None:
        self.announce_next()
        while self.game.ended_by is None:
            started = self.clock.monotonic()
            self.poll_world()
            self.maybe_advance()
            if self.settled():
                self.game.ended_by = "every step announced and settled"
                self.drain_input(0.0)  # what was typed before the last observation still counts (a last ack)
                break
            self.drain_input(self.poll_s)
            self.tick_health_window(self.clock.monotonic() - started)

    def print_status(self) -> None:
        for step_id in STEP_IDS:
            s = self.game.steps[step_id]
            mark = (
                "verified"
                if s.verified
                else ("skipped" if s.skipped_by_participant else ("open" if s.announced_mono is not None else "-"))
            )
            _say(self.out, f"    {step_id:<7} {mark:<9} {s.last.detail if s.last else ''}")

    # -- the end ---------------------------------------------------------------------------------

    def close_open_steps(self) -> list[str]:
        unverified = []
        for step_id in STEP_IDS:
            state = self.game.steps[step_id]
            if state.verified:
                continue
            unverified.append(step_id)
            detail = state.last.detail if state.last else "never checked"
            why = "skipped by the participants; " if state.skipped_by_participant else ""
            if step_id in self.recorder.open_steps:
                self.recorder.end_step(step_id, "fail", f"{why}not verified: {detail}")
            elif state.announced_mono is None:
                self.recorder.skip_step(
                    step_id, state.step.title, state.step.budget_s, f"never announced; not verified: {detail}"
                )
        return unverified

    def summary(self, history_file: Path | None) -> dict[str, Any]:
        steps = [s for s in self.recorder.evidence["steps"] if isinstance(s, dict)]
        return {
            "ended_by": self.game.ended_by,
            "acknowledgements": self.game.acks,
            "steps": [
                {
                    "step": s.step.id,
                    "announced_at": s.announced_at,
                    "verified_at": s.verified_at,
                    "verified_by": s.step.verified_by,
                    "observed": s.last.detail if s.last else None,
                    "acknowledged_by": [a["role"] for a in self.game.acks if a["step"] == s.step.id],
                    "out_of_order": s.out_of_order,
                    "skipped_by_participants": s.skipped_by_participant,
                }
                for s in self.game.steps.values()
            ],
            "comparison": compare_with_history(steps, load_history(history_file)),
        }


def run_gameday(  # noqa: PLR0915 - one linear story: set up, brief, watch, record, seal
    env_state: EnvironmentState,
    *,
    incident: str = "mass-failure",
    participants: Mapping[str, str] | None = None,
    out: IO[str] | None = None,
    input: IO[str] | None = None,  # noqa: A002 - the brief's name, the participants' keyboard
    clock: Clock | None = None,
    evidence_dir: Path = Path("reports"),
    step_timeout_s: float = 900.0,
    poll_s: float = 1.0,
    phase: int = 6,
    facilitator: bool = False,
    history_file: Path | None = None,
    config: DrillConfig | None = None,
) -> GamedayResult:
    """Run a game day on ``env_state`` (an environment made with the world); return the verdict and the bundle."""
    out = out if out is not None else sys.stdout
    stream = input if input is not None else sys.stdin
    clock = clock if clock is not None else SystemClock()
    config = config if config is not None else load_config()
    incidents.check_incident_name(incident)
    if step_timeout_s <= 0 or poll_s <= 0:
        raise InputError("--step-timeout and the poll interval must be positive numbers of seconds")
    if "flowengine" not in env_state.services or "sinks" not in env_state.services:
        raise InputError(
            f"environment {env_state.name!r} has no FlowEngine simulator or sinks (made with --bare); "
            f"recreate it with `rollback-drill env up --name {env_state.name}`"
        )
    db = env_state.taskdb_handle()
    if db is None:
        raise InputError(f"environment {env_state.name!r} has no TaskDB; recreate it")
    add_secret(db.password)
    roles = (
        dict(participants) if participants else {**config.participants, "Incident Commander": config.incident_commander}
    )
    cluster = env_state.cluster()
    api = cluster.api_client()
    flowengine_url = str(env_state.services["flowengine"]["url"])
    flowengine = FlowEngineClient(flowengine_url)
    runbook = Runbook(api, cluster, config, db, flowengine, known_drill_clusters=frozenset({str(cluster.fingerprint)}))
    try:
        flowengine.clear_incidents()
        if _world_needs_reset(runbook, phase):
            _say(out, f"resetting the world to Phase {phase} (an earlier game day or drill left it rolled back) ...")
            seed_world(api, cluster, config, phase, db)
        recorder = Recorder.create(evidence_dir, incident=incident, clock=clock)
        for name, value in drill_metadata(config, cluster).items():
            recorder.set(name, value)
        recorder.set("mode", "gameday")
        recorder.set("participants", roles)
        game_dir = Path(env_state.directory) / f"gameday-{recorder.drill_id}"
        tmp_dir = game_dir / "tmp"
        tmp_dir.mkdir(parents=True, mode=0o700)
        token = os.urandom(STATUS_PAGE_TOKEN_BYTES).hex()
        add_secret(token)
        env_file = Path(env_state.directory) / ENV_FILE_NAME
        _write_private(env_file, shell_file(_env_variables(env_state, db, flowengine_url, tmp_dir, token)))
        record = incidents.inject(incident, flowengine, api, config)
        incidents.record_injection(recorder, record, phase)
        watcher = Watcher(
            runbook, incident=incident, journal=Path(str(env_state.services["sinks"]["received"])), backup_dir=tmp_dir
        )
        spec = CATALOGUE[incident]
        _say(out, "=" * 78)
        _say(out, f"GAME DAY {recorder.drill_id}: RB-LAUNCH-002 rollback to pilot scope")
        _say(out, f"ALERT: {incident} -- {spec.criterion}")
        _say(out, f"  affected repos: {', '.join(record.repos) or 'none'}; signal: {spec.signal}")
        _say(out, f"  participants: {', '.join(f'{r}={n}' for r, n in roles.items())}")
        _say(out, f"  your shell:   source {env_file}")
        _say(out, f"  /tmp/ in the runbook is {tmp_dir} ($GAMEDAY_TMP)")
        _say(out, f"  kubectl:      {ensure_kubectl()} (on PATH after sourcing)")
        _say(out, "  the drill verifies each step from what it observes; type `ack ROLE` when you take a step,")
        _say(out, "  `skip` to move on without it, `status` to see what the drill sees, `end` to stop. Ctrl-C aborts.")
        _say(out, "=" * 78)
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_reader, args=(stream, lines), daemon=True, name="gameday-input").start()
        session = _Session(
            recorder,
            watcher,
            participants=roles,
            out=out,
            lines=lines,
            clock=clock,
            step_timeout_s=step_timeout_s,
            poll_s=poll_s,
            facilitator=facilitator,
        )
        aborted: str | None = None
        try:
            session.run()
        except KeyboardInterrupt:
            current = session._current()  # noqa: SLF001 - the session's own state, read once at the end
            aborted = f"interrupted (Ctrl-C) during {current.step.id if current else 'the briefing'}"
            _say(out, f"\nABORTED: {aborted}")
        _copy_backups(recorder, tmp_dir)
        if aborted is not None:
            recorder.set("gameday", session.summary(history_file))
            recorder.abort(aborted)
            verdict, unverified = "aborted", tuple(s for s in STEP_IDS if not session.game.steps[s].verified)
        else:
            unverified = tuple(session.close_open_steps())
            recorder.set("gameday", session.summary(history_file))
            failed = [s["id"] for s in recorder.evidence["steps"] if s["status"] in {"fail", "over-budget"}]
            verdict = "fail" if unverified or failed else "pass"
            if unverified:
                recorder.warn("gameday-unverified", f"steps never observed done: {', '.join(unverified)}")
            recorder.finish(verdict)
        finalize_bundle(recorder.bundle_dir, history_file=history_file)
    finally:
        api.close()
    _print_result(out, verdict, unverified, recorder)
    return GamedayResult(verdict, recorder.bundle_dir, unverified)


def ensure_kubectl() -> Path:
    from rollback_drill.toolchain.build import ensure_binaries  # noqa: PLC0415

    return Path(ensure_binaries()["kubectl"])


def _copy_backups(recorder: Recorder, tmp_dir: Path) -> None:
    """What the participants backed up goes into the bundle, as the automated drill's backups do."""
    target = recorder.bundle_dir / "backups"
    for path in sorted(tmp_dir.glob("*")):
        if path.is_file():
            target.mkdir(exist_ok=True)
            shutil.copy2(path, target / path.name)
            with contextlib.suppress(Exception):
                recorder.add_artifact(target / path.name)


def _print_result(out: IO[str], verdict: str, unverified: tuple[str, ...], recorder: Recorder) -> None:
    evidence = recorder.evidence
    _say(out)
    _say(out, f"{'step':<8} {'budget':>8} {'elapsed':>8}  status")
    for step in evidence["steps"]:
        elapsed = _duration(step["elapsed_s"]) if step["elapsed_s"] is not None else "-"
        _say(out, f"{step['id']:<8} {_duration(step['budget_s']):>8} {elapsed:>8}  {step['status']}")
    names = f" (unverified: {', '.join(unverified)})" if unverified else ""
    _say(out, f"VERDICT: {verdict}{names}")
    _say(out, f"BUNDLE: {recorder.bundle_dir}")
