"""Game-day mode, played by a scripted team in a real pseudo-terminal against a real drill environment.

The game day runs as its own process under a pty (as on a facilitator's laptop);
the test reads its announcements, runs the runbook's commands against the
environment (``tests/gameday_script.py``) and types acknowledgements. The game
day must verify every step from what it observes, and seal a bundle that verifies.
"""

from __future__ import annotations

import io
import json
import os
import pty
import queue
import re
import select
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gameday_script import Team, read_env_file
from rollback_drill import environment
from rollback_drill.evidence.bundle import load_evidence
from rollback_drill.evidence.history import HistoryEntry
from rollback_drill.evidence.recorder import Recorder
from rollback_drill.evidence.verify import verify
from rollback_drill.gameday import compare_with_history
from rollback_drill.gameday.plan import STEP_IDS
from rollback_drill.gameday.session import ENV_FILE_NAME, _Session
from rollback_drill.gameday.watch import Observation, WatchContext
from rollback_drill.timing.clock import FakeClock

pytestmark = [pytest.mark.timeout(600)]

ROLE = "SRE On-Call"
ANNOUNCE_TIMEOUT_S = 60
VERIFY_TIMEOUT_S = 90


class PtyGameday:
    """The game-day process on the child side of a pty; the test is the people at the keyboard."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: becomes the game day
            os.execvpe(argv[0], argv, env)  # noqa: S606 - our own interpreter, fixed arguments
        self.pid, self.fd = pid, fd
        self.buffer = ""
        self.seen = 0
        self.exit_code: int | None = None

    def _read(self, timeout_s: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        if not chunk:
            return False
        self.buffer += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return True

    def expect(self, pattern: str, timeout_s: float) -> re.Match[str]:
        """Wait for ``pattern`` in the output after what earlier expectations consumed."""
        compiled = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            match = compiled.search(self.buffer, self.seen)
            if match:
                self.seen = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._read(min(remaining, 1.0)):
                match = compiled.search(self.buffer, self.seen)
                if match:
                    self.seen = match.end()
                    return match
                tail = self.buffer[-3000:]
                pytest.fail(f"waited {timeout_s:.0f}s for {pattern!r} from the game day; last output:\n{tail}")

    def type(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())

    def interrupt(self) -> None:
        os.write(self.fd, b"\x03")  # the terminal turns it into SIGINT, as a person's Ctrl-C

    def wait(self, timeout_s: float = 120) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._read(0.5)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0.1) and select.select([self.fd], [], [], 0)[0]:
                    pass
                self.exit_code = os.waitstatus_to_exitcode(status)
                os.close(self.fd)
                return self.exit_code
        os.kill(self.pid, signal.SIGKILL)
        pytest.fail(f"the game day did not end within {timeout_s:.0f}s; last output:\n{self.buffer[-3000:]}")


@pytest.fixture(scope="module")
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Environments and history of this module live apart from the user's."""
    home = tmp_path_factory.mktemp("gameday-state")
    old = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = old


@pytest.fixture(scope="module")
def gameday_env(state_home: Path) -> Iterator[environment.EnvironmentState]:
    state = environment.bring_up(f"gameday-{os.getpid()}", with_world=True)
    try:
        yield state
    finally:
        environment.tear_down(state)


@pytest.fixture(scope="module")
def automated_history(state_home: Path) -> dict[str, float]:
    """One earlier automated drill in the history, for the game day's comparison table."""
    steps = {step_id: 10.0 + index for index, step_id in enumerate(STEP_IDS)}
    entry = {
        "format": 1,
        "drill_id": "20261101T000000Z-mass-failure-abc123",
        "started_at": "2026-11-01T00:00:00Z",
        "finished_at": "2026-11-01T00:10:00Z",
        "verdict": "pass",
        "incident": "mass-failure",
        "phase": 6,
        "target_kind": "local",
        "priority": "P2",
        "steps": steps,
        "step_status": dict.fromkeys(steps, "pass"),
        "targets": {},
        "bundle": None,
    }
    path = state_home / "rollback-drill" / "history.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(entry) + "\n")
    return steps


