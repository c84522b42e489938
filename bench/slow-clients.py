#!/usr/bin/env python3
"""Slow clients, measured (issue 26): a normal client's GET p99 while SOCKETS slow-header sockets are held open.

A Database Service and a Products Service (release binaries, default deadlines: --header-timeout 10) over a shop
of 1,000 products. wrk measures GET /products/{id} (random ids, 4 connections, DURATION each) first with nothing
else, then while this script holds SOCKETS connections that each send half a request head and then one byte
every 2 s (slowloris), opening a new one whenever the server closes one. It reports both p99s, their ratio, and
how long the server took to close each slow socket (it must be within --header-timeout).

    bench/slow-clients.py --bin .build/release          # SOCKETS=10000 DURATION=15
"""
import argparse
import os
import re
import resource
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from replicas import Processes  # noqa: E402
import catalog  # noqa: E402


def wrk_p99(port, duration):
    """wrk's p50 and p99 (ms) and requests/s for GET /products/{id}."""
    output = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{duration}s", "--latency", "-s", os.path.join(os.path.dirname(__file__), "random-id.lua"),
         f"http://127.0.0.1:{port}"], env={**os.environ, "PRODUCTS": "1000"}, capture_output=True, text=True, check=True).stdout

    def milliseconds(label):
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    return milliseconds("50"), milliseconds("99"), rate


class Slowloris:
    """Holds `count` connections that never finish their head, trickling a byte each every 2 s."""

    def __init__(self, port, count, trickle):
        self.port, self.count, self.trickle = port, count, trickle
        self.sockets = {}
        self.poller = select.poll()
        self.closed_after = []
        self.stopping = False
        self.thread = threading.Thread(target=self.run, daemon=True)

    def open_one(self):
        connection = socket.socket()
        connection.setblocking(False)
        connection.connect_ex(("127.0.0.1", self.port))
        self.sockets[connection.fileno()] = (connection, time.monotonic())
        self.poller.register(connection, select.POLLIN | select.POLLOUT)

    def forget(self, descriptor, now):
        connection, opened = self.sockets.pop(descriptor)
        self.closed_after.append(now - opened)
        self.poller.unregister(descriptor)
        connection.close()

    def run(self):
        last_trickle = time.monotonic()
        while not self.stopping:
            while len(self.sockets) < self.count:
                self.open_one()
            now = time.monotonic()
            # Trickling, closes are looked for every 50 ms; holding only, every second (this script's own CPU
            # then stays off the machine wrk and the server share).
            for descriptor, events in self.poller.poll(50 if self.trickle else 0):
                connection, _ = self.sockets[descriptor]
                if events & select.POLLOUT:
                    # Connected: half a head, then only the trickle.
                    connection.send(b"GET /products HTTP/1.1\r\nHost: x\r\n")
                    self.poller.modify(descriptor, select.POLLIN)
                if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        if connection.recv(4096) == b"":
                            self.forget(descriptor, now)
                    except OSError:
                        self.forget(descriptor, now)
            if not self.trickle and len(self.sockets) >= self.count:
                time.sleep(1)
            if self.trickle and now - last_trickle > 2:
                last_trickle = now
                for descriptor, (connection, _) in list(self.sockets.items()):
                    try:
                        connection.send(b"X")
                    except OSError:
                        pass
        for connection, _ in self.sockets.values():
            connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--sockets", type=int, default=int(os.environ.get("SOCKETS", "10000")))
    parser.add_argument("--duration", type=int, default=int(os.environ.get("DURATION", "15")))
    parser.add_argument("--no-trickle", action="store_true", help="hold the half heads without sending more")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.sockets + 1024)), hard))
    with tempfile.TemporaryDirectory() as work:
        processes = Processes(args.bin, work)
        try:
            database = processes.start("database-service", ["--database", os.path.join(work, "shop.sqlite")], "/readyz")
            catalog.seed(database, 1000)
            port = processes.start("products-service", ["--database-service-url", f"http://127.0.0.1:{database}",
                                                        "--data-dir", os.path.join(work, "replica")], "/readyz")
            idle = wrk_p99(port, args.duration)
            print(f"GET by id, nothing else: p50 {idle[0]:.2f} ms, p99 {idle[1]:.2f} ms, {idle[2]:,.0f} req/s")
            loris = Slowloris(port, args.sockets, not args.no_trickle)
            loris.thread.start()
            time.sleep(3)
            held = wrk_p99(port, args.duration)
            open_now = len(loris.sockets)
            loris.stopping = True
            loris.thread.join()
            cpu = os.times()
            print(f"slowloris (this script) CPU: {cpu.user + cpu.system:.1f} s")
            print(f"GET by id, {open_now:,} slow-header sockets held{'' if loris.trickle else ' (no trickle)'}: p50 {held[0]:.2f} ms, p99 {held[1]:.2f} ms,"
                  f" {held[2]:,.0f} req/s; p99 ratio {held[1] / idle[1]:.2f} (target: at most 2)")
            closed = sorted(loris.closed_after)
            if closed:
                print(f"slow sockets the server closed: {len(closed):,}; after p50 {closed[len(closed) // 2]:.1f} s,"
                      f" max {closed[-1]:.1f} s (--header-timeout 10 s)")
        finally:
            processes.stop()


if __name__ == "__main__":
    main()
