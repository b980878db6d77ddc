"""Bounded HTTP load from inside a lab VPS: a new connection per request, several threads.

    python3 http_load.py HOST PORT HOST_HEADER MAX_REQUESTS MAX_SECONDS THREADS [PATH] [tls]

With ``tls``, every request is a new TLS handshake with the host header as SNI (the certificate
is not checked: the point is that no handshake fails while certificates change).

Stops at MAX_REQUESTS or MAX_SECONDS, whichever comes first, and prints one JSON object:
{"ok": <200 answers>, "status": {<other status>: count}, "errors": {<exception>: count}, "seconds": s}.
Standard library only: it runs with the VPS's python3.
"""

import http.client
import json
import socket
import ssl
import sys
import threading
import time


def main(argv):
    host, port, vhost = argv[1], int(argv[2]), argv[3]
    count, seconds, threads = int(argv[4]), float(argv[5]), int(argv[6])
    path = argv[7] if len(argv) > 7 else "/"
    tls = len(argv) > 8 and argv[8] == "tls"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    lock = threading.Lock()
    stats = {"ok": 0, "status": {}, "errors": {}}
    deadline = time.monotonic() + seconds

    def record(key, kind):
        with lock:
            if kind == "ok":
                stats["ok"] += 1
            else:
                stats[kind][key] = stats[kind].get(key, 0) + 1

    def worker(requests):
        for unused in range(requests):
            if time.monotonic() > deadline:
                return
            try:
                conn = http.client.HTTPConnection(host, port, timeout=5)
                if tls:  # the handshake here, with the host header as SNI (http.client sends none for an address)
                    conn.sock = context.wrap_socket(socket.create_connection((host, port), timeout=5),
                                                    server_hostname=vhost)
                conn.request("GET", path, headers={"Host": vhost, "Connection": "close"})
                response = conn.getresponse()
                response.read()
                conn.close()
            except Exception as exc:  # every failure counts, whatever its kind
                record("%s: %s" % (type(exc).__name__, str(exc)[:80]), "errors")
                continue
            record(str(response.status), "ok" if response.status == 200 else "status")

    pool = [threading.Thread(target=worker, args=(count // threads,)) for unused in range(threads)]
    start = time.monotonic()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    stats["seconds"] = round(time.monotonic() - start, 2)
    print(json.dumps(stats))


if __name__ == "__main__":
    main(sys.argv)