def _command() -> list[str]:
    """``rollback-drill gameday`` once cli.py wires it; the package's own entry point until then."""
    from rollback_drill.cli import build_parser  # noqa: PLC0415

    wired = "gameday" in build_parser().format_help()
    module = ["-m", "rollback_drill.cli", "gameday"] if wired else ["-m", "rollback_drill.gameday"]
    return [sys.executable, *module]


def _start(env_state: environment.EnvironmentState, evidence_dir: Path, incident: str = "mass-failure") -> PtyGameday:
    argv = [
        *_command(),
        "--env", env_state.name,
        "--incident", incident,
        "--participants", f"{ROLE}=ana,Engineering TL=bo,Incident Commander=cy",
        "--evidence-dir", str(evidence_dir),
        "--step-timeout", "120",
        "--poll", "0.5",
        "--facilitator",
    ]  # fmt: skip
    return PtyGameday(argv, dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="160"))


def _team(env_state: environment.EnvironmentState, incident: str) -> Team:
    variables = read_env_file(Path(env_state.directory) / ENV_FILE_NAME)
    return Team({**os.environ, **variables}, incident=incident)


def _play(
    game: PtyGameday,
    env_state: environment.EnvironmentState,
    *,
    skip: frozenset[str] = frozenset(),
    incident: str = "mass-failure",
) -> None:
    game.expect(r"your shell:\s+source (\S+)", ANNOUNCE_TIMEOUT_S)
    team: Team | None = None
    for step_id in STEP_IDS:
        game.expect(rf">>> \[{re.escape(step_id)}\]", ANNOUNCE_TIMEOUT_S)
        team = team or _team(env_state, incident)
        if step_id in skip:
            game.type("skip")
            game.expect(rf"SKIPPED \[{re.escape(step_id)}\]", 10)
            continue
        mark = game.seen
        game.type(f"ack {ROLE} {step_id}")  # as the briefing asks: ack when you take the step
        game.expect(rf"ACK \[{re.escape(step_id)}\] {re.escape(ROLE)}", 10)
        team.action(step_id)()
        game.seen = mark  # the drill may have observed the step done before the ack arrived
        game.expect(rf"VERIFIED \[{re.escape(step_id)}\]", VERIFY_TIMEOUT_S)


def _bundle(game: PtyGameday) -> Path:
    return Path(game.expect(r"BUNDLE: (\S+)", 30).group(1))


@pytest.mark.slow
def test_team_runs_the_runbook_and_every_step_is_verified_from_observed_state(
    gameday_env: environment.EnvironmentState, automated_history: dict[str, float], tmp_path: Path
) -> None:
    started = time.monotonic()
    game = _start(gameday_env, tmp_path / "reports")
    _play(game, gameday_env)
    game.expect(r"VERDICT: pass", 30)
    bundle = _bundle(game)
    assert game.wait() == 0

    evidence = load_evidence(bundle)
    assert evidence["mode"] == "gameday"
    assert evidence["verdict"] == "pass"
    assert evidence["participants"][ROLE] == "ana"
    steps = {s["id"]: s for s in evidence["steps"]}
    assert list(steps) == list(STEP_IDS)
    for step_id, step in steps.items():
        assert step["status"] == "pass", (step_id, step)
        assert 0 <= step["elapsed_s"] < step["budget_s"], step
        assert step["started_at"], step
        assert step["finished_at"], step
    gameday = evidence["gameday"]
    acks = {(a["step"], a["role"]) for a in gameday["acknowledgements"]}
    assert acks == {(step_id, ROLE) for step_id in STEP_IDS}
    observed = {s["step"]: s for s in gameday["steps"]}
    assert all(observed[s]["verified_at"] and not observed[s]["out_of_order"] for s in STEP_IDS), observed
    comparison = {row["step"]: row for row in gameday["comparison"]}
    assert comparison["step-1"]["automated_median_s"] == automated_history["step-1"]
    assert comparison["step-1"]["gameday_s"] == steps["step-1"]["elapsed_s"]
    assert not [w for w in evidence["warnings"] if str(w["code"]).startswith("gameday-")]

    assert verify(bundle, allowed_signers=None).ok
    assert (bundle / "report.html").is_file()
    assert "Game day" in (bundle / "report.html").read_text()
    assert list((bundle / "backups").glob("taskdb_pre_rollback_*.sql.gz"))
    env_file = Path(gameday_env.directory) / ENV_FILE_NAME
    assert env_file.stat().st_mode & 0o777 == 0o600
    password = read_env_file(env_file)["PGPASSWORD"]
    assert not any(password in p.read_text(errors="replace") for p in bundle.rglob("*") if p.is_file())
    print(f"full game day: {time.monotonic() - started:.1f}s")


