"""Webhook throughput and latency against gunicorn with PostgreSQL, beside a minimal reference app.

    .venv/bin/python bench/webhook.py                      # wrk if installed, 5 s per endpoint
    .venv/bin/python bench/webhook.py --duration 10 --workers 4 --rounds 5

Starts two servers with the same number of gunicorn sync workers, on fresh PostgreSQL tables, and
measures in one run, in interleaved rounds:

* reference ``/echo``    bench/reference_app.py, bare Flask reading the 10 KB body: the framework's
                         ceiling;
* reference ``/insert``  the same tiny app doing a plain psycopg INSERT + COMMIT of the body on a
                         connection held per worker: the least a durable endpoint can do. It is a
                         separate process importing nothing of intake (no SQLAlchemy, no pool);
* intake ``/inbound/mime``  ``intake serve``: HMAC check, raw message + receipt in one statement,
                         commit, enqueue ``pipeline.process_message`` on Redis. Every request is a
                         distinct, correctly signed message, so none is a cheap duplicate.

Throughput comes from wrk (closed loop, ``--connections`` connections) when it is installed,
else from a Python client (threads + http.client). Latency at a fixed 100 requests/s comes from
the Python client (wrk 4 has no fixed-rate mode). Server CPU per request is read from /proc: the
gunicorn workers plus their PostgreSQL backends. The queue is Redis by default (production: no
consumer in the web process, so the run measures the webhook alone); ``--queue sqlite`` uses the
embedded queue with the in-process consumer stopped for the measurement. Loopback only.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import os
import queue as queue_module
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, func, select, text  # noqa: E402

from intake.config import Settings  # noqa: E402
from intake.db import Database  # noqa: E402
from intake.models import Receipt  # noqa: E402
from intake.queue import make_huey  # noqa: E402

PG = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET = "bench-secret"
MESSAGE_SIZE = 10 * 1024

WRK_SCRIPT = r"""
-- Each wrk thread cycles through its own file of pre-signed requests (distinct messages).
local requests, n, i = {}, 0, 0
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
function init(args)
  local path = args[1] .. "/pool-" .. id .. ".bin"
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  local pos = 1
  while pos <= #data do
    local nl = data:find("\n", pos, true)
    local sig, len = data:sub(pos, nl - 1):match("^(%S+) (%d+)$")
    len = tonumber(len)
    local body = data:sub(nl + 1, nl + len)
    n = n + 1
    requests[n] = wrk.format("POST", "/inbound/mime",
      {["Content-Type"] = "message/rfc822", ["X-Intake-Signature"] = sig}, body)
    pos = nl + len + 1
  end
end
function request()
  i = i % n + 1
  return requests[i]
