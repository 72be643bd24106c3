"""What carries over from one runbook command to the next, as in the terminal an SRE would use.

Each command runs in a bash of its own, so a variable it sets (``EXPANDED_REPOS=...``) and the
PID of a command it sends to the background (read by a later ``$!``) are written into the
sandbox's state directory at its end, and handed to the commands after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rollback_drill.conformance.sandbox import STATE_VARIABLE
from rollback_drill.conformance.shell import ShellAnalysis


@dataclass
class Terminal:
    """The state of the run's terminal; ``state_dir`` is the sandbox's (``$RB_CONF_STATE`` inside it)."""

    state_dir: Path
    variables: dict[str, str] = field(default_factory=dict)
    """Variables set at the top level of earlier commands, for the environment of the next ones."""
    background_pid: str | None = None
    """The PID of the last command run in the background."""

    def substitute_background_pid(self, text: str) -> tuple[str, tuple[str, ...]]:
        """``$!`` made the PID of the background command before, and what was substituted (for the report)."""
        if "$!" not in text or not self.background_pid:
            return text, ()
        return (
            text.replace("$!", self.background_pid),
            (f"$! is {self.background_pid}, the PID of the background command before it",),
        )

    def script_for(self, text: str, analysis: ShellAnalysis) -> str:
        """``text`` followed by what saves its variables and background PID, ending with the command's own exit code."""
        lines = [text]
        if analysis.background:
            lines.append(f'__bg=$!; wait "$__bg"; __rc=$?; printf %s "$__bg" > "${STATE_VARIABLE}/bgpid"')
        else:
            lines.append("__rc=$?")
        lines += [f'printf %s "${{{name}-}}" > "${STATE_VARIABLE}/var.{name}"' for name in analysis.assigns]
        lines.append('exit "$__rc"')
        return "\n".join(lines)

    def carry_over(self, analysis: ShellAnalysis) -> None:
        """Take what the script of ``script_for`` saved, for the commands after it."""
        for name in analysis.assigns:
            path = self.state_dir / f"var.{name}"
            if path.is_file():
                self.variables[name] = path.read_text(encoding="utf-8")
                path.unlink()
        pid = self.state_dir / "bgpid"
        if analysis.background and pid.is_file():
            self.background_pid = pid.read_text(encoding="utf-8").strip() or None
            pid.unlink()
