"""Audit lines are whole JSON records; textfile metrics keep their counters across runs."""

from __future__ import annotations

import json
import os

from ansible_collections.rotor.vps.plugins.module_utils._audit import append_audit, update_metrics


def test_audit_appends_json_lines(tmp_path):
    path = str(tmp_path / "log" / "rotation.jsonl")
    append_audit(path, {"service": "web", "result": "ok"})
    append_audit(path, {"service": "web", "result": "failed"})
    lines = [json.loads(line) for line in open(path)]
    assert [line["result"] for line in lines] == ["ok", "failed"]
    assert all(line["time"].endswith("Z") for line in lines)
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_metrics_count_across_updates(tmp_path):
    update_metrics(str(tmp_path), "web", ok=True, duration=1.25)
    update_metrics(str(tmp_path), "web", ok=False, duration=3.0)
    update_metrics(str(tmp_path), "web", ok=True, duration=0.5, sessions_cut=2)
    text = (tmp_path / "rotation_web.prom").read_text()
    assert 'rotor_rotation_replacements_total{service="web"} 2\n' in text
    assert 'rotor_rotation_failures_total{service="web"} 1\n' in text
    assert 'rotor_rotation_sessions_cut_total{service="web"} 2\n' in text
    assert 'rotor_rotation_last_duration_seconds{service="web"} 0.5\n' in text
    assert "# TYPE rotor_rotation_failures_total counter" in text


def test_textfile_writer_is_general(tmp_path):
    """Any families and labels: values read back per label set, label values escaped."""
    from ansible_collections.rotor.vps.plugins.module_utils._audit import read_textfile, write_textfile

    path = str(tmp_path / "sub" / "certs.prom")
    families = {"rotor_cert_expiry_timestamp_seconds": ("gauge", "When the certificate expires.")}
    labels = {"domain": 'a"b.test', "site": "shop"}
    write_textfile(path, families, labels, {"rotor_cert_expiry_timestamp_seconds": 1700000000.5})
    text = (tmp_path / "sub" / "certs.prom").read_text()
    assert 'rotor_cert_expiry_timestamp_seconds{domain="a\\"b.test",site="shop"} 1700000000.5\n' in text
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert read_textfile(path, labels) == {"rotor_cert_expiry_timestamp_seconds": 1700000000.5}
    assert read_textfile(path, {"domain": "other"}) == {}
