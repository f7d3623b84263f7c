"""`make bench`: our server against the practical limit, measured in one run on one machine.

What it does, in order (every server it starts is stopped on the way out, Ctrl-C included):

1. Starts our server with the whole middleware stack on (rate limiter on with quotas raised so
   it counts without refusing, response cache, metrics, one canonical log line per request
   written to a file) and ``bench/baseline_app.py`` (bare Starlette + the same driver call), one
   uvicorn worker each, uvloop, no access log. Ours is started by ``colima-ref serve``, on
   uvicorn's h11 protocol inside the head deadline; the baseline runs stock uvicorn on httptools.
2. Main passes (three by default): for every endpoint, ``wrk -t2 -c50 -d<N>s`` against ours
   and against the baseline, alternating which goes first. Only ratios inside one run mean
   anything: absolute figures drift up to 2x from minute to minute on a shared machine, and
   one pair of runs can fall across such a change, so the targets take the median of the
   passes' ratios (and rates), and the report shows every pass's.
3. Layers: our server restarted with one layer switched off at a time, then all off, on a few
   endpoints, so each layer's cost shows, and once under stock uvicorn (`uvicorn --factory`),
   so the protocol's share of our figures shows too. The run without the response cache also
   measures ``/health/all`` and each single check under 50 clients (p95 from the wrk script),
   in three rounds that alternate the paths; the target is judged on the median of the rounds'
   gaps.
4. ``--workers 2`` against one worker on ``/health/``, both with metrics off (``serve`` refuses
   several workers with metrics on): both servers up at once and measured alternately in three
   rounds, the target judged on the median of the rounds' ratios.

Prints Markdown (also written to ``bench/out/report.md``, raw numbers to ``results.json``):
endpoint, our req/s, baseline req/s, ratio, p50, p99, non-2xx, our worker's RSS after the run;
then each server's CPU time per request over the same runs (steadier than req/s, which moves
with whatever else the two cores do); then the issue's targets and whether each held. A
benchmark, not a test: nothing fails.

Usage: ``python bench/run.py [-d SECONDS] [--passes N] [--quick] [--backend B]``.
Needs ``wrk`` on PATH and, for ``live``, the devstack (its ``env`` is read when VAULT_TOKEN is
unset; the baseline always needs it). ``--backend memory`` runs ours on in-memory adapters
against the same baseline, which only makes sense for smoke-testing the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiormq
import hvac

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
# The servers run from the runtime environment `make bench` builds (`uv sync --no-dev`, as the
# Dockerfile installs): the dev tools in .venv (rich, through import-linter) would load into
# every structlog process and count against our RSS. Without it, .venv's python.
RUNTIME_PYTHON = BENCH / ".runtime" / "bin" / "python"
PYTHON = RUNTIME_PYTHON if RUNTIME_PYTHON.exists() else ROOT / ".venv" / "bin" / "python"
LUA = BENCH / "wrk_report.lua"
HOST = "127.0.0.1"
DEFAULT_PORT = 8391  # ours; the baseline and the layer runs take the next two
# Quotas no client of the bench can reach, so the limiter does all its work and refuses nothing.
HIGH_QUOTA = "1000000000/minute"
CACHE_KEY = "bench:key"
PUBLISH_QUEUE = "bench"
PUBLISH_BODY = '{"event": "bench", "n": 1}'


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    method: str = "GET"
    body: str = ""


ENDPOINTS = (
    Endpoint("/health/", "/health/"),
    Endpoint("/health/all", "/health/all"),
    Endpoint("vault secret (cached)", "/examples/vault/secret/postgres"),
    Endpoint("cache GET", f"/examples/cache/{CACHE_KEY}"),
    Endpoint("cache POST", "/examples/cache/bench:set?value=v&ttl=300", "POST"),
    Endpoint("postgres query", "/examples/database/postgres/query"),
    Endpoint("mysql query", "/examples/database/mysql/query"),
    Endpoint("mongodb query", "/examples/database/mongodb/query"),
    Endpoint("/redis/cluster/info", "/redis/cluster/info"),
    Endpoint("/metrics", "/metrics"),
    Endpoint(
        "publish", f"/examples/messaging/publish?queue_name={PUBLISH_QUEUE}", "POST", PUBLISH_BODY
    ),
)
BY_NAME = {e.name: e for e in ENDPOINTS}
SINGLE_CHECKS = ("vault", "postgres", "mysql", "mongodb", "redis", "rabbitmq")

FULL = {
    # Pools keep their defaults (DB_POOL_MAX=10, REDIS_POOL_MAX=64) in both servers: a server
    # busy on one core needs few connections, and each idle asyncmy one holds a 256 KB buffer.
    "RATE_LIMIT_ENABLED": "true",
    "RATE_LIMIT_DEFAULT": HIGH_QUOTA,
    "RATE_LIMIT_HEALTH": HIGH_QUOTA,
    "RATE_LIMIT_METRICS": HIGH_QUOTA,
    "RESPONSE_CACHE_ENABLED": "true",
    "METRICS_ENABLED": "true",
    "LOG_REQUESTS": "true",
}
WORKERS_ENV = {**FULL, "METRICS_ENABLED": "false"}
STOCK_PROTOCOL = "stock uvicorn protocol"
# One layer off at a time, then everything off: the variables come from settings.ENVIRONMENT.
# "full" again, so every row of that table comes from a fresh server measured minutes apart.
LAYERS: tuple[tuple[str, dict[str, str]], ...] = (
    ("full", {}),
    # Everything on, served by `uvicorn --factory colima_ref.asgi:make_app` as a host would run
    # the app: stock uvicorn on httptools, without serve's h11 and head deadline.
    (STOCK_PROTOCOL, {}),
    ("no rate limit", {"RATE_LIMIT_ENABLED": "false"}),
    # The exact strategy against the default sliding window counter.
    ("rate limit moving-window", {"RATE_LIMIT_STRATEGY": "moving-window"}),
    ("no metrics", {"METRICS_ENABLED": "false"}),
    ("no request log", {"LOG_REQUESTS": "false"}),
    ("no metrics, no request log", {"METRICS_ENABLED": "false", "LOG_REQUESTS": "false"}),
    ("no response cache", {"RESPONSE_CACHE_ENABLED": "false"}),
    (
        "all off",
        {
            "RATE_LIMIT_ENABLED": "false",
            "METRICS_ENABLED": "false",
            "LOG_REQUESTS": "false",
            "RESPONSE_CACHE_ENABLED": "false",
        },
    ),
)
LAYER_ENDPOINTS = ("/health/", "postgres query", "vault secret (cached)")
# /health/all and each single check are measured this many times, alternately, and the target
# is judged on the median of the rounds' gaps: one 6 s run of each moved by 2 ms on its own.
HEALTH_ALL_ROUNDS = 3
# One worker against two, alternately, this many times: one 6 s run of each, minutes apart,
# gave 2.67x in one run and 1.18x in the next on the same machine.
WORKER_ROUNDS = 3


@dataclass
class Result:
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    requests: int
    # The server's CPU time (user + system, its workers included) per request answered:
    # steadier than req/s from one minute to the next, since it leaves out waiting for wrk.
    cpu_us: float = 0.0
    # wrk's own CPU time per request: on two cores it is what the servers cannot have.
    client_cpu_us: float = 0.0


@dataclass
class Row:
    ours: Result
    baseline: Result
    rss_kb: int


@dataclass
class Workers:
    # Round n of each list was measured in the same minute, one after the other.
    one: list[Result]
    two: list[Result]
    largest_rss_kb: int

    def ratios(self) -> list[float]:
        return [_ratio(two, one) for one, two in zip(self.one, self.two, strict=True)]

    def bounds(self) -> list[float]:
        """Per round, the most two workers can give on two cores that wrk shares: one worker
        keeps one core busy at S us of CPU a request; two keep both busy at S + W, W being
        wrk's CPU a request, so at best 2S / (S + W) times one worker."""
        return [2 * r.cpu_us / (r.cpu_us + r.client_cpu_us) for r in self.one]


