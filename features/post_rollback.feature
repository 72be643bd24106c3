@post_rollback
Feature: After the rollback (RB-LAUNCH-002, Steps 6-8)
  Validate the system, tell the stakeholders the rollback is complete, update the status page.

  Background:
    Given the drill world at Phase 6
    When the incident "mass-failure" is injected
    And the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    Then the TaskDB backup restores into a scratch database with the same rows and checksums
    And the pilot probe and the expanded-repo probe are running
    When the SRE performs Steps 1 to 5
    Then the pilot repo passed Step 5's verification

  Scenario: System health, completion notice and status page
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
