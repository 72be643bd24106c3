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
