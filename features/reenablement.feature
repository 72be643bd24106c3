@reenablement
Feature: After the rollback: fix verification on staging, then phased re-enablement (RB-LAUNCH-002)
  No repo comes back before the fix has soaked on staging: real flows for financial-reporting
  and customer-analytics at concurrency 5 for 2 hours, with a success rate of at least 99 %,
  P95 under 120 seconds and zero recurrence of the incident's symptoms. Then the repos come back
  in phases, never all at once: the canary, then three more, then the rest at most two at a time.
  Each phase is watched for its window against the same criteria before the next may start, and
  the alert rules come back with their repos, from the rollback's Step 4 backups.
  Waiting windows are scaled (drill.yaml's time_scale, or --time-scale); budgets never are.

  Background:
    Given the drill world at Phase 6
    When the incident "mass-failure" is injected
    And the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    And the SRE performs Steps 1 to 5
    Then the pilot repo passed Step 5's verification
    And REPO_ALLOWLIST of deployment/flowengine reads only the pilot

  Scenario: The fix soaks on staging, then the repos come back in three phases
    Given waiting windows are scaled by 0.00005 in this rehearsal
    When the fix is deployed
    And the SRE performs the soak "Fix verification on staging" within 4 hours
    Then the soak passed: success rate at least 99 %, P95 under 120 seconds, no recurrence of the incident
    And the soak's numbers come from real requests to the staging FlowEngine, each one a flow in staging's TaskDB
    When the SRE performs Phase 1 "Canary re-enablement" within 4 hours
    Then REPO_ALLOWLIST of deployment/flowengine reads the pilot followed by "inventory-mgmt"
    And the alert rules are back for exactly the re-enabled repos, as Step 4 backed them up
    And Phase 1 met its criteria, with its success rate and P95 in the evidence
    When the SRE performs Phase 2 "3-repo re-enablement" within 24 hours
    Then REPO_ALLOWLIST of deployment/flowengine reads the pilot followed by "inventory-mgmt", "customer-analytics", "financial-reporting", "risk-engine"
    And the alert rules are back for exactly the re-enabled repos, as Step 4 backed them up
    And Phase 2 met its criteria, with its success rate and P95 in the evidence
    When the SRE performs Phase 3 "Full re-enablement" within 3 days
    Then REPO_ALLOWLIST of deployment/flowengine reads the pilot followed by every expanded repo
    And the alert rules are back for exactly the re-enabled repos, as Step 4 backed them up
    And Phase 3 brought the remaining repos back in batches of at most 2, each with its own rollout and monitoring window
    And Phase 3 met its criteria, with its success rate and P95 in the evidence
    And every runbook step finished within its budget

  Scenario: Re-enabling every repo in one step is refused, and nothing changes
    Given the state of the world is noted
    When the SRE re-enables every expanded repo in one step
    Then it is refused with "DO NOT re-enable all repos at once. Use phased approach"
    And the Deployment generation, the allowlist, the alert rules and the schema version are unchanged

  Scenario: Phase 2 may not start before Phase 1 has passed
    Given the state of the world is noted
    When the SRE starts Phase 2 before Phase 1 has passed
    Then it is refused with "Phase 2 may start only after Phase 1 met its criteria"
    And the Deployment generation, the allowlist, the alert rules and the schema version are unchanged

  Scenario: A recurrence during Phase 2 stops the re-enablement and puts the allowlist back to Phase 1
    Given waiting windows are scaled by 0.00005 in this rehearsal
    When the fix is deployed
    And the SRE performs the soak "Fix verification on staging" within 4 hours
    And the SRE performs Phase 1 "Canary re-enablement" within 4 hours
    And the fix does not hold for repo "customer-analytics"
    And the SRE attempts Phase 2 "3-repo re-enablement"
    Then Phase 2 is stopped by a recurrence of the incident in "customer-analytics"
    And REPO_ALLOWLIST of deployment/flowengine reads the pilot followed by "inventory-mgmt"
    And the alert rules are back for exactly the re-enabled repos, as Step 4 backed them up
    And the stopped phase is in the evidence, with what it measured
    When the SRE starts Phase 3 before Phase 2 has passed
    Then it is refused with "Phase 3 may start only after Phase 2 met its criteria"

  Scenario: The soak's gate fails when 2 % of the flows on staging fail
    # Telling 98 % from the gate's 99 % takes thousands of flows: the longest soak, not the shortest.
    Given the soak runs for 4 hours, the longest the runbook names
    And the state of the world is noted
    When the fix is deployed
    And the staging FlowEngine fails 2 % of flows
    And the SRE performs the soak "Fix verification on staging" within 4 hours
    Then the soak failed its gate on the success rate, below 99 %
    And the soak's numbers come from real requests to the staging FlowEngine, each one a flow in staging's TaskDB
    When the SRE starts Phase 1 after the failed soak
    Then it is refused with "no repo may be re-enabled before the fix passes its soak on staging"
    And the Deployment generation, the allowlist, the alert rules and the schema version are unchanged
