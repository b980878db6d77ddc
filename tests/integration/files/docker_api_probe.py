"""Requests to the Docker API broker (rotor.vps.socket_proxy) that it must deny, and some it must let through.

Run on the VPS (python3, standard library only) against the broker's addresses; prints one JSON
object per request: the case's id, what it expects ("deny" or "allow"), the answer's status and
whether the answer is HAProxy's own error page (a denial by the broker, which the engine never saw).
Raw sockets, so that requests no HTTP library would send (no Host, HTTP/1.0, encodings, two
Authorization headers, a body on GET, a backslash) are sent as written.

The unit tests read the same table (``cases``): every case marked ``model`` (its method, path and
query alone decide) must be refused or allowed by ``_socket_proxy.allows`` as here.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

# Paths of the endpoints the token clients may read ({c}: a container, {n}: a network).
ALLOWED_PATHS = ("/_ping", "/version", "/info", "/events", "/containers/json", "/containers/{c}/json",
                 "/containers/{c}/logs", "/networks", "/networks/{n}")
CADVISOR_PATHS = ("/_ping", "/version", "/info", "/containers/{c}/json")
METHODS = ("POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "get", "Get", "FOO", "CONNECT")
# GET of what is not listed: writes, exec, archive, export, attach, images, the swarm, the system.
FORBIDDEN_PATHS = (
    "/containers/{c}/exec", "/exec/0123abcd/json", "/exec/0123abcd/start", "/containers/{c}/archive?path=/etc",
    "/containers/{c}/archive", "/containers/{c}/export", "/containers/{c}/attach", "/containers/{c}/attach/ws",
    "/containers/{c}/top", "/containers/{c}/stats", "/containers/{c}/changes", "/containers/{c}/wait",
    "/containers/{c}/kill", "/containers/{c}/stop", "/containers/{c}/start", "/containers/{c}/restart",
    "/containers/{c}/pause", "/containers/{c}/unpause", "/containers/{c}/update", "/containers/{c}/rename",
    "/containers/{c}/resize", "/containers/create", "/containers/prune", "/commit", "/build", "/build/prune",
    "/images/json", "/images/create", "/images/{c}/get", "/images/get", "/images/debian/json", "/images/search",
    "/images/prune", "/volumes", "/volumes/create", "/secrets", "/configs", "/services", "/nodes", "/swarm",
    "/plugins", "/session", "/auth", "/system/df", "/distribution/debian/json", "/tasks", "/grpc",
    "/networks/{n}/connect", "/networks/{n}/disconnect", "/", "/v1.41",
    "/v1.41/", "/containers", "/containers/", "/containers/{c}", "/containers/{c}/json/extra", "/containers/json/",
    "/_ping/", "/version/x", "/v2.0/info", "/v1.411/info", "/V1.41/info", "/Info", "/INFO", "/containers/JSON",
    "/v1.41/containers/{c}/exec", "/v1.41/containers/{c}/archive", "/v1.41/containers/{c}/export",
    "/v1.41/images/create", "/containers/.hidden/json", "/containers/-x/json",
)
# Encodings the engine would decode after the broker matched the path.
ENCODED_PATHS = (
    "/containers/{c}/%65xec", "/%63ontainers/json", "/containers%2fjson", "/containers/{c}%2fexec",
    "/containers/{c}/json%00", "/_ping%20", "/containers/%2e%2e/exec", "/containers/json/%2e%2e/%2e%2e/exec",
    "/containers/%252e%252e/exec", "/containers/{c}/%2565xec", "/containers/json%3fall=1", "/info%2f",
    "/containers/%7b%7d/json", "/%2e%2e/info",
)
TRAVERSAL_PATHS = (
    "/containers/json/../../exec", "/containers/{c}/json/../exec", "/containers/../images/json",
    "/containers/{c}/logs/../../../exec/abc/start", "/./info", "//info", "/containers//json",
    "/containers/{c}/json;/../exec", "/containers/{c}/../{c}/export", "/v1.41/../info",
    "\\containers\\json", "/containers\\{c}\\json",
)
# Query strings an endpoint does not take.
QUERY_PATHS = (
    "/_ping?x=1", "/version?", "/info?a", "/containers/json?all=1&x=1", "/containers/{c}/logs?follow=1&foo=bar",
    "/containers/json?all=1;x", "/events?since=1&until=2&filters={}", "/containers/{c}/json?size=1&size2=1",
    "/networks?verbose=1", "/containers/json?all=1&", "/containers/json?&all=1", "/containers/json?all",
)


def request(method: str, target: str, headers: list[tuple[str, str]], version: str = "HTTP/1.1",
            body: bytes = b"") -> bytes:
    lines = ["%s %s %s" % (method, target, version)] + ["%s: %s" % pair for pair in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def cases(token: str, container: str, network: str) -> list[dict]:
    """Every request of the token frontend: {id, raw, expect, model (method, target) or None}."""
    auth = ("Authorization", "Bearer " + token)
    host = ("Host", "docker")
    close = ("Connection", "close")
    table: list[dict] = []

    def add(case_id: str, raw: bytes, expect: str = "deny", model: tuple | None = None) -> None:
        table.append({"id": case_id, "raw": raw, "expect": expect, "model": model})

    def fill(path: str) -> str:
        return path.replace("{c}", container).replace("{n}", network)

    for path in ALLOWED_PATHS:
        for method in METHODS:
            target = fill(path)
            add("method %s %s" % (method, path), request(method, target, [host, auth, close]), model=(method, target))
    for group, paths in (("path", FORBIDDEN_PATHS), ("encoded", ENCODED_PATHS), ("traversal", TRAVERSAL_PATHS),
                         ("query", QUERY_PATHS)):
        for path in paths:
            target = fill(path)
            add("%s %s" % (group, path), request("GET", target, [host, auth, close]), model=("GET", target))
    upper = token.upper() if token.upper() != token else token.lower()
    tokens = {
        "missing": [],
        "wrong": [("Authorization", "Bearer " + "x" * len(token))],
        "case-changed": [("Authorization", "Bearer " + upper)],
        "lower-case scheme": [("Authorization", "bearer " + token)],
        "no scheme": [("Authorization", token)],
        "basic": [("Authorization", "Basic " + token)],
        "double space": [("Authorization", "Bearer  " + token)],
        "truncated": [("Authorization", "Bearer " + token[:-1])],
        "one more character": [("Authorization", "Bearer " + token + "x")],
        "twice": [auth, auth],
        "wrong then right": [("Authorization", "Bearer wrong"), auth],
        "in a list": [("Authorization", "Bearer wrong, Bearer " + token)],
        "proxy-authorization": [("Proxy-Authorization", "Bearer " + token)],
        "cookie": [("Cookie", "token=" + token)],
        "x-auth-token": [("X-Auth-Token", token)],
    }
    for name, headers in tokens.items():
        for path in ("/_ping", "/info", "/containers/json"):
            add("token %s %s" % (name, path), request("GET", path, [host, *headers, close]))
    for path in ("/_ping?access_token=%s" % token, "/info?token=%s" % token, "/containers/json?auth=%s" % token):
        add("token in the query %s" % path.split("=")[0], request("GET", path, [host, close]))
    add("HTTP/1.0 without Host", request("GET", "/_ping", [auth], "HTTP/1.0"))
    add("HTTP/1.0 with Host", request("GET", "/_ping", [host, auth], "HTTP/1.0"))
    add("HTTP/1.1 without Host", request("GET", "/_ping", [auth, close]))
    add("two Host headers", request("GET", "/_ping", [host, ("Host", "other"), auth, close]))
    add("a body on GET", request("GET", "/_ping", [host, auth, ("Content-Length", "5"), close], body=b"hello"))
    add("chunked GET", request("GET", "/_ping", [host, auth, ("Transfer-Encoding", "chunked"), close], body=b"0\r\n\r\n"))
    upgrade = [host, auth, ("Connection", "Upgrade"), ("Upgrade", "websocket")]
    add("upgrade", request("GET", fill("/containers/{c}/logs"), upgrade))
    add("absolute URI of exec", request("GET", fill("http://docker/containers/{c}/exec"), [host, auth, close]))
    add("asterisk", request("GET", "*", [host, auth, close]))
    add("control character", request("GET", "/_ping\x01", [host, auth, close]))
    return table


def allowed_cases(token: str, container: str, network: str, now: int) -> list[dict]:
    """Requests of the token frontend that must answer 200 with the engine's data."""
    headers = [("Host", "docker"), ("Authorization", "Bearer " + token), ("Connection", "close")]
    filters = "%7B%22name%22%3A%5B%22" + container + "%22%5D%7D"
    targets = ["/_ping", "/v1.41/_ping", "/version", "/v1.41/version", "/info", "/containers/json",
               "/containers/json?all=1&filters=" + filters, "/containers/%s/json" % container,
               "/containers/%s/json?size=1" % container, "/containers/%s/logs?stdout=1&stderr=1&tail=5" % container,
               "/events?since=%d&until=%d" % (now - 5, now), "/networks", "/networks/%s" % network]
    table = [{"id": "GET " + target, "raw": request("GET", target, headers), "expect": "allow",
              "model": ("GET", target)} for target in targets]
    table.append({"id": "HEAD /_ping", "raw": request("HEAD", "/_ping", headers), "expect": "allow",
                  "model": ("HEAD", "/_ping")})
    return table


