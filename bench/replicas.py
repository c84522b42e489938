#!/usr/bin/env python3
"""Replicas, measured: three Products Service replicas over one Database Service (SQLite), release binaries.

1. Visibility: writes at RATE/s (creates, patches, deletes) spread over the three replicas; for every 20th
   write, the time from its acknowledgement until each of the two other replicas serves it (p50, p99, max).
2. Convergence: when the writes stop, the time until every replica's listing equals the Database Service's.
3. Cost of following the feed: two stacks of one Database Service and two replicas each. GET /products/{id} on
   replica A of the first with wrk, while the same write load goes either to its sibling B (A follows and
   applies it) or to the second stack's B' (A's feed is idle; the same processes do the same work, A aside).
   Interleaved rounds; the median of the per-round ratios is what following costs. On a machine the load
   saturates that ratio is noisy, so the CPU time replica A spends, idle but for following, is measured too.

    bench/replicas.py --bin .build/release            # RATE=1000 DURATION=20 ROUNDS=3 WRK_DURATION=8s
"""
import argparse
import http.client
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_local = threading.local()


def call(port, method, path, body=None):
    """One request on this thread's keep-alive connection to `port`; returns (status, parsed JSON or None)."""
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    for attempt in range(2):
        connection = connections.get(port)
        if connection is None:
            connection = connections[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, (json.loads(data) if data else None)
        except (http.client.HTTPException, OSError):
            connection.close()
            connections.pop(port, None)
            if attempt == 1:
                raise
    raise RuntimeError("unreachable")


class Processes:
    def __init__(self, bin_dir, work):
        self.bin_dir, self.work, self.running = bin_dir, work, []

    def start(self, binary, arguments, ready_path):
        port = free_port()
        log = open(os.path.join(self.work, f"{binary}-{port}.log"), "w")
        process = subprocess.Popen([os.path.join(self.bin_dir, binary), "--port", str(port), "--log-level", "warning"] + arguments,
                                   stdout=log, stderr=subprocess.STDOUT)
        self.running.append(process)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if call(port, "GET", ready_path)[0] == 200:
                    return port
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"{binary} on {port} did not become ready; see {log.name}")

    def stack(self, name, replicas):
        database = self.start("database-service", ["--database", os.path.join(self.work, f"{name}.sqlite")], "/readyz")
        ports = [self.start("products-service", ["--database-service-url", f"http://127.0.0.1:{database}",
                                                 "--data-dir", os.path.join(self.work, f"{name}-replica-{i}")], "/readyz")
                 for i in range(replicas)]
        return database, ports

    def pid(self, port):
        return next(process.pid for process in self.running if f"--port {port} " in " ".join(process.args) + " ")

    def terminate(self, port):
        for process in self.running:
            if f"--port {port} " in " ".join(process.args) + " ":
                process.terminate()
                process.wait(timeout=30)
                self.running.remove(process)
                return

    def stop(self):
        for process in reversed(self.running):
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


