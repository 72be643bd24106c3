@world
Feature: The drill world, as the runbook finds it before a rollback
  The runbook acts on the flowengine Deployment, its repo allowlist, its alerts and its TaskDB.
  On a cluster the drill created, that world is seeded to the state the runbook expects,
  and every incident of the decision framework can be injected as the signal the runbook reads.

  Scenario: The Phase 6 world is seeded as the runbook describes it
    Given the drill world at Phase 6
    Then REPO_ALLOWLIST of deployment/flowengine lists the pilot and the 10 expanded repos
    And deployment/flowengine runs 6 replicas, all available
    And configmap/repo-config lists the 10 expanded repos separated by white space
    And there is one PrometheusRule "<repo>-alerts" per expanded repo in namespace "monitoring", beside the pilot's own and the crash-loop rule
    And the TaskDB schema version is later than "20251104_001"

  Scenario: An allowlist change takes effect when the rollout does, not when the spec is patched
    Given the drill world at Phase 6
    And a probe on repo "financial-reporting" is running
    And the pilot probe is running
    When REPO_ALLOWLIST of deployment/flowengine is set to the pilot only
    And the rollout of deployment/flowengine completes
    Then repo "financial-reporting" was still served after the patch, then refused with reason "Restricted to pilot scope"
    And repo "compliance-service" is enabled
    And the pilot probe saw 0 failed requests

  Scenario: A crash loop is acted out by the pods themselves
    Given the drill world at Phase 6
    When the incident "crash-loop" is injected
    Then the flowengine pods go into CrashLoopBackOff with rising restart counts
    And deployment/flowengine has no available replica
    And the pilot repo is unavailable

  Scenario Outline: Incident "<incident>" shows in the signal the runbook reads
    Given the drill world at Phase <phase>
    When the incident "<incident>" is injected
    Then the decision framework, reading the live signals, decides "<priority>"
    And "<incident>" is listed as an active injection
    When all injections are cleared
    Then no injection is active

    Examples:
      | incident            | phase | priority |
      | crash-loop          | 6     | P1       |
      | db-corruption       | 6     | P1       |
      | security-breach     | 6     | P1       |
      | cost-runaway        | 6     | P1       |
      | mass-failure        | 7     | P1       |
      | mass-failure        | 6     | P2       |
      | quality-degradation | 6     | P2       |
      | slo-violation       | 6     | P2       |
      | model-outage        | 6     | P2       |
      | cascading-failure   | 6     | P2       |
      | single-repo-failure | 6     | NO-GO    |
      | intermittent-errors | 6     | NO-GO    |
      | user-error          | 6     | NO-GO    |

  Scenario: Another configuration seeds another world
    Given a drill configuration with pilot "ledger-core" and 37 expanded repos
    When the drill world is seeded at Phase 6 from it
    Then REPO_ALLOWLIST of deployment/flowengine lists "ledger-core" and the 37 expanded repos
    And there are 37 PrometheusRules of expanded repos in namespace "monitoring", beside the pilot's own and the crash-loop rule
    And configmap/repo-config lists the 37 expanded repos separated by white space