def cadvisor_cases(container: str) -> tuple[list[dict], list[dict]]:
    """The cAdvisor frontend (no token): what it lets through from its network, and what it denies there."""
    headers = [("Host", "docker"), ("Connection", "close")]
    allowed = [{"id": "cadvisor GET " + target, "raw": request("GET", target, headers), "expect": "allow",
                "model": ("GET", target)}
               for target in ("/_ping", "/v1.40/version", "/v1.40/info", "/v1.40/containers/%s/json" % container)]
    denied = [{"id": "cadvisor GET " + target, "raw": request("GET", target, headers), "expect": "deny",
               "model": ("GET", target)}
              for target in ("/containers/json", "/events", "/containers/%s/logs?stdout=1" % container, "/networks",
                             "/containers/%s/exec" % container, "/containers/%s/export" % container,
                             "/containers/%s/archive?path=/" % container, "/images/json", "/containers/../info",
                             "/%69nfo", "/v1.40/containers/%s/json?size=1&x=1" % container)]
    denied += [{"id": "cadvisor %s %s" % (method, target), "raw": request(method, target, headers), "expect": "deny",
                "model": (method, target)}
               for method, target in (("POST", "/containers/create"), ("DELETE", "/containers/%s" % container),
                                      ("POST", "/containers/%s/exec" % container), ("PUT", "/_ping"))]
    return allowed, denied


