"""Backend files and the host map: parsed, changed and rendered without touching foreign lines."""

from __future__ import annotations

import pytest

from ansible_collections.rotor.vps.plugins.module_utils._haproxy_files import (
    BackendFile,
    ConfigFileError,
    Server,
    parse_map,
    render_map,
)


def test_role_file_gains_servers_and_keeps_its_backend_line():
    parsed = BackendFile.parse("# made by the haproxy role\nbackend web from web-settings\n", "web.cfg")
    assert parsed.backend == "web" and parsed.servers == ()
    text = parsed.with_servers([Server("web-1", "10.0.0.1:8080", "check inter 2s")]).render()
    assert "backend web from web-settings\n    server web-1 10.0.0.1:8080 check inter 2s\n" in text
    again = BackendFile.parse(text, "web.cfg")
    assert again.servers == (Server("web-1", "10.0.0.1:8080", "check inter 2s"),)
    assert again.render() == text


def test_other_lines_of_the_section_are_kept():
    parsed = BackendFile.parse("backend web from s\n  http-request set-header X-A b\n  server a 1.2.3.4:80 check\n", "f")
    assert parsed.tail == ("    http-request set-header X-A b",)
    assert "    http-request set-header X-A b\n" in parsed.with_servers([]).render()


@pytest.mark.parametrize("text, message", [
    ("", "has no 'backend' line"),
    ("server a 1.2.3.4:80\n", "expected the 'backend' line first"),
    ("backend a\nbackend b\n", "a second section"),
    ("backend a\nfrontend b\n", "a second section"),
])
def test_unexpected_files_are_refused(text, message):
    with pytest.raises(ConfigFileError, match=message):
        BackendFile.parse(text, "f")


def test_map_updates_keep_comments_and_order():
    text = "# routes\na.test web\nb.test api\n\nc.test web\n"
    assert parse_map(text) == [("a.test", "web"), ("b.test", "api"), ("c.test", "web")]
    out = render_map(text, {"b.test": "web", "d.test": "web"}, {"c.test"})
    assert out == "# routes\na.test web\nb.test web\n\nd.test web\n"
    assert render_map("", {"a.test": "web"}, set()) == "a.test web\n"
    assert render_map("a.test web\n", {}, {"a.test"}) == ""