@dataclass
class Report:
    started: str
    command: str
    machine: dict[str, str]
    load_before: str
    load_after: str = ""
    passes: list[dict[str, Row]] = field(default_factory=list)
    rss_after_pass_kb: list[int] = field(default_factory=list)
    rss_ready_kb: int = 0
    baseline_rss_kb: int = 0
    layers: dict[str, dict[str, Result]] = field(default_factory=dict)
    layer_rss_kb: dict[str, int] = field(default_factory=dict)
    # Each path's results, one per round: the rounds alternate the paths, so drift shows as
    # spread between rounds instead of a bias between paths.
    health_all: dict[str, list[Result]] = field(default_factory=dict)
    workers: Workers | None = None


class Server:
    """One server process in its own session, so stopping it takes its uvicorn workers too."""

    def __init__(self, label: str, argv: Sequence[str], env: Mapping[str, str], port: int) -> None:
        self.label, self.port = label, port
        OUT.mkdir(parents=True, exist_ok=True)
        self.log_path = OUT / f"{label.replace(' ', '-')}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        RUNNING.append(self)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.label} exited early; see {self.log_path}")
            with contextlib.suppress(OSError):
                if http(self.port, "GET", "/health/")[0] == 200:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{self.label} not ready after {timeout:.0f} s; see {self.log_path}")

    def cpu_seconds(self) -> float:
        """User and system CPU time of the process and its worker processes so far."""
        return sum(_cpu_seconds(pid) for pid in (self.proc.pid, *_children(self.proc.pid)))

    def rss_kb(self) -> int:
        """RSS of the worker: the process itself with one worker, else its largest child."""
        children = _children(self.proc.pid)
        pids = children or [self.proc.pid]
        return max(_rss_kb(pid) for pid in pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        if self in RUNNING:
            RUNNING.remove(self)


RUNNING: list[Server] = []


def _rss_kb(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(OSError):
        # Fields after the command name, which may hold spaces: utime and stime are 14 and 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    return []


def http(port: int, method: str, path: str, body: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://{HOST}:{port}{path}",
        data=body.encode() if method == "POST" else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wrk(port: int, endpoint: Endpoint, seconds: int, connections: int = 50) -> Result:
    env = {**os.environ, "BENCH_METHOD": endpoint.method, "BENCH_BODY": endpoint.body}
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"http://{HOST}:{port}{endpoint.path}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout  # noqa: S603
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    match = re.search(r"^BENCH_JSON (.*)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    raw = json.loads(match.group(1))
    return Result(
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        non2xx=raw["non2xx"],
        socket_errors=raw["socket_errors"],
        requests=raw["requests"],
        client_cpu_us=client_seconds / raw["requests"] * 1e6 if raw["requests"] else 0.0,
    )


def measure(server: Server, endpoint: Endpoint, seconds: int, warmup: int) -> Result:
    if endpoint is BY_NAME["publish"]:
        purge_publish_queue()
    if warmup:
        wrk(server.port, endpoint, warmup)
    before = server.cpu_seconds()
    result = wrk(server.port, endpoint, seconds)
    spent = server.cpu_seconds() - before
    if result.requests:
        result.cpu_us = spent / result.requests * 1e6
    return result


def rabbitmq_url() -> str:
    """The devstack's RabbitMQ login as an AMQP URL, read from Vault as the servers read it."""
    vault = hvac.Client(url=os.environ["VAULT_ADDR"], token=os.environ["VAULT_TOKEN"])
    secret = vault.secrets.kv.v2.read_secret_version(
        path="rabbitmq", mount_point="secret", raise_on_deleted_version=True
    )["data"]["data"]
    vhost = secret.get("vhost") or "dev_vhost"
    port = os.environ.get("RABBITMQ_PORT", "5672")
    return f"amqp://{secret['user']}:{secret['password']}@{HOST}:{port}/{vhost}"


def purge_publish_queue() -> None:
    """Empty the queue the publish endpoint fills, before each server publishes to it.

    Nothing consumes it, and RabbitMQ's cost per message grows with what the queue holds: after
    a few runs it held 1.6 million messages in RAM, and RabbitMQ spent 205 us of CPU per message
    against 129 us once it was purged, on the two cores the servers share. Each measurement
    starts from the same empty queue. Credentials as the baseline reads them, from Vault.
    """
    url = rabbitmq_url()

    async def purge() -> None:
        connection = await aiormq.connect(url)
        try:
            channel = await connection.channel()
            # Declared as both servers declare it, so the first purge finds it too.
            await channel.queue_declare(PUBLISH_QUEUE, durable=True)
            await channel.queue_purge(PUBLISH_QUEUE)
        finally:
            await connection.close()

    asyncio.run(purge())


def prepare(port: int) -> None:
    """The cache GET reads a key that exists, and every route answers once before timing."""
    status, _ = http(port, "POST", f"/examples/cache/{CACHE_KEY}?value=cached&ttl=86400")
    if status != 200:
        print(f"warning: setting the cache key on :{port} answered {status}", file=sys.stderr)
    for endpoint in ENDPOINTS:
        status, body = http(port, endpoint.method, endpoint.path, endpoint.body)
        if status >= 300:
            print(
                f"warning: :{port} {endpoint.path} answered {status}: {body[:200]!r}",
                file=sys.stderr,
            )


def devstack_env() -> dict[str, str]:
    if os.environ.get("VAULT_TOKEN"):
        return {}
    out = subprocess.run(  # noqa: S603
        ["bash", str(ROOT / "scripts" / "devstack.sh"), "env"],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = {}
    for line in out.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            env[name] = value
    return env


def our_server(
    label: str, backend: str, port: int, env: Mapping[str, str], workers: int = 1
) -> Server:
    argv = [str(PYTHON), "-m", "colima_ref", "serve", "--backend", backend]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    return Server(label, argv, env, port)


def _stock_uvicorn(port: int, *target: str) -> list[str]:
    """uvicorn's own command line for ``target``: one worker, uvloop + httptools, no access log."""
    argv = [str(PYTHON), "-m", "uvicorn", *target]
    argv += ["--host", HOST, "--port", str(port), "--workers", "1", "--loop", "uvloop"]
    return [*argv, "--http", "httptools", "--no-access-log", "--log-level", "warning"]


def stock_uvicorn_server(label: str, backend: str, port: int, env: Mapping[str, str]) -> Server:
    argv = _stock_uvicorn(port, "--factory", "colima_ref.asgi:make_app")
    # What serve also turns off, so that the protocol is the one difference.
    argv += ["--no-proxy-headers", "--no-server-header"]
    return Server(label, argv, {**env, "COLIMA_BACKEND": backend}, port)


def baseline_server(port: int) -> Server:
    argv = _stock_uvicorn(port, "--app-dir", str(BENCH), "baseline_app:app")
    return Server("baseline", argv, {}, port)


def machine() -> dict[str, str]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout  # noqa: S607
    return {
        "cpu": f"{os.cpu_count()} x {model}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version.split("\n")[0].split(" Copyright")[0].strip(),
    }


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> Report:
    report = Report(
        started=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        machine=machine(),
        load_before=load(),
    )
    # The baseline always needs the devstack; ours only with --backend live.
    os.environ.update(devstack_env())
    seconds, warmup = args.duration, args.warmup
    our_port, base_port, layer_port = args.port, args.port + 1, args.port + 2
    endpoints = [BY_NAME[n] for n in args.endpoints] if args.endpoints else list(ENDPOINTS)

    ours = our_server("ours-full", args.backend, our_port, FULL)
    base = baseline_server(base_port)
    ours.wait_ready()
    base.wait_ready()
    report.rss_ready_kb = ours.rss_kb()
    prepare(our_port)
    prepare(base_port)
    for n in range(args.passes):
        log(f"pass {n + 1}/{args.passes}")
        rows: dict[str, Row] = {}
        for i, endpoint in enumerate(endpoints):
            order = (ours, base) if (i + n) % 2 == 0 else (base, ours)
            got = {s.label: measure(s, endpoint, seconds, warmup) for s in order}
            rows[endpoint.name] = Row(got[ours.label], got[base.label], ours.rss_kb())
            log(
                f"  {endpoint.name}: {rows[endpoint.name].ours.rps:.0f} vs "
                f"{rows[endpoint.name].baseline.rps:.0f} req/s"
            )
        report.passes.append(rows)
        report.rss_after_pass_kb.append(ours.rss_kb())
    report.baseline_rss_kb = base.rss_kb()
    ours.stop()
    base.stop()
    if args.quick:
        return report

    for label, change in LAYERS:
        log(f"layer: {label}")
        start = stock_uvicorn_server if label == STOCK_PROTOCOL else our_server
        server = start(label, args.backend, layer_port, {**FULL, **change})
        server.wait_ready()
        prepare(layer_port)
        report.layers[label] = {
            name: measure(server, BY_NAME[name], seconds, warmup) for name in LAYER_ENDPOINTS
        }
        if label == "no response cache":
            checks = [BY_NAME["/health/all"]]
            checks += [Endpoint(f"/health/{c}", f"/health/{c}") for c in SINGLE_CHECKS]
            for n in range(HEALTH_ALL_ROUNDS):
                for check in checks if n % 2 == 0 else checks[::-1]:
                    result = measure(server, check, seconds, warmup)
                    report.health_all.setdefault(check.name, []).append(result)
        report.layer_rss_kb[label] = server.rss_kb()
        server.stop()

    log("workers: 1 against 2")
    # serve refuses --workers > 1 with metrics on (each scrape would see one worker at random),
    # so both sides of this comparison run without metrics.
    one = our_server("ours-1-worker", args.backend, our_port, WORKERS_ENV)
    two = our_server("ours-2-workers", args.backend, layer_port, WORKERS_ENV, workers=2)
    one.wait_ready()
    two.wait_ready()
    time.sleep(2)  # both workers up, not only the first to bind
    report.workers = Workers([], [], 0)
    for n in range(WORKER_ROUNDS):
        for server in (one, two) if n % 2 == 0 else (two, one):
            result = measure(server, BY_NAME["/health/"], seconds, warmup)
            (report.workers.one if server is one else report.workers.two).append(result)
    report.workers.largest_rss_kb = two.rss_kb()
    one.stop()
    two.stop()
    return report


def profile(args: argparse.Namespace, name: str) -> None:
    """A py-spy flame graph of our full-stack worker while wrk drives ``name``, into docs/."""
    os.environ.update(devstack_env())
    our_port = args.port
    server = our_server("ours-profiled", args.backend, our_port, FULL)
    server.wait_ready()
    prepare(our_port)
    endpoint = BY_NAME[name]
    wrk(our_port, endpoint, args.warmup or 1)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    svg = OUT / f"flamegraph-{slug}.svg"
    spy = ["uv", "run", "--with", "py-spy", "py-spy", "record", "--pid", str(server.proc.pid)]
    spy += ["--duration", str(args.duration), "--rate", "250", "--nonblocking"]
    with contextlib.ExitStack() as cleanup:
        recorders = []
        for fmt, path in (("flamegraph", svg), ("raw", OUT / f"profile-{slug}.txt")):
            recorders.append(
                subprocess.Popen([*spy, "--format", fmt, "--output", str(path)])  # noqa: S603
            )
            cleanup.callback(recorders[-1].kill)
        time.sleep(2)  # py-spy attached before the load starts
        result = wrk(our_port, endpoint, args.duration + 2)
        for recorder in recorders:
            recorder.wait(timeout=60)
    server.stop()
    log(f"{name}: {result.rps:,.0f} req/s under py-spy; flame graph in {svg.relative_to(ROOT)}")


def _errors(r: Result) -> int:
    return r.non2xx + r.socket_errors


def _ratio(ours: Result, base: Result) -> float:
    return ours.rps / base.rps if base.rps else float("nan")


def _pass_ratios(report: Report, name: str) -> list[float]:
    return [_ratio(rows[name].ours, rows[name].baseline) for rows in report.passes]


def fmt_rows(report: Report) -> Iterator[str]:
    last = report.passes[-1]
    yield (
        "| endpoint | our req/s | baseline req/s | ratio | ratio each pass | median ratio "
        "| our p50 ms | our p99 ms | base p50 ms | base p99 ms | our non-2xx | base non-2xx "
        "| our RSS MB |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for name, row in last.items():
        o, b = row.ours, row.baseline
        # A ratio over error answers compares nothing: flag it when over 1 % of either side.
        flag = "*" if _errors(o) > 0.01 * o.requests or _errors(b) > 0.01 * b.requests else ""
        ratios = _pass_ratios(report, name)
        yield (
            f"| {name} | {o.rps:,.0f} | {b.rps:,.0f} | {_ratio(o, b):.2f}{flag} "
            f"| {_two_places(ratios)} | {_median(ratios):.2f} "
            f"| {o.p50_ms:.2f} | {o.p99_ms:.2f} | {b.p50_ms:.2f} | {b.p99_ms:.2f} "
            f"| {_errors(o)} | {_errors(b)} | {row.rss_kb / 1024:.1f} |"
        )


def fmt_cpu_rows(report: Report) -> Iterator[str]:
    last = report.passes[-1]
    yield (
        "Server CPU per request (user + system time of the server process over the timed run,"
        " divided by the requests answered; us). A ratio is baseline / ours, comparable to the"
        " req/s ratio when both servers keep their core busy."
    )
    yield ""
    yield "| endpoint | our CPU us/req | baseline CPU us/req | ratio |"
    yield "|---|---:|---:|---:|"
    for name, row in last.items():
        o, b = row.ours.cpu_us, row.baseline.cpu_us
        yield f"| {name} | {o:.1f} | {b:.1f} | {b / o if o else float('nan'):.2f} |"


def markdown(report: Report) -> str:
    n = len(report.passes)
    lines = [
        f"Run {report.started}: `{report.command}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in report.machine.items()),
        f"Load average (1/5/15 min) before: {report.load_before}; after: {report.load_after}",
        "",
        f"### Ours (full middleware) vs bare baseline, pass {n} of {n}",
        "",
        f"Each pass's ratio (ours / baseline, same minute) and their median over the {n} passes,"
        " which the targets use.",
        "",
        *fmt_rows(report),
        "",
        "non-2xx counts wrk's non-2xx/3xx answers plus socket errors; * marks a ratio over more"
        " than 1 % errors on either side.",
        "",
        *fmt_cpu_rows(report),
        "",
        f"RSS of our worker (MB): {report.rss_ready_kb / 1024:.1f} when ready (before any request),"
        " after each pass "
        + ", ".join(f"{kb / 1024:.1f}" for kb in report.rss_after_pass_kb)
        + f"; the baseline's after the passes: {report.baseline_rss_kb / 1024:.1f}.",
    ]
    if report.layers:
        last = report.passes[-1]
        lines += ["", "### Cost of each layer (our server, layers switched off by settings)", ""]
        lines += [
            "| configuration | "
            + " | ".join(f"{n} req/s (x full)" for n in LAYER_ENDPOINTS)
            + " | /health/ p50 ms | RSS MB |",
            "|---|" + "---:|" * (len(LAYER_ENDPOINTS) + 2),
        ]
        full = report.layers["full"]
        for label, results in report.layers.items():
            cells = " | ".join(
                f"{results[n].rps:,.0f} ({results[n].rps / full[n].rps:.2f})"
                for n in LAYER_ENDPOINTS
            )
            rss = report.layer_rss_kb.get(label, 0) / 1024
            lines.append(f"| {label} | {cells} | {results['/health/'].p50_ms:.2f} | {rss:.1f} |")
        if "/health/" in last:
            lines += [
                "",
                f"Bare baseline /health/ in the main pass: {last['/health/'].baseline.rps:,.0f}"
                " req/s.",
            ]
    if report.health_all:
        rounds = len(next(iter(report.health_all.values())))
        lines += ["", "### /health/all with the response cache off, 50 clients", ""]
        lines += [
            f"{rounds} rounds, each measuring every path in turn (the order flips every round);"
            " req/s, p50 and p99 are the rounds' medians.",
            "",
            "| path | req/s | p50 ms | p95 ms, each round | p99 ms | non-2xx |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, runs in report.health_all.items():
            p95s = ", ".join(f"{r.p95_ms:.2f}" for r in runs)
            lines.append(
                f"| {name} | {_median(r.rps for r in runs):,.0f} "
                f"| {_median(r.p50_ms for r in runs):.2f} | {p95s} "
                f"| {_median(r.p99_ms for r in runs):.2f} | {sum(map(_errors, runs))} |"
            )
    if report.workers:
        w = report.workers
        lines += [
            "",
            "### Workers (/health/, every layer but metrics, which --workers > 1 refuses)",
            "",
            f"{len(w.one)} rounds, each measuring one worker and two in turn (the order flips "
            "every round):",
            "",
            "| round | 1 worker req/s | 2 workers req/s | ratio | server CPU us/req "
            "| wrk CPU us/req | bound 2S/(S+W) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {n} | {one.rps:,.0f} | {two.rps:,.0f} | {ratio:.2f}x | {one.cpu_us:.1f} "
                f"| {one.client_cpu_us:.1f} | {bound:.2f}x |"
                for n, (one, two, ratio, bound) in enumerate(
                    zip(w.one, w.two, w.ratios(), w.bounds(), strict=True), start=1
                )
            ),
            "",
            "S and W are the one-worker run's: our server's and wrk's CPU time per request.",
            "",
            f"Largest worker RSS {w.largest_rss_kb / 1024:.1f} MB.",
        ]
    lines += ["", *targets(report)]
    return "\n".join(lines) + "\n"


def _median(values: Iterable[float]) -> float:
    return statistics.median(values)


def _health_all_gaps(rounds: Mapping[str, list[Result]]) -> Iterator[tuple[float, str, float]]:
    """Per round: /health/all's p95 minus the slowest single check's p95 in that same round,
    the slowest check's name, and its p95."""
    for n, whole in enumerate(rounds["/health/all"]):
        singles = {k: v[n].p95_ms for k, v in rounds.items() if k != "/health/all"}
        slowest = max(singles, key=singles.__getitem__)
        yield whole.p95_ms - singles[slowest], slowest, singles[slowest]


def _two_places(ratios: Iterable[float]) -> str:
    return ", ".join(f"{r:.2f}" for r in ratios)


def _each(ratios: Iterable[float]) -> str:
    return f"each pass: {_two_places(ratios)}"


def _verdict(ok: bool) -> str:
    return "holds" if ok else "MISSED"


# The floors every layer on and public APIs only must hold: a backend endpoint against the bare
# app making the same driver call, /health/ against bare /health/.
BACKEND_FLOOR = 0.55
HEALTH_FLOOR = 0.45
RSS_CEILING_MB = 100


def targets(report: Report) -> Iterator[str]:
    yield "### Targets"
    yield ""
    last = report.passes[-1]
    n = len(report.passes)
    backends = ("cache GET", "postgres query", "mysql query", "mongodb query")
    for name in ("/health/", "vault secret (cached)", *backends):
        if name in last:
            ratios = _pass_ratios(report, name)
            r = _median(ratios)
            floor = HEALTH_FLOOR if name == "/health/" else BACKEND_FLOOR
            yield (
                f"- {name}: {r:.2f} of baseline, median of {n} passes ({_each(ratios)}) "
                f"(target >= {floor:.2f}): {_verdict(r >= floor)}"
            )
    vault = "vault secret (cached)"
    if vault in last and "/health/" in last:
        # Not a target: how close a cached answer comes to the cheapest endpoint there is.
        ratios = [_ratio(rows[vault].ours, rows["/health/"].baseline) for rows in report.passes]
        yield (
            f"- {vault} against bare /health/: {_median(ratios):.2f}, median of {n} passes "
            f"({_each(ratios)})"
        )
    if report.health_all:
        gaps = list(_health_all_gaps(report.health_all))
        gap = _median(g for g, _, _ in gaps)
        each = "; ".join(f"{g:+.2f} ms ({slowest} {p95:.2f} ms)" for g, slowest, p95 in gaps)
        yield (
            f"- /health/all uncached p95 over its slowest single check, median of {len(gaps)}"
            f" rounds: {gap:+.2f} ms (each round: {each}) (target <= +5 ms): {_verdict(gap <= 5)}"
        )
    if "publish" in last:
        ours = [rows["publish"].ours for rows in report.passes]
        rate = _median(p.rps for p in ours)
        errors = sum(map(_errors, ours))
        # An absolute rate: the bare server's, same passes, says what this machine allowed.
        bare = _median(rows["publish"].baseline.rps for rows in report.passes)
        yield (
            f"- publish: {rate:,.0f} messages/s, median of {n} passes "
            f"({', '.join(f'{p.rps:,.0f}' for p in ours)}), {errors} non-2xx in all; the bare "
            f"baseline {bare:,.0f}/s (target >= 2,000/s and 0): "
            f"{_verdict(rate >= 2000 and errors == 0)}"
        )
    rss = report.rss_after_pass_kb
    yield (
        f"- RSS after the main passes {rss[-1] / 1024:.1f} MB (target <= {RSS_CEILING_MB} MB): "
        f"{_verdict(rss[-1] <= RSS_CEILING_MB * 1024)}"
    )
    if len(rss) >= 2:
        growth = (rss[-1] - rss[-2]) / rss[-2]
        yield (
            f"- RSS growth between the last two passes {growth:+.1%} (target <= 5 %): "
            f"{_verdict(growth <= 0.05)}"
        )
    if report.workers:
        ratios = report.workers.ratios()
        x = _median(ratios)
        each = ", ".join(f"{r:.2f}x" for r in ratios)
        bound = _median(report.workers.bounds())
        yield (
            f"- --workers 2 on /health/, median of {len(ratios)} rounds: {x:.2f}x one worker "
            f"(each round: {each}; wrk's CPU leaves at most {bound:.2f}x) (target >= 1.6x): "
            f"{_verdict(x >= 1.6)}"
        )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-d", "--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of untimed load first")
    parser.add_argument(
        "--passes",
        type=int,
        default=3,
        help="main passes; targets take the median of their ratios (RSS growth needs 2)",
    )
    parser.add_argument("--backend", choices=("live", "memory"), default="live")
    parser.add_argument("--quick", action="store_true", help="main passes only")
    parser.add_argument("--endpoints", nargs="*", choices=list(BY_NAME), help="main pass subset")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="our server's port; the baseline and the layer runs use the next two",
    )
    parser.add_argument(
        "--profile",
        choices=list(BY_NAME),
        help="instead of the bench: a py-spy flame graph of ours on this endpoint (-d seconds)",
    )
    args = parser.parse_args(argv)
    # SIGTERM (make interrupted, a CI timeout) must stop the servers like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        if args.profile:
            profile(args, args.profile)
            return
        report = run(args)
    finally:
        for server in list(RUNNING):
            server.stop()
    report.load_after = load()
    text = markdown(report)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.md").write_text(text)
    (OUT / "results.json").write_text(json.dumps(asdict(report), indent=2))
    print(text)


if __name__ == "__main__":
    main()
