"""Runbook conformance: run a runbook's own commands on a freshly seeded drill world and report where it drifted.

- ``parser``: ``parse_runbook(path)`` reads every ```bash command with its section, its documented
  expectations and its kind (``kubectl``, ``kubectl-exec-db``, ``kubectl-exec-http``, ``blocks``,
  ``notify``, ``shell``, ``manual``, ``other``);
- ``expect``: ``check_item(expected, output)`` compares one documented expectation with an output;
- ``run``: ``run_conformance(runbook, env)`` runs them all in order and returns a ``ConformanceReport``;
- ``standins``: the ``blocks``, ``slack-cli``, ``pagerduty`` and ``mail`` the runbook's commands call;
- ``bundle``: ``write_bundle(report, dir, config=...)`` writes ``conformance.json`` and an evidence bundle;
- ``cli``: ``add_commands(subparsers)`` adds ``rollback-drill conformance``.

Nothing is imported here: ``python -m rollback_drill.conformance.standins`` starts once per runbook
command and should not pay for the Kubernetes client.
"""
