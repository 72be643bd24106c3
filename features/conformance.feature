@conformance
Feature: Runbook conformance: RB-LAUNCH-002's own commands, run as written
  A runbook is only as good as its commands on the day they are needed. Every command of the
  document is run in the document's order on a freshly seeded drill world: kubectl as written
  against the drill cluster, the commands for Postgres, FlowEngine and the notification services
  through their stand-ins. What comes back is compared with what the runbook says should, and
  every place where the document has drifted from the system is reported at its line, with a
  correction where the drift is a known one.

  Scenario: Every command of RB-LAUNCH-002 is run, mapped, or handed to a person
    When the conformance run executes the runbook's commands on a freshly seeded Phase 6 world
    Then every command of the runbook is reported as ok, drifted, not-runnable or manual, with a reason
    And the counts add up to the number of commands in the document
    And every kubectl command on deployment/flowengine, configmap/repo-config or a PrometheusRule really ran against the drill cluster
    And Step 1's jsonpath check of REPO_ALLOWLIST printed "compliance-service", as the runbook expects
    And Step 4's PrometheusRule patch is reported drifted, with a proposed fix that backs up and deletes each rule
    When the conformance report is written into an evidence bundle
    Then the bundle holds conformance.json, and its report.html shows one conformance row per command

  Scenario: A jsonpath that no longer matches is reported drifted at its line
    Given a copy of the runbook whose Step 1 jsonpath asks for "REPO_ALLOW_LIST" instead of "REPO_ALLOWLIST"
    When the conformance run executes that copy on a freshly seeded Phase 6 world
    Then the command at the broken line is reported drifted: "compliance-service" was expected and the output was empty
    And the proposed fix is a jsonpath that prints "compliance-service"

  Scenario: The conformance run refuses a cluster the drill did not create
    Given a second control plane started outside any drill environment
    When the conformance run is aimed at it
    Then it is refused as an unsafe target, naming the cluster's fingerprint
    And no flowengine Deployment was seeded on it
