# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The observability role's input rules: Prometheus durations and sizes, the alerts, Alertmanager's receivers.

Prometheus, Alertmanager and Loki would refuse a bad value only once their container starts on it;
these rules refuse it in the check play, before anything on the host changes, naming the variable.
"""

from __future__ import annotations

import re
from typing import Optional

from ansible_collections.rotor.vps.plugins.module_utils._validate import (
    SERVICE_ADDRESS_RE,
    duration_errors,
    hostname_errors,
    listed_name_errors,
    memory_errors,
    positive_number_errors,
    whole_number_errors,
)

# Every alert the role ships (roles/observability/templates/prometheus/rules.yml.j2): the keys of
# observability_alert_for, which sets how long each condition must hold before it fires.
ALERTS = (
    "TmpfsUsageHigh", "TmpfsUsageCritical", "CertificateRenewalDue", "CertificateExpiresSoon",
    "CertificateProbeExpiresSoon", "RotationStale", "RotationFailed", "ContainerRestarting", "ContainerUnhealthy",
    "HaproxyBackendDown", "PostgrestNotReady", "PgbouncerClientsWaiting", "HostDiskFilling", "HostMemoryPressure",
    "TargetDown", "HttpsNameDown", "DatabaseUnreachable", "HostMetricsStale", "BackupStale",
)
COMPONENTS = ("prometheus", "alertmanager", "node_exporter", "cadvisor", "blackbox", "postgres_exporter",
              "pgbouncer_exporter", "grafana", "loki", "alloy")
RECEIVER_TYPES = {
    "webhook": {"required": ("url",), "optional": ("bearer_token", "send_resolved")},
    "email": {"required": ("to", "from", "smarthost"),
              "optional": ("auth_username", "auth_password", "require_tls", "send_resolved")},
}
# A Prometheus duration: units from years down to milliseconds, largest first (15d, 1h30m, 500ms).
PROM_DURATION_RE = re.compile(r"^(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$")
# A Go duration (time.ParseDuration) with the units both readers share: 120h, 1h30m, 30s, 500ms.
GO_DURATION_RE = re.compile(r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$")
# A Prometheus size (--storage.tsdb.retention.size): a whole number and a unit.
PROM_SIZE_RE = re.compile(r"^[1-9][0-9]*(B|KB|MB|GB|TB|PB|EB)$")
RECEIVER_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
URL_RE = re.compile(r"^https?://[^\s/\"]+(/[^\s\"]*)?$")
EMAIL_RE = re.compile(r"^[^@\s\"]+@[^@\s\"]+$")
SMARTHOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*:[0-9]{1,5}$")
# A matcher of an Alertmanager route: label, operator, quoted value.
MATCHER_RE = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*\s*(=|!=|=~|!~)\s*"[^"\n]*"$')


def prom_duration_errors(value: object, where: str, *, allow_zero: bool = False) -> list[str]:
    """A Prometheus duration such as ``15d`` or ``1h30m`` (``0s`` only when ``allow_zero``)."""
    text = str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else ""
    match = PROM_DURATION_RE.fullmatch(text) if text else None
    if not match:
        return ["%s: %r must be a Prometheus duration: a whole number and a unit y, w, d, h, m, s or ms, largest "
                "first (e.g. 15d or 1h30m)" % (where, value)]
    if not allow_zero and not any(int(g) for g in match.groups()[1::2] if g):
        return ["%s: %r must be longer than zero" % (where, value)]
    return []


def receiver_errors(receivers: object, where: str = "observability_alert_receivers") -> list[str]:
    """Each receiver: a unique name, a known type and that type's fields."""
    if not isinstance(receivers, list):
        return ["%s: must be a list of receivers ({name, type, ...})" % where]
    errors: list[str] = []
    names: set = set()
    for index, receiver in enumerate(receivers):
        at = "%s[%d]" % (where, index)
        if not isinstance(receiver, dict):
            errors.append("%s: must be a dict with name and type" % at)
            continue
        errors += listed_name_errors(receiver.get("name"), at, names, RECEIVER_NAME_RE, "letters, digits, '_' and '-'")
        kind = receiver.get("type")
        if kind not in RECEIVER_TYPES:
            errors.append("%s.type: %r is not a receiver type this role writes; use one of %s"
                          % (at, kind, ", ".join(sorted(RECEIVER_TYPES))))
            continue
        errors += _receiver_field_errors(receiver, kind, at)
    return errors


