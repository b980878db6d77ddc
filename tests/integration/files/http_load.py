"""Bounded HTTP load from inside a lab VPS: a new connection per request, several threads.

    python3 http_load.py HOST PORT HOST_HEADER MAX_REQUESTS MAX_SECONDS THREADS [PATH]

Stops at MAX_REQUESTS or MAX_SECONDS, whichever comes first, and prints one JSON object:
{"ok": <200 answers>, "status": {<other status>: count}, "errors": {<exception>: count}, "seconds": s}.
Standard library only: it runs with the VPS's python3.
"""

import http.client
import json
import sys
import threading
import time


def main(argv):
    host, port, vhost = argv[1], int(argv[2]), argv[3]
    count, seconds, threads = int(argv[4]), float(argv[5]), int(argv[6])
    path = argv[7] if len(argv) > 7 else "/"
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