@pytest.mark.slow
def test_a_skipped_step_4_stays_unverified_and_fails_the_game_day(
    gameday_env: environment.EnvironmentState, tmp_path: Path
) -> None:
    started = time.monotonic()
    game = _start(gameday_env, tmp_path / "reports")
    _play(game, gameday_env, skip=frozenset({"step-4"}))
    game.expect(r"VERDICT: fail \(unverified: step-4\)", 30)
    bundle = _bundle(game)
    assert game.wait() == 1

    evidence = load_evidence(bundle)
    assert evidence["verdict"] == "fail"
    steps = {s["id"]: s for s in evidence["steps"]}
    assert steps["step-4"]["status"] == "fail"
    assert "not verified" in steps["step-4"]["error"]
    assert all(steps[s]["status"] == "pass" for s in STEP_IDS if s != "step-4"), steps
    codes = [w["code"] for w in evidence["warnings"]]
    assert sorted(codes) == ["gameday-step-skipped", "gameday-unverified"], evidence["warnings"]
    assert verify(bundle, allowed_signers=None).ok
    assert "step-4" in (bundle / "report.html").read_text()
    print(f"game day with Step 4 skipped: {time.monotonic() - started:.1f}s")


@pytest.mark.slow
def test_ctrl_c_ends_the_game_day_aborted_with_a_complete_bundle(
    gameday_env: environment.EnvironmentState, tmp_path: Path
) -> None:
    game = _start(gameday_env, tmp_path / "reports")
    game.expect(r">>> \[pre-1\]", ANNOUNCE_TIMEOUT_S)
    game.interrupt()
    game.expect(r"ABORTED: interrupted \(Ctrl-C\) during pre-1", 30)
    bundle = _bundle(game)
    assert game.wait() == 130
    evidence = load_evidence(bundle)
    assert evidence["verdict"] == "aborted"
    assert evidence["mode"] == "gameday"
    assert verify(bundle, allowed_signers=None).ok


# --- the loop and the comparison, without a cluster (an injected clock) ---------------------------


class _FakeWatcher:
    """Observes every step done except those in ``never``."""

    def __init__(self, never: frozenset[str]) -> None:
        self.never = never

    def check(self, step_id: str, _ctx: WatchContext) -> Observation:
        return Observation(ok=step_id not in self.never, detail=f"fake {step_id}")

    def journal_length(self) -> int:
        return 0

    def max_flow_id(self) -> int:
        return 0


def _fake_session(
    tmp_path: Path, never: frozenset[str], step_timeout_s: float = 60, *, input_open: bool = False
) -> tuple[_Session, Recorder]:
    clock = FakeClock()
    recorder = Recorder.create(tmp_path, incident="mass-failure", clock=clock)
    lines: queue.Queue[str | None] = queue.Queue()
    if not input_open:
        lines.put(None)  # nobody types
    session = _Session(
        recorder,
        _FakeWatcher(never),  # type: ignore[arg-type]
        participants={ROLE: "ana"},
        out=io.StringIO(),
        lines=lines,
        clock=clock,
        step_timeout_s=step_timeout_s,
        poll_s=1.0,
        facilitator=False,
    )
    return session, recorder


