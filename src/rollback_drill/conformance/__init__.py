"""Runbook conformance: run a runbook's own commands on a freshly seeded drill world and report where it drifted.

Reading the runbook, from the bottom up:

- ``lexer``: bash's tokens, and ``completeness(text)``: whether bash would read another line;
- ``shell``: ``analyse(text)``: a command's simple commands, loops, variables and placeholders;
- ``kubectl``: ``read_kubectl(args)``: a kubectl command line's verb, objects and namespace;
- ``classify``: ``classify(text, analysis)``: the command's kind (``kubectl``, ``kubectl-exec-db``,
  ``kubectl-exec-http``, ``blocks``, ``notify``, ``shell``, ``manual``, ``other``) and whether it runs;
- ``runbook``: ``parse_runbook(path)`` reads every ```bash command with its section, its documented
  expectations and its kind;
- ``expect``: ``check_item(expected, output)`` compares one documented expectation with an output.

Running it:

- ``sandbox``: ``run_in_sandbox(script, sandbox, env, timeout_s)``, the one place a command runs;
- ``session``: what carries over between commands (variables, ``$!``);
- ``mapping``: ``map_onto_standins(...)``: ``kubectl exec`` and the status page aimed at the stand-ins;
- ``judge``: ``judge(result, ...)``: ``ok`` or ``drifted``, and why;
- ``proposals``: ``propose(result, ...)``: corrections of known drifts, checked where safe;
- ``report``: ``CommandResult`` and ``ConformanceReport``, with their JSON;
- ``run``: ``run_conformance(runbook, env)`` composes them over every command, in order;
- ``standins``: the ``blocks``, ``slack-cli``, ``pagerduty`` and ``mail`` the runbook's commands call;
- ``bundle``: ``write_bundle(report, dir, config=...)`` writes ``conformance.json`` and an evidence bundle;
- ``cli``: ``add_commands(subparsers)`` adds ``rollback-drill conformance``.

Nothing is imported here: ``python -m rollback_drill.conformance.standins`` starts once per runbook
command and should not pay for the Kubernetes client.
"""
