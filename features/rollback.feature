@rollback
Feature: Rollback to pilot scope (RB-LAUNCH-002, Steps 1-5)
  When an incident hits the expanded rollout, the orchestrator goes back to the pilot repo
  within 10 minutes, and the pilot repo never notices.

  Background:
    Given the drill world at Phase 6
    When the incident "mass-failure" is injected
    And the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    Then the TaskDB backup restores into a scratch database with the same rows and checksums
    And the pilot probe and the expanded-repo probe are running

  Scenario: Steps 1 to 5 take the orchestrator back to the pilot repo
    When the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes
    Then REPO_ALLOWLIST of deployment/flowengine reads only the pilot
    And repo "compliance-service" is enabled
    And repo "financial-reporting" is disabled with reason "Restricted to pilot scope"
    When the SRE performs Step 2 "Scale down FlowEngine" within 3 minutes
    Then deployment/flowengine runs 3 replicas, all Running and Ready
    When the SRE performs Step 3 "Revert database schema" within 5 minutes
    Then the TaskDB schema version is "20251104_001"
    When the SRE performs Step 4 "Disable expanded repo alerts" within 2 minutes
    Then no "<repo>-alerts" PrometheusRule is left for an expanded repo
    And each removed rule was backed up first
    And the runbook's own alert patch is recorded as drift
    When the SRE performs Step 5 "Verify pilot repo functionality" within 3 minutes
    Then the pilot flow completed in under 120 seconds, cost under $2.00 and passed 5 of 5 quality gates
    And strict verification of the pilot flow passed
    And every runbook step finished within its budget
    And the rollback execution took less than 10 minutes
    And the pilot probe saw 0 failed requests from Step 1 on

  Scenario: Running the rollback a second time changes nothing and says so
    When the SRE performs Steps 1 to 4
    And the SRE performs Steps 1 to 4 again
    Then the second run reports every step as already done
    And the allowlist, replicas, alert rules and schema version are the same after both runs

  Scenario: A failed schema revert restores the backup and fails Step 3 with the reason
    When the SRE performs Step 3 with a rollback script that breaks halfway
    Then Step 3 fails, naming the restore from the pre-rollback backup
    And the TaskDB schema version is the one from before the rollback
    And the schema tables match the pre-rollback backup, and no flow recorded before it was lost

  Scenario: A Step 1 that drops the pilot from the allowlist is caught as pilot impact
    When Step 1 is performed wrongly, with an allowlist that omits the pilot
    Then the drill target "pilot_impact" is not met
