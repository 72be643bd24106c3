"""The monitoring chain beside the drill's world: Prometheus, Alertmanager and kube-state-metrics.

Prometheus evaluates the PrometheusRule objects of the cluster (rendered into rule files the way
prometheus-operator renders them), Alertmanager pages the notification sinks through its own
integrations, and a read-only PromQL client reads the embedded Prometheus or a team's own.
Every process listens on 127.0.0.1 and runs in its own process group.

One module per concern: ``rules`` (PrometheusRule -> rule files), ``process`` (start, readiness,
stop), ``prometheus``, ``alertmanager`` (with its silences), ``kube_state_metrics``, ``promql``
(the client) and ``errors``.
"""
