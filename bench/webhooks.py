#!/usr/bin/env python3
"""Webhooks, measured: release binaries, SQLite, a healthy receiver on loopback (asyncio, keep-alive).

1. Delivery latency: writes at RATE/s (creates and patches) to one Products Service whose tenant has one
   endpoint for every event; for each event the receiver gets, the time from the write's acknowledgement until
   the delivery arrives (p50, p99, max). Writes coalesced before they reach the Database Service give no event
   of their own (the newest version's event stands for them): counted, not timed.
2. What delivery costs writes: wrk POST /products against two stacks side by side, one with an endpoint (every
   event delivered to the receiver) and one without; interleaved rounds, the median of per-round ratios.
   The reference is the same stack without webhooks, on the same machine in the same minute.

    bench/webhooks.py --bin .build/release            # RATE=1000 DURATION=20 ROUNDS=3 WRK_DURATION=8s
"""
import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from replicas import Processes, WriteLoad, call, free_port  # noqa: E402


RECEIVER = r"""
import asyncio, json, sys, time
port, log = int(sys.argv[1]), open(sys.argv[2], "w", buffering=1)

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            arrived = time.monotonic()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            event = json.loads(body)
            obj = event["data"]["object"]
            log.write(json.dumps([obj["id"], obj.get("version"), event["type"], arrived]) + "\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


class Receiver:
    """A minimal HTTP/1.1 server in its own process (not sharing the load generator's interpreter lock): logs
    (object id, version, type, arrival on the system's monotonic clock) of each event it gets."""

    def __init__(self, work):
        self.port = free_port()
        self.log = os.path.join(work, "received.jsonl")
        self.process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(self.port), self.log], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready"

    @property
    def events(self):
        with open(self.log) as lines:
            return [tuple(json.loads(line)) for line in lines if line.endswith("\n")]

    def count(self):
        with open(self.log) as lines:
            return sum(1 for _ in lines)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def stack(processes, work, name):
    environment = dict(os.environ, WEBHOOK_ALLOW_PRIVATE="1")
    database = start(processes, "database-service", ["--database", os.path.join(work, f"{name}.sqlite")], environment)
    products = start(processes, "products-service", ["--database-service-url", f"http://127.0.0.1:{database}",
                                                     "--data-dir", os.path.join(work, f"{name}-products")], environment)
    return database, products


def start(processes, binary, arguments, environment):
    port = free_port()
    log = open(os.path.join(processes.work, f"{binary}-{port}.log"), "w")
    process = subprocess.Popen([os.path.join(processes.bin_dir, binary), "--port", str(port), "--log-level", "warning"] + arguments,
                               stdout=log, stderr=subprocess.STDOUT, env=environment)
    processes.running.append(process)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if call(port, "GET", "/readyz")[0] == 200:
                return port
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{binary} on {port} did not become ready; see {log.name}")


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wrk_post(port, seconds, script):
    output = subprocess.run(["wrk", "-t1", "-c64", f"-d{seconds}", "-s", script, f"http://127.0.0.1:{port}/products"],
                            capture_output=True, text=True, check=True).stdout
    return float(next(line.split()[1] for line in output.splitlines() if line.startswith("Requests/sec")))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    arguments = parser.parse_args()
    rate = float(os.environ.get("RATE", "1000"))
    duration = float(os.environ.get("DURATION", "20"))
    rounds = int(os.environ.get("ROUNDS", "3"))
    wrk_duration = os.environ.get("WRK_DURATION", "8s")
    work = tempfile.mkdtemp(prefix="bench-webhooks-")
    processes = Processes(arguments.bin, work)
    receiver = Receiver(work)
    try:
        # 1. Delivery latency under RATE writes/s.
        _, products = stack(processes, work, "latency")
        status, endpoint = call(products, "POST", "/webhook_endpoints",
                                {"url": f"http://127.0.0.1:{receiver.port}/hooks", "enabled_events": ["*"]})
        assert status == 201, endpoint
        acknowledged = {}

        def on_write(count, port, op, at):
            kind, product_id, version = op
            if kind == "upsert":
                acknowledged[(product_id, version)] = at

        live = []
        with WriteLoad([products], live, rate, on_write) as load:
            time.sleep(duration)
        achieved = load.count / load.elapsed
        expected = len(acknowledged)
        # Until deliveries stop arriving (2 s without one), at most 30 s.
        deadline, last, quiet_since = time.monotonic() + 30, -1, time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < 2:
            if receiver.count() != last:
                last, quiet_since = receiver.count(), time.monotonic()
            time.sleep(0.1)
        latencies = [(arrived - acknowledged[(i, v)]) * 1000 for i, v, t, arrived in receiver.events if (i, v) in acknowledged]
        duplicates = len(receiver.events) - len({(i, v, t) for i, v, t, _ in receiver.events})
        print(f"webhook delivery at {achieved:.0f} writes/s achieved (target {rate:.0f}) for {duration:.0f} s, "
              f"one endpoint for every event, on {os.cpu_count()} cores:")
        print(f"  acknowledged upserts {expected}, delivered as their own event {len(latencies)} "
              f"(the rest coalesced into a newer version's event), repeats {duplicates}, deliveries total {receiver.count()}")
        if latencies:
            print(f"  acknowledgement -> delivery: p50 {statistics.median(latencies):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms, "
                  f"max {max(latencies):.1f} ms (target: p99 within 1000 ms)")
        processes.stop()
        processes.running.clear()
        if os.environ.get("LATENCY_ONLY") == "1":
            return

        # 2. What delivery costs POST /products throughput.
        if shutil.which("wrk") is None:
            print("wrk not installed: skipping the throughput comparison")
            return
        _, with_hooks = stack(processes, work, "with")
        _, without = stack(processes, work, "without")
        status, _ = call(with_hooks, "POST", "/webhook_endpoints", {"url": f"http://127.0.0.1:{receiver.port}/cost", "enabled_events": ["*"]})
        assert status == 201
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "post.lua")
        ratios, on, off = [], [], []
        before = receiver.count()
        for _ in range(rounds):
            a = wrk_post(with_hooks, wrk_duration, script)
            b = wrk_post(without, wrk_duration, script)
            on.append(a)
            off.append(b)
            ratios.append(a / b)
        print(f"POST /products with every event delivered vs without webhooks, {rounds} interleaved rounds of {wrk_duration}:")
        print(f"  with {statistics.median(on):.0f} req/s, without {statistics.median(off):.0f} req/s, "
              f"ratio median {statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.90)")
        print(f"  deliveries made during the rounds: {receiver.count() - before}")
    finally:
        processes.stop()
        receiver.stop()
        if os.environ.get("KEEP") == "1":
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
