@environment
Feature: A real drill environment
  The drill rehearses the runbook against a real Kubernetes API server and a real PostgreSQL,
  both created by the drill itself on this machine and removed when it is done.

  Scenario: The API server is reachable and of the expected version
    Given the drill cluster
    Then the API server reports a version starting with "v1.34."
    And at least 1 node is Ready

  Scenario: A Deployment really rolls out
    Given a scratch namespace
    When a Deployment "probe" with 3 replicas is created there
    Then the rollout of deployment/probe completes with 3 available replicas within 60 seconds

  Scenario: RBAC denies a ServiceAccount that holds no role
    Given a scratch namespace
    And a ServiceAccount "nobody" without any role there
    When "nobody" tries to list deployments in namespace "production"
    Then the API server refuses with status 403

  Scenario: TaskDB answers and its dump restores
    Given the TaskDB
    Then it reports PostgreSQL major version 15
    And a pg_dump of it restores into a scratch database with the same rows

  Scenario: The identity guard refuses a cluster the drill did not create
    Given a second control plane started outside any drill environment
    When the drill is run against it with --target kubeconfig and no allowlist
    Then the command exits with code 2 and one line naming the fingerprint and --cluster-allowlist
    And no drill namespace was created on it
    When its fingerprint is written to an allowlist file
    Then "rollback-drill check-target" accepts it with that allowlist