class WriteLoad:
    """Writes at `rate` a second over `ports`: half creates, 40% patches, 10% deletes of live products."""

    def __init__(self, ports, live, rate, on_write=None, threads=24):
        self.ports, self.live, self.rate, self.on_write, self.threads = ports, live, rate, on_write, threads
        self.lock, self.stopped, self.count, self.errors = threading.Lock(), threading.Event(), 0, 0
        self.deleted = set()  # products deleted since: a write to them is superseded, not late

    def _one(self, generator):
        port = generator.choice(self.ports)
        roll = generator.random()
        with self.lock:
            victim = generator.choice(self.live) if self.live and roll >= 0.5 else None
            if victim is not None and roll >= 0.9:
                self.live.remove(victim)
                self.deleted.add(victim)
        if victim is None:
            status, body = call(port, "POST", "/products", {"name": f"Load {generator.random():.6f}", "type": "load"})
            op = ("upsert", body["id"], body["version"]) if status == 201 else None
            if op:
                with self.lock:
                    self.live.append(body["id"])
        elif roll < 0.9:
            status, body = call(port, "PATCH", f"/products/{victim}", {"metadata": {"n": f"{generator.random():.6f}"}})
            op = ("upsert", victim, body["version"]) if status == 200 else None
        else:
            status, body = call(port, "DELETE", f"/products/{victim}")
            op = ("delete", victim, None) if status == 200 else None
        acknowledged = time.monotonic()
        with self.lock:
            self.count += 1
            self.errors += op is None and status not in (404,)
            count = self.count
        if op and self.on_write:
            self.on_write(count, port, op, acknowledged)

    def _run(self, index):
        generator = random.Random(index * 7919 + int(time.time()))
        interval = self.threads / self.rate
        next_at = time.monotonic()
        while not self.stopped.is_set():
            self._one(generator)
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            elif pause < -1:
                next_at = time.monotonic()  # fell behind by a second: do not burst to catch up

    def __enter__(self):
        self.started = time.monotonic()
        self.workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *_):
        self.stopped.set()
        for worker in self.workers:
            worker.join()
        self.elapsed = time.monotonic() - self.started


def visible(port, op):
    kind, product_id, version = op
    status, body = call(port, "GET", f"/products/{product_id}")
    if kind == "delete":
        return status == 404
    return status == 200 and body["version"] >= version


def listing(port):
    products, cursor = {}, ""
    while True:
        status, page = call(port, "GET", "/products?limit=1000" + cursor)
        for product in page:
            products[product["id"]] = product["version"]
        if len(page) < 1000:
            return products
        cursor = "&starting_after=" + page[-1]["id"]


