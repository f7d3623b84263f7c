"""`make soak`: a minute of mixed traffic over every endpoint against a live server.

Starts our server as `make bench` does (``colima-ref serve --backend live``, one worker, the
whole middleware stack on, rate-limit quotas raised so the limiter counts without refusing) on
a free port, over the devstack that is already up. Then ``wrk`` with ``bench/soak.lua``: every
connection cycles over every endpoint (health, Vault, the three databases, cache GET, POST and
DELETE, publish and queue info on a queue of this run, the Redis Cluster routes, metrics,
OpenAPI), and the script counts the answers by status class. The worker's RSS is read from
/proc/PID/status every second.

Targets: no 5xx, no connection errors (connect, read, write, timeout), and RSS at the end no
more than 5 % above RSS at second 20 (the first seconds fill pools and caches). Prints a table
and exits 1 when a target is missed. The server's request log (``bench/out/soak.log``) names
the routes of any 5xx. The queue is deleted at the end.

Usage: ``python bench/soak.py [-d SECONDS] [-c CONNECTIONS]``. Needs ``wrk`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import aiormq

# bench/run.py, beside this file: the same server start-up and environment as `make bench`.
import run as bench

LUA = Path(__file__).resolve().parent / "soak.lua"
RSS_FROM = 20  # second of the run whose RSS is the baseline of the growth target
RSS_GROWTH_MAX = 0.05
REQUEST_LOG = "HTTP request completed"
SOCKET_ERRORS = ("connect_errors", "read_errors", "write_errors", "timeouts")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((bench.HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def run_wrk(
    server: bench.Server, seconds: int, connections: int, queue: str
) -> tuple[dict[str, int], list[int]]:
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    argv += ["-s", str(LUA), f"http://{bench.HOST}:{server.port}"]
    started = time.monotonic()
    wrk = subprocess.Popen(  # noqa: S603 - wrk with our own arguments
        argv,
        env={**os.environ, "SOAK_QUEUE": queue},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rss = []
    while wrk.poll() is None:
        rss.append(server.rss_kb())
        # On the second, however long the read took, so sample n is second n of the run.
        time.sleep(max(0.0, started + len(rss) - time.monotonic()))
    out = wrk.stdout.read() if wrk.stdout else ""
    match = re.search(r"^SOAK_JSON (.*)$", out, re.MULTILINE)
    if wrk.returncode != 0 or match is None:
        raise RuntimeError(f"wrk exited with {wrk.returncode}:\n{out}")
    counts: dict[str, int] = json.loads(match.group(1))
    return counts, rss


def server_errors(log: Path) -> Counter[str]:
    """The routes the server answered 5xx, from its request log, with how often."""
    routes: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        entry = json.loads(line)
        if entry.get("message") == REQUEST_LOG and int(entry.get("status_code", 0)) >= 500:
            routes[f"{entry.get('method')} {entry.get('path')} {entry['status_code']}"] += 1
    return routes


def delete_queue(queue: str) -> None:
    url = bench.rabbitmq_url()

    async def delete() -> None:
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            await channel.queue_delete(queue)
        finally:
            await connection.close()

    asyncio.run(delete())


def table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("measure", "value", "target", "held")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = [
        " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
        for row in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-d", "--duration", type=int, default=60, help="seconds of load")
    parser.add_argument("-c", "--connections", type=int, default=40, help="wrk connections")
    args = parser.parse_args(argv)
    if args.duration <= RSS_FROM:
        parser.error(f"--duration must be over {RSS_FROM} s: RSS growth is measured from there")
    # SIGTERM (make interrupted, a CI timeout) must stop the server like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.update(bench.devstack_env())
    queue = f"soak-{uuid.uuid4().hex[:8]}"
    server = bench.our_server("soak", "live", free_port(), bench.FULL)
    try:
        server.wait_ready()
        rss_ready = server.rss_kb()
        bench.log(
            f"ready on :{server.port}, RSS {rss_ready / 1024:.1f} MB; {args.duration} s of load"
        )
        counts, rss = run_wrk(server, args.duration, args.connections, queue)
        alive = server.proc.poll() is None
        bench.http(server.port, "DELETE", "/examples/cache/soak:key")
    finally:
        server.stop()
        delete_queue(queue)
    errors = server_errors(server.log_path)

    seconds = counts["duration_us"] / 1e6
    socket_errors = sum(
        counts[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")
    )
    base, end = rss[RSS_FROM], rss[-1]
    growth = (end - base) / base
    held = {
        "5xx": counts["5xx"] == 0 and not errors,
        "errors": socket_errors == 0 and counts["other"] == 0,
        "rss": growth < RSS_GROWTH_MAX,
        "alive": alive,
    }

    def verdict(ok: bool) -> str:
        return "yes" if ok else "NO"

    def ms(key: str) -> str:
        return f"{counts[key] / 1000:.1f}"

    def mb(kb: int) -> str:
        return f"{kb / 1024:.1f}"

    rate = counts["requests"] / seconds
    rows = [
        ("requests", f"{counts['requests']:,} in {seconds:.1f} s ({rate:,.0f}/s)", "", ""),
        ("connections", str(args.connections), "20-50", ""),
        (
            "latency p50 / p99 / max (ms)",
            " / ".join(map(ms, ("p50_us", "p99_us", "max_us"))),
            "",
            "",
        ),
        ("2xx / 3xx / 4xx", " / ".join(f"{counts[c]:,}" for c in ("2xx", "3xx", "4xx")), "", ""),
        ("5xx", f"{counts['5xx']:,}", "0", verdict(held["5xx"])),
        (
            "connection errors (connect/read/write/timeout)",
            f"{socket_errors} ({'/'.join(str(counts[k]) for k in SOCKET_ERRORS)})",
            "0",
            verdict(held["errors"]),
        ),
        (
            "RSS ready / s20 / end / max (MB)",
            " / ".join(map(mb, (rss_ready, base, end, max(rss)))),
            "",
            "",
        ),
        (
            f"RSS growth s{RSS_FROM} to s{len(rss) - 1}",
            f"{growth:+.2%}",
            f"< {RSS_GROWTH_MAX:.0%}",
            verdict(held["rss"]),
        ),
        ("server still running", str(alive), "True", verdict(alive)),
    ]
    print(table(rows))
    if errors:
        print("\n5xx by route (server log):")
        for route, count in errors.most_common():
            print(f"  {count:6d}  {route}")
    print(f"\nRSS per second (MB): {' '.join(f'{kb / 1024:.1f}' for kb in rss)}")
    return 0 if all(held.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
