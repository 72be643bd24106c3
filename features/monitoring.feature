@monitoring
Feature: Detection through the real monitoring chain (RB-LAUNCH-002, "Testing & Validation")
  Prometheus evaluates the PrometheusRules that are in the cluster, Alertmanager pages the on-call,
  and the drill measures detection from the incident to that page. Step 4 is proven by what
  Prometheus has loaded and is firing, not by the objects alone.

  Scenario: A mass failure pages PagerDuty through Alertmanager, and Step 4 unloads only the expanded repos' alerts
    Given the drill world at Phase 7
    When the incident "mass-failure" is injected
    And Alertmanager's page for the incident is awaited
    Then the on-call was paged by Alertmanager after the injection
    When the SRE performs Step 4 "Disable expanded repo alerts" within 2 minutes
    Then Prometheus has loaded no rule group of an expanded repo and holds no alert for one
    And Prometheus still has the pilot's rule group loaded