def database_listing(port):
    products, cursor = {}, ""
    while True:
        status, page = call(port, "GET", "/api/products?limit=1000" + cursor)
        for product in page["products"]:
            products[product["id"]] = product["version"]
        if not page["has_more"]:
            return products
        cursor = "&starting_after=" + page["products"][-1]["id"]


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def wrk(url, script, duration, connections):
    output = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency", "-s", script, url],
                            check=True, capture_output=True, text=True).stdout
    for line in output.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise SystemExit("wrk printed no rate:\n" + output)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--rate", type=float, default=float(os.environ.get("RATE", 1000)))
    parser.add_argument("--duration", type=float, default=float(os.environ.get("DURATION", 20)))
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 5)))
    parser.add_argument("--wrk-duration", default=os.environ.get("WRK_DURATION", "8s"))
    parser.add_argument("--connections", type=int, default=int(os.environ.get("CONNECTIONS", 64)))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench-replicas-")
    processes = Processes(args.bin, work)
    try:
        database, replicas = processes.stack("main", 3)
        live = []
        for i in range(1000):
            status, body = call(replicas[i % 3], "POST", "/products", {"name": f"Seed {i}", "type": "seed"})
            live.append(body["id"])
        seeded = list(live)
        deadline = time.time() + 60
        while any(len(listing(port)) < 1000 for port in replicas):
            if time.time() > deadline:
                raise SystemExit("the seed did not reach every replica within 60 s")
            time.sleep(0.2)

        # 1. Visibility, sampled while the load runs.
        lags, timeouts, superseded = [], 0, 0
        lags_lock = threading.Lock()
        checkers = ThreadPoolExecutor(max_workers=32)
        load = None

        def check(origin, op, acknowledged):
            nonlocal timeouts, superseded
            for port in replicas:
                if port == origin:
                    continue
                while not visible(port, op):
                    if op[0] == "upsert" and op[1] in load.deleted:
                        with lags_lock:
                            superseded += 1
                        break
                    if time.monotonic() - acknowledged > 10:
                        with lags_lock:
                            timeouts += 1
                        break
                    time.sleep(0.002)
                else:
                    with lags_lock:
                        lags.append((time.monotonic() - acknowledged) * 1000)

        def on_write(count, origin, op, acknowledged):
            if count % 20 == 0:
                checkers.submit(check, origin, op, acknowledged)

        print(f"visibility: {args.rate:.0f} writes/s for {args.duration:.0f} s over 3 replicas (SQLite), on {os.cpu_count()} cores",
              file=sys.stderr)
        load = WriteLoad(replicas, live, args.rate, on_write)
        with load:
            time.sleep(args.duration)
        stopped = time.monotonic()
        checkers.shutdown(wait=True)

        # 2. Convergence after the burst.
        while True:
            stored = database_listing(database)
            if all(listing(port) == stored for port in replicas):
                converged = time.monotonic() - stopped
                break
            if time.monotonic() - stopped > 60:
                converged = float("inf")
                break
            time.sleep(0.05)

        # 3. The feed's cost to reads, side by side with a load the replica does not follow: two stacks alike.
        processes.terminate(replicas[2])
        _, (_, elsewhere) = processes.stack("control", 2)
        other_live = []
        for i in range(1000):
            status, body = call(elsewhere, "POST", "/products", {"name": f"Seed {i}", "type": "seed"})
            other_live.append(body["id"])
        script = os.path.join(work, "ids.lua")
        with open(script, "w") as handle:
            handle.write("local ids = {" + ",".join(f'"{i}"' for i in seeded[:500]) + "}\n")
            handle.write("request = function() return wrk.format('GET', '/products/' .. ids[math.random(#ids)]) end\n")
        reader, writer = replicas[0], replicas[1]
        rates = {"follow": [], "control": []}
        for round_index in range(args.rounds):
            order = ["follow", "control"] if round_index % 2 == 0 else ["control", "follow"]
            for mode in order:
                targets, pool = ([writer], live) if mode == "follow" else ([elsewhere], other_live)
                with WriteLoad(targets, pool, args.rate):
                    rates[mode].append(wrk(f"http://127.0.0.1:{reader}", script, args.wrk_duration, args.connections))
            print(f"round {round_index + 1}: follow {rates['follow'][-1]:.0f} req/s, control {rates['control'][-1]:.0f} req/s",
                  file=sys.stderr)

        # 4. What following costs in CPU: replica A's CPU time with no reads, while the load goes to B or to B'.
        def cpu_seconds(pid):
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        reader_pid, usage = processes.pid(reader), {}
        for mode, targets, pool in [("follow", [writer], live), ("control", [elsewhere], other_live)]:
            with WriteLoad(targets, pool, args.rate):
                time.sleep(2)
                started, cpu_started = time.monotonic(), cpu_seconds(reader_pid)
                time.sleep(10)
                usage[mode] = (cpu_seconds(reader_pid) - cpu_started) / (time.monotonic() - started)

        print(f"writes: {load.count} in {load.elapsed:.1f} s = {load.count / load.elapsed:.0f}/s ({load.errors} failed)")
        print(f"visibility on the other replicas ({len(lags)} samples, {timeouts} over 10 s, {superseded} deleted before seen): "
              f"p50 {statistics.median(lags):.1f} ms, p99 {percentile(lags, 0.99):.1f} ms, max {max(lags):.1f} ms "
              f"(targets: p50 < 100 ms, p99 <= 1000 ms)")
        print(f"convergence: every replica's listing equal to the database's {converged:.2f} s after the writes stopped (target <= 2 s)")
        follow, control = statistics.median(rates["follow"]), statistics.median(rates["control"])
        # The median of per-round ratios: each round's two runs were back to back, so the machine's drift cancels out.
        ratio = statistics.median(f / c for f, c in zip(rates["follow"], rates["control"]))
        print(f"GET /products/{{id}} on a replica: median {follow:.0f} req/s following {args.rate:.0f} writes/s, {control:.0f} req/s with "
              f"the same load elsewhere; following costs {100 * (1 - ratio):.1f}% (median of per-round ratios; target <= 5%)")
        print(f"replica A's CPU without reads: {100 * usage['follow']:.1f}% of a core following {args.rate:.0f} writes/s, "
              f"{100 * usage['control']:.1f}% with the load elsewhere")
    finally:
        processes.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
