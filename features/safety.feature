@safety
Feature: Safety: one drill at a time, the least privilege, and no destructive call on somebody else's cluster
  A drill changes a real cluster. While it runs it holds a lock, so two drills never act on one
  cluster at once. It acts through its own identity, which holds the verbs the runbook needs and
  no others. And every destructive runbook action first checks the cluster's identity: a cluster
  the drill did not create, and that is not on its allowlist, is refused before anything changes.

  Scenario: A second drill on the same cluster is refused, naming the holder
    Given the drill cluster
    And drill "alice@laptop/drill-1" holds the drill lock
    When drill "bob@ci/drill-2" tries to take the drill lock
    Then it is refused as bad input (exit 2), naming "alice@laptop/drill-1", since when, and how to break the lock
    And the drill lock still names "alice@laptop/drill-1"
    When drill "alice@laptop/drill-1" releases the drill lock
    Then no drill lock is left on the cluster
    And drill "bob@ci/drill-2" can take the drill lock

  Scenario: A lock left by a crashed drill is taken over
    Given the drill cluster
    And a drill lock held by "crashed@laptop/drill-0", last renewed 10 minutes ago for 60 seconds
    When drill "bob@ci/drill-2" takes the drill lock
    Then the drill lock names "bob@ci/drill-2", acquired and renewed just now
    And the drill lock records one more holder transition than before

  Scenario: A drill keeps renewing its lock while it runs
    Given drill "alice@laptop/drill-1" holds the drill lock with a 3-second lease renewed every second
    Then its renewTime moves forward twice within 5 seconds
    And after its first 3-second lease has passed, drill "bob@ci/drill-2" is still refused

  Scenario: There is no lock to take where the drill's namespace does not exist
    Given the drill cluster
    When drill "bob@ci/drill-2" tries to take the drill lock in namespace "no-such-namespace"
    Then it is refused as bad input (exit 2), saying namespace "no-such-namespace" does not exist

  Scenario: docs/rbac.md shows exactly the identity the drill grants itself
    Then the YAML in docs/rbac.md is the drill's identity, object for object

  Scenario Outline: The drill's own identity is refused outside its Role: <action>
    Given the drill's own identity on the drill cluster
    When acting as it, the drill tries to <action>
    Then the API server refuses with status 403

    Examples:
      | action                                            |
      | delete deployment/flowengine in production        |
      | read the secrets in production                    |
      | patch a flowengine pod in production              |
      | create a deployment in production                 |
      | delete namespace production                       |
      | scale deployment/flowengine in staging            |
      | delete another service's Lease in production      |

  Scenario: Every runbook verb is allowed to the drill's own identity
    Given the drill world at Phase 6
    And the drill's own identity on the drill cluster
    When acting as it, the SRE performs Step 1: the allowlist is restricted to the pilot and rolled out
    Then REPO_ALLOWLIST of deployment/flowengine reads only the pilot, as the drill's identity sees it
    When acting as it, the SRE performs Step 2: FlowEngine is scaled down to the pilot's replicas
    Then deployment/flowengine runs 3 replicas, all Running and Ready, as the drill's identity sees them
    When acting as it, the SRE performs Step 4: the expanded repos' alert rules are backed up and deleted
    Then no alert rule of an expanded repo is left, and the runbook's own patch was refused for its schema, not for RBAC
    When acting as it, the alert rules are restored from those backups
    Then there are 10 PrometheusRules of expanded repos in namespace "monitoring", beside the pilot's own and the crash-loop rule
    And acting as it, the drill takes and releases its lock

  Scenario: The identity guard covers every destructive runbook call
    Given somebody else's cluster, where a FlowEngine world was made by hand
    And a TaskDB at the Phase 6 schema with a pre-rollback backup
    And the runbook aimed at them, with the cluster neither drill-made nor allowlisted
    Then the drill neither created nor recorded that cluster, and the TaskDB's schema is later than the pilot's
    When each destructive runbook action is tried:
      | action                    |
      | restrict_allowlist        |
      | scale_down                |
      | restart_with_pilot_config |
      | revert_schema             |
      | disable_expanded_alerts   |
      | restore_alert_rules       |
    Then every one was refused as an unsafe target, naming the cluster's fingerprint and --cluster-allowlist
    And deployment/flowengine, configmap/repo-config and every alert rule keep their resourceVersions
    And the TaskDB schema version and every table's rows are unchanged