def _receiver_field_errors(receiver: dict, kind: str, at: str) -> list[str]:
    rules = RECEIVER_TYPES[kind]
    errors = ["%s.%s: required for a %s receiver" % (at, key, kind) for key in rules["required"] if not receiver.get(key)]
    unknown = sorted(set(receiver) - {"name", "type"} - set(rules["required"]) - set(rules["optional"]))
    if unknown:
        errors.append("%s: %s not known for a %s receiver (known: %s)"
                      % (at, ", ".join(unknown), kind, ", ".join(rules["required"] + rules["optional"])))
    checks = {"url": URL_RE, "to": EMAIL_RE, "from": EMAIL_RE, "smarthost": SMARTHOST_RE}
    hints = {"url": "an http:// or https:// URL", "to": "an e-mail address", "from": "an e-mail address",
             "smarthost": "host:port of the mail server"}
    for key, pattern in checks.items():
        value = receiver.get(key)
        if value and (not isinstance(value, str) or not pattern.fullmatch(value)):
            errors.append("%s.%s: %r must be %s" % (at, key, value, hints[key]))
    if kind == "email" and bool(receiver.get("auth_username")) != bool(receiver.get("auth_password")):
        errors.append("%s: auth_username and auth_password go together" % at)
    for key in ("bearer_token", "auth_password"):
        if receiver.get(key) is not None and not isinstance(receiver.get(key), str):
            errors.append("%s.%s: must be a string" % (at, key))
    return errors


def route_errors(routes: object, receivers: object, where: str = "observability_alert_routes") -> list[str]:
    """Extra routes: each names a listed receiver and has matchers such as ``severity="critical"``."""
    if not isinstance(routes, list):
        return ["%s: must be a list of {receiver, matchers}" % where]
    known = {r.get("name") for r in receivers if isinstance(r, dict)} if isinstance(receivers, list) else set()
    errors: list[str] = []
    for index, route in enumerate(routes):
        at = "%s[%d]" % (where, index)
        if not isinstance(route, dict):
            errors.append("%s: must be a dict with receiver and matchers" % at)
            continue
        if route.get("receiver") not in known:
            errors.append("%s.receiver: %r is not a receiver of observability_alert_receivers" % (at, route.get("receiver")))
        matchers = route.get("matchers")
        if not isinstance(matchers, list) or not matchers:
            errors.append('%s.matchers: must be a non-empty list such as [severity="critical"]' % at)
            continue
        errors += ['%s.matchers[%d]: %r must be label, operator (=, !=, =~, !~) and a quoted value' % (at, i, m)
                   for i, m in enumerate(matchers) if not isinstance(m, str) or not MATCHER_RE.fullmatch(m)]
    return errors


def _ratio(value: object) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        ratio = float(value)
    except ValueError:
        return None
    return ratio if 0 < ratio <= 1 else None


def _secret_errors(s: dict, name: str, component: str) -> list[str]:
    if not s.get("observability_%s_enabled" % component):
        return []
    value = s.get(name)
    if not value or not isinstance(value, str):
        return ["%s: required while observability_%s_enabled is true; set it (from the vault)" % (name, component)]
    return []


