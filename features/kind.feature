@kind
Feature: kind, for real and offline
  A kind cluster made of Docker containers, from a node image built on this machine
  (Debian packages and Go-built Kubernetes; no registry is reached), created by the drill
  and deleted when it is done.

  Scenario: The cluster comes up with its control plane and CNI running
    Given a kind cluster created by the drill
    Then every node of the kind cluster is Ready
    And the kind API server reports a version starting with "v1.34."
    And in namespace kube-system of the kind cluster these pods are Running:
      | pod                     |
      | etcd                    |
      | kube-apiserver          |
      | kube-controller-manager |
      | kube-scheduler          |
      | kube-proxy              |
      | coredns                 |
      | rbdnet                  |

  Scenario: A locally built image rolls out with real pods
    Given a kind cluster created by the drill
    And a tiny image built on this machine and loaded into the kind cluster under a unique tag
    When a Deployment "hello" of that image with 2 replicas is created in a scratch namespace of the kind cluster
    Then the rollout of deployment/hello in the kind cluster completes with 2 available replicas within 120 seconds
    And every pod of deployment/hello runs on a kind node with an IP from the pod network
    And a pod of the kind cluster fetches a page from deployment/hello through its Service

  @rollback
  Scenario: Steps 1 to 5 on real FlowEngine pods, through the flowengine Service
    Given the drill world at Phase 6
    Then every flowengine pod runs the simulator image on a kind node, Ready, with an IP from the pod network
    When the incident "mass-failure" is injected
    Then every flowengine pod logs the incident "mass-failure" within 15 seconds
    When the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back
    When the SRE performs pre-rollback check 3 "Backup current state" within 5 minutes
    Then the TaskDB backup restores into a scratch database with the same rows and checksums
    And the pilot probe and the expanded-repo probe are running
    When the SRE performs Step 1 "Disable orchestrator for expanded repos" within 2 minutes
    Then REPO_ALLOWLIST of deployment/flowengine reads only the pilot
    And kubectl exec in every flowengine pod prints a REPO_ALLOWLIST of only the pilot
    And repo "compliance-service" is enabled
    And repo "financial-reporting" is disabled with reason "Restricted to pilot scope"
    When the SRE performs Step 2 "Scale down FlowEngine" within 3 minutes
    Then deployment/flowengine runs 3 replicas, all Running and Ready
    And every flowengine pod runs the simulator image on a kind node, Ready, with an IP from the pod network
    When the SRE performs Step 3 "Revert database schema" within 5 minutes
    Then the TaskDB schema version is "20251104_001"
    When the SRE performs Step 4 "Disable expanded repo alerts" within 2 minutes
    Then no "<repo>-alerts" PrometheusRule is left for an expanded repo
    When the SRE performs Step 5 "Verify pilot repo functionality" within 3 minutes
    Then the pilot flow completed in under 120 seconds, cost under $2.00 and passed 5 of 5 quality gates
    And strict verification of the pilot flow passed
    And every runbook step finished within its budget
    And the rollback execution took less than 10 minutes
    And the pilot probe saw 0 failed requests from Step 1 on

  @rollback
  Scenario: A real crash loop: the kubelet restarts the pods and backs off, and Step 2 brings FlowEngine back
    Given the drill world at Phase 6
    When the incident "crash-loop" is injected
    Then the flowengine pods go into CrashLoopBackOff with rising restart counts
    And deployment/flowengine has no available replica
    And the pilot repo is unavailable
    When the Incident Commander applies the decision framework to the live signals
    Then the decision is to roll back
    When the SRE performs Step 2 "Scale down FlowEngine" within 3 minutes
    Then deployment/flowengine runs 3 replicas, all Running and Ready
    And every flowengine pod runs the simulator image on a kind node, Ready, with an IP from the pod network
    And repo "compliance-service" is enabled
