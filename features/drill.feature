@drill
Feature: The rollback drill (RB-LAUNCH-002, "Testing & Validation")
  A drill rehearses the whole procedure against a staged incident and measures it:
  time to detect, to initiate, to complete the rollback, to verify the pilot repo, and how soon
  people were told. Targets: rollback execution under 10 minutes, downtime of the expanded repos
  under 5 minutes, zero impact on the pilot repo, total resolution under 30 minutes, and the whole
  drill under 20 minutes. Each drill leaves one evidence bundle under reports/.

  @chosen @rolls_back
  Scenario: Rollback drill for the incident and phase chosen on the command line
    Given the drill world at the phase chosen on the command line
    When the incident chosen on the command line is injected
    And Alertmanager's page for the incident is awaited
    When the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back
    When the Incident Commander holds the triage the decision calls for
    And the SRE performs pre-rollback check 1 "Incident confirmation" within 5 minutes
    Then the incident is confirmed by the signal its criterion names
    When the SRE performs pre-rollback check 2 "Stakeholder notification" within 5 minutes
    Then the incident alert went to Slack #incidents, PagerDuty and every e-mail recipient
    And the alert names the reason, the affected repos and the Incident Commander
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    Then the flowengine Deployment and the repo-config ConfigMap are saved as YAML
    And the TaskDB backup restores into a scratch database with the same rows and checksums
    And the pilot probe and the expanded-repo probe are running
    When the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes
    Then REPO_ALLOWLIST of deployment/flowengine reads only the pilot
    When the SRE performs Step 2 "Scale down FlowEngine" within 3 minutes
    Then deployment/flowengine runs 3 replicas, all Running and Ready
    When the SRE performs Step 3 "Revert database schema" within 5 minutes
    Then the TaskDB schema version is "20251104_001"
    When the SRE performs Step 4 "Disable expanded repo alerts" within 2 minutes
    Then no "<repo>-alerts" PrometheusRule is left for an expanded repo
    And each removed rule was backed up first
    When the SRE performs Step 5 "Verify pilot repo functionality" within 3 minutes
    Then the pilot flow completed in under 120 seconds, cost under $2.00 and passed 5 of 5 quality gates
    And strict verification of the pilot flow passed
    When the SRE performs Step 6 "Verify system health" within 5 minutes
    Then 3 of 3 flowengine pods are Running with no recent restarts
    And TaskDB and all 3 model providers report healthy
    And since the rollback, flows succeed 100% of the time with P95 under 120 seconds, for the pilot repo only
    When the SRE performs Step 7 "Stakeholder communication" within 5 minutes
    Then the completion notice went to Slack #incidents and every e-mail recipient
    And the PagerDuty incident is resolved
    When the SRE performs Step 8 "Update status page" within 2 minutes
    Then the status page shows the orchestrator rolled back, with status "resolved"
    And every runbook step finished within its budget
    And the drill targets are met

  @chosen @no_go
  Scenario: NO-GO drill for the incident chosen on the command line
    Given the drill world at the phase chosen on the command line
    And the state of the world is noted
    When the incident chosen on the command line is injected
    And Alertmanager's page for the incident is awaited
    And the Incident Commander applies the decision framework to the live signals
    Then the decision is not to roll back
    And the Deployment generation, the allowlist, the alert rules and the schema version are unchanged

  @matrix
  Scenario Outline: Rollback drill: <incident> at Phase <phase>
    Given the drill world at Phase <phase>
    When the incident "<incident>" is injected
    And Alertmanager's page for the incident is awaited
    When the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back
    When the Incident Commander holds the triage the decision calls for
    And the SRE performs pre-rollback check 1 "Incident confirmation" within 5 minutes
    Then the incident is confirmed by the signal its criterion names
    When the SRE performs pre-rollback check 2 "Stakeholder notification" within 5 minutes
    Then the incident alert went to Slack #incidents, PagerDuty and every e-mail recipient
    And the alert names the reason, the affected repos and the Incident Commander
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    Then the flowengine Deployment and the repo-config ConfigMap are saved as YAML
    And the TaskDB backup restores into a scratch database with the same rows and checksums
    And the pilot probe and the expanded-repo probe are running
    When the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes
    Then REPO_ALLOWLIST of deployment/flowengine reads only the pilot
    When the SRE performs Step 2 "Scale down FlowEngine" within 3 minutes
    Then deployment/flowengine runs 3 replicas, all Running and Ready
    When the SRE performs Step 3 "Revert database schema" within 5 minutes
    Then the TaskDB schema version is "20251104_001"
    When the SRE performs Step 4 "Disable expanded repo alerts" within 2 minutes
    Then no "<repo>-alerts" PrometheusRule is left for an expanded repo
    And each removed rule was backed up first
    When the SRE performs Step 5 "Verify pilot repo functionality" within 3 minutes
    Then the pilot flow completed in under 120 seconds, cost under $2.00 and passed 5 of 5 quality gates
    And strict verification of the pilot flow passed
    When the SRE performs Step 6 "Verify system health" within 5 minutes
    Then 3 of 3 flowengine pods are Running with no recent restarts
    And TaskDB and all 3 model providers report healthy
    And since the rollback, flows succeed 100% of the time with P95 under 120 seconds, for the pilot repo only
    When the SRE performs Step 7 "Stakeholder communication" within 5 minutes
    Then the completion notice went to Slack #incidents and every e-mail recipient
    And the PagerDuty incident is resolved
    When the SRE performs Step 8 "Update status page" within 2 minutes
    Then the status page shows the orchestrator rolled back, with status "resolved"
    And every runbook step finished within its budget
    And the drill targets are met

    Examples: P1, immediate rollback
      | incident        | phase |
      | crash-loop      | 6     |
      | db-corruption   | 6     |
      | security-breach | 6     |
      | cost-runaway    | 6     |
      | mass-failure    | 7     |

    Examples: P2, rollback after triage
      | incident            | phase |
      | mass-failure        | 6     |
      | quality-degradation | 6     |
      | slo-violation       | 6     |
      | model-outage        | 6     |
      | cascading-failure   | 6     |

  @matrix
  Scenario Outline: NO-GO drill: <incident>
    Given the drill world at Phase 6
    And the state of the world is noted
    When the incident "<incident>" is injected
    And Alertmanager's page for the incident is awaited
    And the Incident Commander applies the decision framework to the live signals
    Then the decision is "NO-GO" with action "<action>"
    And the Deployment generation, the allowlist, the alert rules and the schema version are unchanged

    Examples:
      | incident            | action           |
      | single-repo-failure | isolate repo     |
      | intermittent-errors | do not roll back |
      | user-error          | do not roll back |
