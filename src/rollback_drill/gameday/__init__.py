"""Game-day mode: people run RB-LAUNCH-002 by hand; the drill injects, announces, watches, times and records."""

from rollback_drill.gameday.session import GamedayResult, compare_with_history, run_gameday

__all__ = ["GamedayResult", "compare_with_history", "run_gameday"]