def observability_input_errors(s: dict) -> list[str]:
    """The observability role's variables, by name."""
    errors: list[str] = []
    for component in COMPONENTS + ("collector",):
        if not isinstance(s.get("observability_%s_enabled" % component), bool):
            errors.append("observability_%s_enabled: must be true or false" % component)
    errors += prom_duration_errors(s.get("observability_retention_time"), "observability_retention_time")
    size = s.get("observability_retention_size")
    if not isinstance(size, str) or not PROM_SIZE_RE.fullmatch(size):
        errors.append("observability_retention_size: %r must be a whole number and a unit B, KB, MB, GB, TB, PB or EB "
                      "(e.g. 1GB)" % (size,))
    for name in ("observability_scrape_interval", "observability_evaluation_interval", "observability_alert_group_wait",
                 "observability_alert_group_interval", "observability_alert_repeat_interval",
                 "observability_alertmanager_retention", "observability_loki_retention",
                 "observability_collector_stale_after"):
        errors += prom_duration_errors(s.get(name), name)
    # Alertmanager's retention and cAdvisor's housekeeping (the scrape interval) are Go durations: no d, w or y.
    for name in ("observability_alertmanager_retention", "observability_scrape_interval"):
        value = s.get(name)
        if isinstance(value, str) and GO_DURATION_RE.fullmatch(value) is None and PROM_DURATION_RE.fullmatch(value):
            errors.append("%s: %r must use h, m, s or ms only (e.g. 120h), as %s reads it"
                          % (name, value, "Alertmanager" if "retention" in name else "cAdvisor"))
    errors += _alert_for_errors(s.get("observability_alert_for"))
    warning, critical = _ratio(s.get("observability_tmpfs_warning_ratio")), _ratio(s.get("observability_tmpfs_critical_ratio"))
    for name, value in (("observability_tmpfs_warning_ratio", warning), ("observability_tmpfs_critical_ratio", critical),
                        ("observability_memory_available_ratio", _ratio(s.get("observability_memory_available_ratio")))):
        if value is None:
            errors.append("%s: %r must be a number above 0 and at most 1 (e.g. 0.8)" % (name, s.get(name)))
    if warning is not None and critical is not None and warning >= critical:
        errors.append("observability_tmpfs_warning_ratio: %r must be below observability_tmpfs_critical_ratio (%r)"
                      % (s.get("observability_tmpfs_warning_ratio"), s.get("observability_tmpfs_critical_ratio")))
    errors += whole_number_errors(s.get("observability_disk_fill_hours"), "observability_disk_fill_hours", 1)
    errors += duration_errors(s.get("observability_collector_interval"), "observability_collector_interval")
    receivers = s.get("observability_alert_receivers")
    errors += receiver_errors(receivers)
    errors += route_errors(s.get("observability_alert_routes"), receivers)
    names = s.get("observability_probe_names")
    if not isinstance(names, list):
        errors.append("observability_probe_names: must be a list of host names")
    else:
        for index, name in enumerate(names):
            errors += hostname_errors(name, "observability_probe_names[%d]" % index)
    address = s.get("observability_probe_address")
    if not isinstance(address, str) or not SERVICE_ADDRESS_RE.fullmatch(address):
        errors.append("observability_probe_address: %r must be '<container name>:<port>' (such as rotor-haproxy:443)"
                      % (address,))
    bundle = s.get("observability_probe_ca_bundle") or ""
    if bundle and (not isinstance(bundle, str) or "-----BEGIN CERTIFICATE-----" not in bundle):
        errors.append("observability_probe_ca_bundle: must be PEM certificates (-----BEGIN CERTIFICATE-----), or empty")
    memory = s.get("observability_memory")
    if not isinstance(memory, dict) or set(memory) != set(COMPONENTS):
        errors.append("observability_memory: must give a limit for each of %s" % ", ".join(COMPONENTS))
    else:
        for component in COMPONENTS:
            errors += memory_errors(memory[component], "observability_memory.%s" % component)
    cpus = s.get("observability_cpus")
    if not isinstance(cpus, dict) or set(cpus) != set(COMPONENTS):
        errors.append("observability_cpus: must give a limit for each of %s" % ", ".join(COMPONENTS))
    else:
        for component in COMPONENTS:
            errors += positive_number_errors(cpus[component], "observability_cpus.%s" % component)
    errors += whole_number_errors(s.get("observability_pids_limit"), "observability_pids_limit", 16)
    errors += _secret_errors(s, "observability_postgres_monitor_password", "postgres_exporter")
    errors += _secret_errors(s, "observability_pgbouncer_stats_password", "pgbouncer_exporter")
    errors += _secret_errors(s, "observability_grafana_admin_password", "grafana")
    errors += _secret_errors(s, "observability_docker_api_token", "alloy")
    return errors


def _alert_for_errors(alert_for: object) -> list[str]:
    where = "observability_alert_for"
    if not isinstance(alert_for, dict):
        return ["%s: must map each alert to a duration" % where]
    errors = ["%s.%s: not an alert of this role (its alerts: %s)" % (where, name, ", ".join(ALERTS))
              for name in alert_for if name not in ALERTS]
    missing = [name for name in ALERTS if name not in alert_for]
    if missing:
        errors.append("%s: %s missing; the dict replaces the role's as a whole, so give every alert a duration"
                      % (where, ", ".join(missing)))
    for name in ALERTS:
        if name in alert_for:
            errors += prom_duration_errors(alert_for[name], "%s.%s" % (where, name), allow_zero=True)
    return errors
