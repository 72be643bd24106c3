@decision
Feature: Deciding to roll back (RB-LAUNCH-002, Decision Framework)
  Execute the rollback if any P1 condition holds; after a 30-minute triage if a P2 condition holds;
  never for a single repo, intermittent errors or user error. "When in doubt, rollback" —
  but the NO-GO cases are where a rollback would hurt more than it helps.

  Rule: P1 incidents call for an immediate rollback

    Scenario Outline: P1 — <criterion>
      Given the signals <signals>
      When the Incident Commander applies the decision framework
      Then the decision is "P1" with action "roll back"
      And the criteria met include "<id>"
      And no triage wait applies

      Examples:
        | criterion                                  | signals                                    | id                          |
        | FlowEngine crash loop over 15 minutes      | crash loop unavailable for 901 seconds     | p1-crash-loop               |
        | TaskDB integrity compromised               | TaskDB integrity failing                   | p1-db-corruption            |
        | Credentials leaked                         | credentials leaked                         | p1-security-breach          |
        | Daily spend over $200                      | daily spend of 200.01 dollars              | p1-cost-runaway             |
        | More than 10 repos failing simultaneously  | 11 repos failing with cause "model-timeout" | p1-mass-concurrent-failures |

  Rule: P2 incidents call for a rollback after the 30-minute triage

    Scenario Outline: P2 — <criterion>
      Given the signals <signals>
      When the Incident Commander applies the decision framework
      Then the decision is "P2" with action "triage then roll back"
      And the criteria met include "<id>"
      And the triage wait is 30 minutes

      Examples:
        | criterion                                   | signals                                          | id                         |
        | Kill-rate under 60% on half the repos       | kill-rate 0.59 on 5 of 10 repos                  | p2-quality-degradation     |
        | P95 over 150 s for over 2 hours             | P95 of 151 seconds for 7201 seconds              | p2-slo-violation           |
        | All 3 model providers rate-limiting         | 3 model providers rate-limited                   | p2-model-quota-exhaustion  |
        | 3 repos failing with one root cause         | 3 repos failing with cause "shared-cache"        | p2-cascading-failures      |
        | Phase 6 mass failure: all 10 with one cause | 10 repos failing with cause "model-timeout"      | p2-cascading-failures      |

  Rule: NO-GO: do not roll back

    Scenario Outline: NO-GO — <criterion>
      Given the signals <signals>
      When the Incident Commander applies the decision framework
      Then the decision is "<priority>" with action "<action>"
      And the criteria met include "<id>"

      Examples:
        | criterion                         | signals                                    | priority | action           | id                |
        | A single repo failing             | 1 repos failing with cause "bad-fixture"   | NO-GO    | isolate repo     | nogo-single-repo  |
        | Intermittent errors under 5%      | a failure ratio of 4.9 percent             | NO-GO    | do not roll back | nogo-intermittent |
        | User error: a wrong configuration | a config validation error                  | NO-GO    | do not roll back | nogo-user-error   |

  Rule: The edges of each threshold are the runbook's

    Scenario Outline: Just under a P1 threshold is not P1
      Given the signals <signals>
      When the Incident Commander applies the decision framework
      Then the decision is not "P1"

      Examples:
        | signals                                     |
        | crash loop unavailable for 900 seconds      |
        | daily spend of 200.00 dollars               |
        | 10 repos failing with cause "model-timeout" |

    Scenario Outline: Just outside a P2 threshold is not P2
      Given the signals <signals>
      When the Incident Commander applies the decision framework
      Then the decision is not "P2"

      Examples:
        | signals                                   |
        | kill-rate 0.60 on 5 of 10 repos           |
        | kill-rate 0.59 on 49 of 100 repos         |
        | P95 of 150 seconds for 7201 seconds       |
        | P95 of 151 seconds for 7200 seconds       |
        | 2 repos failing with cause "shared-cache" |
        | 2 model providers rate-limited            |

    Scenario: A 5% failure ratio is not intermittent
      Given the signals a failure ratio of 5.0 percent
      When the Incident Commander applies the decision framework
      Then the criteria met do not include "nogo-intermittent"