def test_a_step_never_observed_times_out_and_is_the_one_named_unverified(tmp_path: Path) -> None:
    session, recorder = _fake_session(tmp_path, frozenset({"step-4"}))
    session.run()
    assert session.close_open_steps() == ["step-4"]
    steps = {s["id"]: s for s in recorder.evidence["steps"]}
    assert steps["step-4"]["status"] == "fail"
    assert steps["step-4"]["error"] == "not verified: fake step-4"
    assert all(steps[s]["status"] == "pass" for s in STEP_IDS if s != "step-4")
    # State steps observed done before their announcement are flagged; message steps wait for theirs.
    flagged = {w["step"] for w in recorder.evidence["warnings"] if w["code"] == "gameday-out-of-order"}
    assert "step-1" in flagged
    assert "step-5" in flagged  # done while step-4 was still not
    assert "pre-2" not in flagged


def test_a_game_day_whose_participants_stay_silent_is_driven_by_the_fake_clock(tmp_path: Path) -> None:
    """With the input still open, waiting for a line runs on the session's clock too: the step still times out."""
    session, _ = _fake_session(tmp_path, frozenset({"step-4"}), input_open=True)
    started = session.clock.monotonic()
    session.run()
    assert session.input_open
    assert session.close_open_steps() == ["step-4"]
    assert session.clock.monotonic() - started >= 60, "step-4 ended before its timeout passed on the clock"


def test_a_line_typed_while_the_game_day_waits_is_handled_without_waiting_the_whole_interval(tmp_path: Path) -> None:
    session, _ = _fake_session(tmp_path, frozenset(), input_open=True)
    session.lines.put("end")
    started = session.clock.monotonic()
    session.drain_input(5.0)
    assert session.game.ended_by == "a participant ended the game day"
    assert session.clock.monotonic() == started
    session.drain_input(5.0)
    assert session.clock.monotonic() - started == pytest.approx(5.0)
    session.lines.put(None)
    session.drain_input(5.0)
    assert not session.input_open


def test_comparison_places_game_day_times_beside_passed_automated_drills(tmp_path: Path) -> None:
    def entry(drill_id: str, verdict: str, step_1: float | None) -> HistoryEntry:
        return HistoryEntry(drill_id, None, None, verdict, "mass-failure", 6, "local", "P2", steps={"step-1": step_1})

    history = [entry("a", "pass", 10.0), entry("b", "fail", 99.0), entry("c", "pass", 20.0), entry("d", "pass", None)]
    rows = compare_with_history([{"id": "step-1", "budget_s": 120.0, "elapsed_s": 45.0, "status": "pass"}], history)
    assert rows == [
        {
            "step": "step-1",
            "budget_s": 120.0,
            "gameday_s": 45.0,
            "gameday_status": "pass",
            "automated_median_s": 15.0,
            "automated_last_s": 20.0,
            "automated_drills": 2,
        }
    ]


@pytest.mark.slow
def test_crash_loop_game_day_verifies_the_restart_with_the_pilot_config(
    gameday_env: environment.EnvironmentState, tmp_path: Path
) -> None:
    game = _start(gameday_env, tmp_path / "reports", incident="crash-loop")
    _play(game, gameday_env, incident="crash-loop")
    game.expect(r"VERDICT: pass", 30)
    bundle = _bundle(game)
    assert game.wait() == 0
    evidence = load_evidence(bundle)
    assert evidence["incident"] == "crash-loop"
    assert all(s["status"] == "pass" for s in evidence["steps"]), evidence["steps"]
    assert verify(bundle, allowed_signers=None).ok