def send(address: str, port: int, raw: bytes, timeout: float = 10) -> dict:
    """Send one request on a new connection; the status and the first bytes of the answer's body."""
    started = time.monotonic()
    data = b""
    try:
        with socket.create_connection((address, port), timeout=timeout) as conn:
            conn.sendall(raw)
            while time.monotonic() - started < timeout:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep and b"content-length:" in head.lower():
                    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                    if len(body) >= length:
                        break
    except OSError as exc:
        return {"status": 0, "error": str(exc), "body": ""}
    head, _sep, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n")[0].decode("latin-1")
    parts = status_line.split()
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return {"status": status, "body": body[:65536].decode("utf-8", "replace"), "head": head.decode("latin-1")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True, help="the broker's address on its clients' network")
    parser.add_argument("--port", type=int, default=2375)
    parser.add_argument("--cadvisor-address", help="the broker's address on cAdvisor's network")
    parser.add_argument("--cadvisor-port", type=int, default=2376)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--container", required=True, help="a container the allowed requests read")
    parser.add_argument("--network", required=True, help="a network the allowed requests read")
    args = parser.parse_args()
    with open(args.token_file, encoding="ascii") as handle:
        token = handle.read().strip()
    runs = [(args.address, args.port, case) for case in cases(token, args.container, args.network)]
    runs += [(args.address, args.port, case)
             for case in allowed_cases(token, args.container, args.network, int(time.time()))]
    if args.cadvisor_address:
        allowed, denied = cadvisor_cases(args.container)
        runs += [(args.cadvisor_address, args.cadvisor_port, case) for case in allowed + denied]
        # From the clients' network, cAdvisor's port lets nothing through.
        runs += [(args.address, args.cadvisor_port, dict(case, id="wrong network " + case["id"], expect="deny"))
                 for case in allowed]
    for address, port, case in runs:
        answer = send(address, port, case["raw"])
        print(json.dumps({"id": case["id"], "expect": case["expect"], "port": port, **answer}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
