@pre_rollback
Feature: Pre-rollback verification (RB-LAUNCH-002)
  Before the rollback: confirm the incident, tell the people who need to know,
  and back up what the rollback will change. The TaskDB backup runs in the background
  and does not block the rollback, but it only counts once it has been restored and compared.

  Background:
    Given the drill world at Phase 6
    When the incident "mass-failure" is injected
    And the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back

  Scenario: Incident confirmation, stakeholder notification and backups
    When the SRE performs pre-rollback check 1 "Incident confirmation" within 5 minutes
    Then the FlowEngine log shows ERROR or CRITICAL lines
    And at least 3 repos show flow failures
    When the SRE performs pre-rollback check 2 "Stakeholder notification" within 5 minutes
    Then the incident alert went to Slack #incidents, PagerDuty and every e-mail recipient
    And the alert names the reason, the affected repos and the Incident Commander
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    Then the flowengine Deployment and the repo-config ConfigMap are saved as YAML
    And the TaskDB backup restores into a scratch database with the same rows and checksums
    And every runbook step finished within its budget

  Scenario: With the e-mail server down, the alert still reaches everyone else and the drill goes on
    Given the e-mail server is down
    When the SRE performs pre-rollback check 2 "Stakeholder notification" within 5 minutes
    Then the e-mail is recorded in the evidence as failed after 4 attempts
    And the Slack alert and the PagerDuty page were still delivered
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    Then the TaskDB backup restores into a scratch database with the same rows and checksums
