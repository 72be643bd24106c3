"""Steps for the runbook's own phases (pre-rollback, Steps 1-8, the drill)."""