end
"""

STATIC_SCRIPT = r"""
local body = assert(io.open(os.getenv("BENCH_BODY"), "rb")):read("*a")
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "message/rfc822"
"""


def make_message(n: int, run: str) -> bytes:
    head = (
        f"From: Bench Applicant {n} <applicant{n}@example.org>\r\n"
        f"To: fellowship@intake.example.org\r\n"
        f"Subject: Question about the fellowship application ({n})\r\n"
        f"Message-ID: <bench-{run}-{n}@example.org>\r\n"
        f"Date: Tue, 03 Nov 2026 09:12:00 -0500\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ).encode()
    line = b"Hello, I would like to know the eligibility requirements and the deadline. Thanks!\r\n"
    body = line * ((MESSAGE_SIZE - len(head)) // len(line) + 1)
    return (head + body)[:MESSAGE_SIZE]


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def clear_queue(redis_url: str, name: str) -> None:
    """Delete a run's jobs from Redis through huey's own storage: huey strips "-" (and anything
    but letters, digits and "_") from the queue name before it builds its keys, so a pattern
    made from the name ("*intake-bench-...*") matched nothing and every run left its jobs."""
    make_huey(Settings.from_env({"REDIS_URL": redis_url}), name).flush()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clear_queue(redis_url: str, name: str) -> None:
    """Delete a run's jobs from Redis through huey's own storage: huey strips "-" (and anything
    but letters, digits and "_") from the queue name before it builds its keys, so a key pattern
    made from the name would match nothing."""
    make_huey(Settings.from_env({"REDIS_URL": redis_url}), name).flush()


class Server:
    """One gunicorn server under test: its web workers and their PostgreSQL backends."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, app_name: str,
                 cwd: Path, log: Path) -> None:
        self.name, self.command, self.env, self.port = name, command, env, port
        self.app_name, self.cwd, self.log_path = app_name, cwd, log
        self.process: subprocess.Popen | None = None

    def start(self, probe: tuple[str, str]) -> None:
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        method, path = probe
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request(method, path, body=b"" if method == "POST" else None)
                if conn.getresponse().status < 500:
                    return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"{self.name} did not start; see {self.log_path}")

    def stop(self) -> None:
        if self.process is None:
            return
        for pid in _children(self.process.pid):
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def pids(self) -> tuple[list[int], list[int]]:
        """(gunicorn web workers, their PostgreSQL backends)."""
        assert self.process is not None
        web = [pid for pid in _children(self.process.pid) if b"intake.serve\0worker" not in _cmdline(pid)]
        engine = create_engine(PG)
        with engine.connect() as conn:
            backends = list(conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"), {"n": self.app_name}
            ).scalars())
        engine.dispose()
        return web, backends


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="intake-bench-"))
        self.run_id = uuid.uuid4().hex[:8]
        self.schema = f"bench_{self.run_id}"
        self.counter = 0
        self.queue_name = f"intake-bench-{self.run_id}"
        self.servers: dict[str, Server] = {}

    def url(self, app_name: str) -> str:
        return f"{PG}?options=-csearch_path%3D{self.schema}&application_name={app_name}"

    # --- lifecycle ---

    def start(self) -> None:
        admin = create_engine(PG)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            conn.execute(text(f'CREATE TABLE "{self.schema}".bench_bodies (id bigserial PRIMARY KEY, body bytea NOT NULL)'))
        admin.dispose()
        db = Database(self.url("setup"))
        db.create_all()
        db.dispose()
        workers = str(self.args.workers)
        intake_app = f"intake-bench-{self.run_id}"
        env = dict(
            os.environ,
            DATABASE_URL=self.url(intake_app),
            INBOUND_HMAC_SECRET=SECRET,
            INTAKE_QUEUE_PATH=str(self.work / "queue.db"),
            INTAKE_LOG_LEVEL="WARNING",
            INTAKE_QUEUE_NAME=self.queue_name,
        )
        if self.args.queue == "redis":
            env["REDIS_URL"] = REDIS
        else:
            env.pop("REDIS_URL", None)
        self.servers["intake"] = Server(
            "intake serve", [sys.executable, "-m", "intake.serve", "serve", "--port", str(port := free_port()),
                             "--workers", workers], env, port, intake_app, self.work, self.work / "intake.log")
        reference_app = f"reference-bench-{self.run_id}"
        ref_env = dict(os.environ, BENCH_REFERENCE_DSN=(
            f"host=127.0.0.1 port=5432 user=postgres dbname=test application_name={reference_app} "
            f"options=-csearch_path={self.schema}"))
        self.servers["reference"] = Server(
            "reference app", [sys.executable, "-m", "gunicorn", "--workers", workers, "--worker-class", "sync",
                              "--bind", f"127.0.0.1:{(ref_port := free_port())}", "--chdir", str(REPO / "bench"),
                              "reference_app:app"], ref_env, ref_port, reference_app, self.work,
            self.work / "reference.log")
        self.servers["intake"].start(("GET", "/healthz"))
        self.servers["reference"].start(("POST", "/echo"))
        if self.args.queue == "sqlite":
            # Stop the embedded consumer so it does not compete for the CPU during the run.
            for pid in _children(self.servers["intake"].process.pid):
                if b"intake.serve\0worker" in _cmdline(pid):
                    os.kill(pid, signal.SIGSTOP)
        time.sleep(1.0)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        admin = create_engine(PG)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
        admin.dispose()
        if self.args.queue == "redis":
            clear_queue(REDIS, self.queue_name)
        shutil.rmtree(self.work, ignore_errors=True)

    # --- CPU accounting: web workers plus their PostgreSQL backends ---

    def cpu_seconds(self, pids: list[int]) -> float:
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
            except (OSError, IndexError, ValueError):
                pass
        return total / ticks

    def measured(self, run, target: str, path: str) -> dict[str, float]:
        """Run ``run(target, path)`` and add the server's CPU milliseconds per request (web, database)."""
        server = self.servers[target]
        web, backends = server.pids()
        web_before, db_before = self.cpu_seconds(web), self.cpu_seconds(backends)
        result = run(target, path)
        web_after, backends_after = server.pids()
        # Backends opened during the run started from zero; count them whole.
        new_backends = [pid for pid in backends_after if pid not in backends]
        n = max(1, result.get("requests", 0))
        result["web_cpu_ms"] = 1000 * (self.cpu_seconds(sorted(set(web) | set(web_after))) - web_before) / n
        result["db_cpu_ms"] = 1000 * (self.cpu_seconds(backends + new_backends) - db_before) / n
        result["cpu_ms"] = result["web_cpu_ms"] + result["db_cpu_ms"]
        return result

    # --- load ---

    def next_message(self) -> bytes:
        self.counter += 1
        return make_message(self.counter, self.run_id)

    def wrk(self, target: str, path: str) -> dict[str, float]:
        threads, conns, duration = 2, self.args.connections, self.args.duration
        if path == "/inbound/mime":
            pool = int(self.args.pool)
            for t in range(1, threads + 1):
                with open(self.work / f"pool-{t}.bin", "wb") as f:
                    for _ in range(pool // threads):
                        body = self.next_message()
                        f.write(f"{sign(body)} {len(body)}\n".encode() + body)
            script = self.work / "pool.lua"
            script.write_text(WRK_SCRIPT)
            extra = ["--", str(self.work)]
            env = dict(os.environ)
        else:
            body_file = self.work / "body.eml"
            body_file.write_bytes(make_message(0, self.run_id))
            script = self.work / "static.lua"
            script.write_text(STATIC_SCRIPT)
            extra = []
            env = dict(os.environ, BENCH_BODY=str(body_file))
        port = self.servers[target].port
        command = ["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{int(duration)}s", "--latency",
                   "-s", str(script), f"http://127.0.0.1:{port}{path}", *extra]
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"wrk failed: {done.stderr or done.stdout}")
        out = done.stdout
        return _parse_wrk(out)

    def python_load(self, target: str, path: str, rate: float | None, seconds: float, threads: int) -> dict[str, float]:
        """Closed loop (rate None) or fixed rate; latency measured from the scheduled send time."""
        port = self.servers[target].port
        stop_at = time.monotonic() + seconds
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        tickets: queue_module.Queue = queue_module.Queue()
        bodies: queue_module.Queue = queue_module.Queue()
        total = int(rate * seconds) if rate else 0
        if rate:
            start = time.monotonic() + 0.5
            for i in range(total):
                tickets.put(start + i / rate)
        pregen = total or 20000
        static = make_message(0, self.run_id)
        for _ in range(pregen if path == "/inbound/mime" else 0):
            body = self.next_message()
            bodies.put((body, sign(body)))

        def worker() -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                if rate:
                    try:
                        due = tickets.get_nowait()
                    except queue_module.Empty:
                        return
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    began = due
                else:
                    if time.monotonic() >= stop_at:
                        return
                    began = time.monotonic()
                if path == "/inbound/mime":
                    try:
                        body, signature = bodies.get_nowait()
                    except queue_module.Empty:
                        return
                    headers = {"Content-Type": "message/rfc822", "X-Intake-Signature": signature}
                else:
                    body, headers = static, {"Content-Type": "message/rfc822"}
                try:
                    conn.request("POST", path, body=body, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                elapsed = time.monotonic() - began
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1

        began = time.monotonic()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        wall = time.monotonic() - began
        latencies.sort()
        return {
            "rps": len(latencies) / wall,
            "p50_ms": 1000 * _pct(latencies, 50),
            "p99_ms": 1000 * _pct(latencies, 99),
            "requests": len(latencies),
            "errors": errors[0],
        }

    def receipts(self) -> dict[str, int]:
        db = Database(self.url("setup"))
        with db.session() as session:
            rows = session.execute(select(Receipt.outcome, func.count()).group_by(Receipt.outcome)).all()
        db.dispose()
        return {outcome: n for outcome, n in rows}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def _parse_wrk(out: str) -> dict[str, float]:
    result: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            result["p50_ms" if parts[0] == "50%" else "p99_ms"] = _ms(parts[1])
        elif "requests in" in line:
            result["requests"] = int(parts[0])
        elif line.strip().startswith("Non-2xx"):
            result["errors"] = int(parts[-1])
    result.setdefault("errors", 0)
    return result


def _ms(value: str) -> float:
    for suffix, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per throughput run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per endpoint")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn web workers (both servers)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--queue", choices=("redis", "sqlite"), default="redis")
    parser.add_argument("--pool", type=int, default=40000, help="distinct signed messages for wrk")
    parser.add_argument("--python", action="store_true", help="use the Python client even if wrk exists")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="length of the 100 req/s latency run")
    args = parser.parse_args()
    use_wrk = shutil.which("wrk") is not None and not args.python
    bench = Bench(args)
    bench.start()
    try:
        print(f"gunicorn {args.workers} sync workers per server, PostgreSQL, queue={args.queue}, 10 KB bodies, "
              f"{'wrk -t2 -c' + str(args.connections) if use_wrk else 'python client'}, "
              f"{args.rounds} interleaved rounds of {args.duration:.0f}s; load average {os.getloadavg()[0]:.1f}")
        endpoints = (("reference", "/echo"), ("reference", "/insert"), ("intake", "/inbound/mime"))
        runs: dict[tuple[str, str], list[dict[str, float]]] = {e: [] for e in endpoints}
        # Interleaved rounds: on a shared machine the load drifts, and drift should hit every
        # endpoint alike rather than whichever happened to run during a busy moment.
        for _ in range(args.rounds):
            for target, path in endpoints:
                if use_wrk:
                    runs[(target, path)].append(bench.measured(bench.wrk, target, path))
                else:
                    runs[(target, path)].append(bench.measured(
                        lambda t, p: bench.python_load(t, p, None, args.duration, args.connections), target, path))
        results = {}
        for endpoint in endpoints:
            keys = ("rps", "p50_ms", "p99_ms", "cpu_ms", "web_cpu_ms", "db_cpu_ms")
            results[endpoint] = {k: statistics.median(r[k] for r in runs[endpoint]) for k in keys}
            results[endpoint]["requests"] = sum(r.get("requests", 0) for r in runs[endpoint])
            results[endpoint]["errors"] = sum(r.get("errors", 0) for r in runs[endpoint])
            r = results[endpoint]
            spread = ", ".join(f"{x['rps']:.0f}" for x in runs[endpoint])
            label = f"{endpoint[0]} {endpoint[1]}"
            print(f"  {label:22s} {r['rps']:7.0f} req/s (rounds: {spread})   p50 {r['p50_ms']:6.1f} ms   "
                  f"p99 {r['p99_ms']:6.1f} ms   server CPU {r['cpu_ms']:.2f} ms/req "
                  f"(web {r['web_cpu_ms']:.2f} + db {r['db_cpu_ms']:.2f})   "
                  f"({r['requests']} requests, {r['errors']} errors)")
        real, floor = results[("intake", "/inbound/mime")], results[("reference", "/insert")]
        ratio = real["rps"] / floor["rps"]
        cpu_ratio = floor["cpu_ms"] / real["cpu_ms"]
        per_round = [a["rps"] / b["rps"] for a, b in zip(runs[("intake", "/inbound/mime")], runs[("reference", "/insert")])]
        print(f"  intake / minimal durable endpoint: {ratio:.0%} by median req/s (per round: "
              f"{', '.join(f'{x:.0%}' for x in per_round)}), {cpu_ratio:.0%} by server CPU per request "
              f"(target >= 70%)")
        # The same fixed rate against the reference first: what this machine (client, loopback,
        # PostgreSQL's commits) allows, so a tail that both share is not blamed on intake.
        for target, path, note in (("reference", "/insert", ""), ("intake", "/inbound/mime", "; target p99 < 20 ms")):
            fixed = bench.python_load(target, path, 100.0, args.rate_seconds, 16)
            print(f"  {target} {path} at 100 req/s for {args.rate_seconds:.0f}s: p50 {fixed['p50_ms']:.1f} ms, "
                  f"p99 {fixed['p99_ms']:.1f} ms ({fixed['requests']} requests, {fixed['errors']} errors{note})")
        print(f"  receipts: {bench.receipts()}")
    finally:
        bench.stop()


if __name__ == "__main__":
    main()
