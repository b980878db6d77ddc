"""haproxy_command against a UNIX socket that answers like HAProxy's CLI (one command per connection)."""

from __future__ import annotations

import os
import socket
import threading
import time


def serve(path: str, answers: dict, *, after: float = 0.0, connections: int = 1) -> threading.Thread:
    """Answer ``connections`` commands at ``path`` (bound only after ``after`` seconds), then stop."""

    def run():
        time.sleep(after)
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen(1)
        for _count in range(connections):
            conn, _address = server.accept()
            command = b""
            while not command.endswith(b"\n"):
                chunk = conn.recv(1024)
                if not chunk:
                    break
                command += chunk
            conn.sendall(answers.get(command.decode().strip(), "Unknown command.\n").encode())
            conn.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_answer_expect_and_wait(tmp_path, run_module):
    path = str(tmp_path / "admin.sock")
    thread = serve(path, {"show info": "Name: HAProxy\nVersion: 3.0\n"}, after=0.5)
    result = run_module("haproxy_command", {"socket": path, "command": "show info", "expect": "^Name: HAProxy",
                                            "wait": 10})
    thread.join(5)
    assert result["changed"] is False and result["answer"].startswith("Name: HAProxy"), result


def test_an_answer_that_does_not_match_fails_with_it(tmp_path, run_module):
    path = str(tmp_path / "master.sock")
    thread = serve(path, {"reload": "Success=0\n--\n[ALERT] config: parsing error\n"})
    result = run_module("haproxy_command", {"socket": path, "command": "reload", "expect": "^Success=1",
                                            "changes": True})
    thread.join(5)
    assert result["failed"] is True
    assert "does not match '^Success=1'" in result["msg"] and "parsing error" in result["msg"], result


def test_no_socket_fails_after_the_wait(tmp_path, run_module):
    start = time.monotonic()
    result = run_module("haproxy_command", {"socket": str(tmp_path / "none.sock"), "command": "show info",
                                            "wait": 1})
    assert result["failed"] is True and "Could not send 'show info'" in result["msg"], result
    assert 1 <= time.monotonic() - start < 10


def test_check_mode_sends_no_change(tmp_path, run_module):
    path = str(tmp_path / "master.sock")
    result = run_module("haproxy_command", {"socket": path, "command": "reload", "changes": True}, check=True)
    assert result["changed"] is True and result["answer"] == "" and not os.path.exists(path)


def test_a_bad_expression_is_named(tmp_path, run_module):
    result = run_module("haproxy_command", {"socket": str(tmp_path / "s"), "command": "show info", "expect": "("})
    assert result["failed"] is True and result["msg"].startswith("expect: '(' is not a regular expression")
