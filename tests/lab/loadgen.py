"""Fixed-rate HTTP load for the lab: counts every request that did not get its expected answer.

Used by the integration tests and the benchmarks. It only sends to 127.0.0.1 or to the address
of a lab container the caller created, and it always stops: after ``count`` requests or
``duration`` seconds, whichever comes first.

    python3 tests/lab/loadgen.py --target 172.18.0.5:80 --host web.lab.test --rate 500 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import ssl
import threading
import time
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    errors: collections.Counter = field(default_factory=collections.Counter)
    served_by: collections.Counter = field(default_factory=collections.Counter)
    seconds: float = 0.0
    late: int = 0  # requests sent more than 100 ms after their slot (the generator fell behind)
    latencies: list = field(default_factory=list)  # seconds, of the requests that succeeded

    def latency(self, quantile: float) -> float:
        """Latency (ms) at ``quantile`` (0..1) of the successful requests."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return round(1000 * ordered[min(len(ordered) - 1, int(quantile * len(ordered)))], 1)

    def as_dict(self) -> dict:
        return {"sent": self.sent, "ok": self.ok, "failed": self.failed, "errors": dict(self.errors),
                "served_by": dict(self.served_by), "seconds": round(self.seconds, 2), "late": self.late,
                "rate": round(self.sent / self.seconds, 1) if self.seconds else 0,
                "latency_ms": {"p50": self.latency(0.5), "p99": self.latency(0.99), "max": self.latency(1.0)}}


def _check_target(address: str) -> None:
    ip = ipaddress.ip_address(address)
    if not (ip.is_loopback or ip.is_private):
        raise ValueError("load may only go to 127.0.0.1 or a lab container's private address, not %s" % address)


async def _read_chunks(reader: asyncio.StreamReader) -> None:
    """Skip a chunked body (PostgREST streams its JSON that way): chunks, the last one empty, then trailers."""
    while True:
        size = int((await asyncio.wait_for(reader.readline(), 10)).split(b";")[0], 16)
        if size == 0:
            break
        await asyncio.wait_for(reader.readexactly(size + 2), 10)
    while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
        pass


async def _worker(target: tuple, host: str, path: str, interval: float, start: float, until: float,
                  budget: list, result: LoadResult, stop: threading.Event, offset: float,
                  tls: ssl.SSLContext | None = None) -> None:
    reader = writer = None
    slot = start + offset
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rotor-loadgen\r\n\r\n" % (path, host)).encode()
    while not stop.is_set():
        now = time.monotonic()
        if slot > until or now > until or budget[0] <= 0:
            break
        if slot > now:
            await asyncio.sleep(slot - now)
        elif now - slot > 0.1:
            result.late += 1
        budget[0] -= 1
        slot += interval
        result.sent += 1
        began = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    *target, ssl=tls, server_hostname=host if tls else None), 5)
            writer.write(request)
            status_line = await asyncio.wait_for(reader.readline(), 10)
            if not status_line:
                raise ConnectionError("connection closed")
            status = int(status_line.split()[1])
            length, chunked, close, served = 0, False, False, ""
            while True:
                line = await asyncio.wait_for(reader.readline(), 10)
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _colon, value = line.decode("latin-1").partition(":")
                name, value = name.strip().lower(), value.strip()
                if name == "content-length":
                    length = int(value)
                elif name == "transfer-encoding" and value.lower() == "chunked":
                    chunked = True
                elif name == "connection" and value.lower() == "close":
                    close = True
                elif name == "x-served-by":
                    served = value
            if chunked:
                await _read_chunks(reader)
            elif length:
                await asyncio.wait_for(reader.readexactly(length), 10)
            if status == 200:
                result.ok += 1
                result.latencies.append(time.monotonic() - began)
                result.served_by[served] += 1
            else:
                result.failed += 1
                result.errors["HTTP %d" % status] += 1
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError, ValueError,
                IndexError) as exc:
            result.failed += 1
            result.errors[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def _run(target: tuple, host: str, path: str, rate: float, duration: float, count: int,
               connections: int, stop: threading.Event, result: LoadResult, tls: ssl.SSLContext | None) -> LoadResult:
    interval = connections / rate
    start = time.monotonic()
    budget = [count]
    await asyncio.gather(*[
        _worker(target, host, path, interval, start, start + duration, budget, result, stop, i * interval / connections,
                tls)
        for i in range(connections)
    ])
    result.seconds = time.monotonic() - start
    return result


def run(target: str, *, host: str, path: str = "/", rate: float = 200, duration: float = 10,
        count: int = 1_000_000, connections: int = 8, stop: threading.Event | None = None,
        result: LoadResult | None = None, tls: bool = False) -> LoadResult:
    """Send ``rate`` requests per second over ``connections`` keep-alive connections, bounded.

    ``tls``: over HTTPS, with ``host`` as the server name (the certificate is not checked: a load only
    counts answers).

    ``result`` (when given) is filled in as requests complete, so another thread can watch it.
    """
    address, _colon, port = target.rpartition(":")
    _check_target(address)
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return asyncio.run(_run((address, int(port)), host, path, rate, duration, count, connections,
                            stop or threading.Event(), result or LoadResult(), context))


class Background:
    """``with Background(...) as load:`` runs the load in a thread until the block ends (or its bounds).

    ``load.result`` fills in while it runs and is final once the block has ended.
    """

    def __init__(self, target: str, *, host: str, **kwargs):
        self.target = target
        self.host = host
        self.kwargs = kwargs
        self.stop = threading.Event()
        self.result = LoadResult()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        run(self.target, host=self.host, stop=self.stop, result=self.result, **self.kwargs)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> "Background":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self._thread.join(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="address:port (127.0.0.1 or a lab container)")
    parser.add_argument("--host", required=True, help="Host header")
    parser.add_argument("--path", default="/")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    result = run(args.target, host=args.host, path=args.path, rate=args.rate, duration=args.duration,
                 count=args.count, connections=args.connections)
    print(json.dumps(result.as_dict(), indent=2))


if __name__ == "__main__":
    main()
