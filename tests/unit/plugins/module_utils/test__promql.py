"""The metric names a PromQL expression selects, and the queries of a Grafana dashboard."""

from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._promql import dashboard_queries, metric_names


@pytest.mark.parametrize(
    "expr,expected",
    [
        ("up", {"up"}),
        ("up == 0", {"up"}),
        ('probe_success{job="postgrest_ready"}', {"probe_success"}),
        # Functions, aggregations and their grouping lists.
        ("sum by (proxy, code) (rate(haproxy_backend_http_responses_total[5m]))",
         {"haproxy_backend_http_responses_total"}),
        ("sum(rate(x_total[5m])) by (job) / sum without (instance) (y)", {"x_total", "y"}),
        ("topk(5, node_load1)", {"node_load1"}),
        ("count_values(\"version\", build_info)", {"build_info"}),
        ("time() - rotor_rotation_last_success_timestamp_seconds", {"rotor_rotation_last_success_timestamp_seconds"}),
        ("vector(1)", set()),
        # Binary operators with vector matching and keywords.
        ("a / on (instance) group_left (name) b", {"a", "b"}),
        ("a * ignoring(code) group_right b", {"a", "b"}),
        ("a > bool 0 and b or c unless d", {"a", "b", "c", "d"}),
        ("a atan2 b", {"a", "b"}),
        # Label names and values, matchers of every kind, regexes holding braces.
        ('x{name!="", code=~"5..", mount!~"/run/.*", path="{a}"}', {"x"}),
        ('{__name__="up", job="node"}', {"up"}),
        ('{__name__=~"node_.*"}', set()),
        ('{"dotted.metric.name", job="x"}', {"dotted.metric.name"}),
        # Durations, subqueries, offsets and the @ modifier.
        ("rate(x[1h30m])", {"x"}),
        ("max_over_time(rate(x[5m])[1h:30s])", {"x"}),
        ("x offset 5m", {"x"}),
        ("x offset -1d @ end()", {"x"}),
        ("x @ 1609746000", {"x"}),
        # Numbers are not metric names.
        ("x > 1e3 + 0x1f - .5 + Inf - NaN", {"x"}),
        ("predict_linear(node_filesystem_avail_bytes[6h], 24 * 3600) < 0", {"node_filesystem_avail_bytes"}),
        # Strings and comments.
        ('label_replace(up, "dst", "$1", "src", "(.*)")', {"up"}),
        ("up # and not_a_metric\n", {"up"}),
        # A dashboard's variables.
        ("rate(x[$__rate_interval]) / ignoring(y) increase(z[${__range}])", {"x", "z"}),
        # Recording-rule names.
        ("job:http_requests:rate5m", {"job:http_requests:rate5m"}),
        ("", set()),
    ],
)
def test_metric_names(expr, expected):
    assert metric_names(expr) == expected


PROMETHEUS = {"type": "prometheus", "uid": "rotor-prometheus"}
LOKI = {"type": "loki", "uid": "rotor-loki"}


@pytest.mark.parametrize(
    "dashboard,expected",
    [
        ({}, []),
        ({"panels": [{"title": "Text", "type": "text"}]}, []),
        (
            {"panels": [{"title": "Load", "datasource": PROMETHEUS,
                         "targets": [{"refId": "A", "datasource": PROMETHEUS, "expr": "node_load1"},
                                     {"refId": "B", "expr": "node_load5"}]}]},
            [("Load", "rotor-prometheus", "node_load1"), ("Load", "rotor-prometheus", "node_load5")],
        ),
        (
            {"panels": [{"title": "Logs", "datasource": PROMETHEUS,
                         "targets": [{"refId": "A", "datasource": LOKI, "expr": '{job="rotor-audit"}'}]}]},
            [("Logs", "rotor-loki", '{job="rotor-audit"}')],
        ),
        # Rows: an open one's panels follow it, a collapsed one holds them.
        (
            {"panels": [{"title": "Row", "type": "row", "collapsed": True,
                         "panels": [{"title": "Inner", "datasource": "Prometheus", "targets": [{"expr": "up"}]}]},
                        {"title": "After", "datasource": PROMETHEUS, "targets": [{"expr": "x"}]}]},
            [("Inner", "Prometheus", "up"), ("After", "rotor-prometheus", "x")],
        ),
        ({"panels": [{"title": "None", "targets": [{"refId": "A"}]}]}, [("None", "", "")]),
    ],
)
def test_dashboard_queries(dashboard, expected):
    assert dashboard_queries(dashboard) == expected
