"""Where the drill keeps what outlives one run: environment state files and the drill history.

Both live under ``$XDG_STATE_HOME/rollback-drill`` (CONVENTIONS), so the environments
and the evidence read the same place without one of them importing the other.
"""

from __future__ import annotations

import os
from pathlib import Path


def state_home() -> Path:
    """``$XDG_STATE_HOME/rollback-drill``, or ``~/.local/state/rollback-drill`` when the variable is unset or empty."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "rollback-drill"
