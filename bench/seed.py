#!/usr/bin/env python3
"""Loads synthetic products into a Database Service through its batch API, for the benchmarks.

Ids are prod_ and a zero-padded number (prod_00000000000000000000000042), so a load script can pick any of
them; names, types and metadata vary, and a product's JSON averages about 270 bytes, as in the measurements
the issues quote.

    bench/seed.py --url http://127.0.0.1:8081 --count 1000000
"""
import argparse
import concurrent.futures
import http.client
import json
import random
import sys
import time
import urllib.parse

WORDS = ("oak walnut linen cotton steel brass amber slate ivory cedar marble velvet copper indigo olive "
         "coral maple birch ember frost lunar solar harbor meadow canyon prairie summit willow").split()
TYPES = ["furniture", "lighting", "textile", "kitchen", "garden", "decor", "storage", "outdoor", "bath", "office"]


def product(index: int, rng: random.Random) -> dict:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + index)) + ".000Z"
    name = f"Product {index} " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
    return {
        "id": f"prod_{index:026d}", "name": name, "type": TYPES[index % len(TYPES)],
        "description": None, "images": [], "active": True,
        "metadata": {"color": rng.choice(WORDS), "sku": f"SKU-{index:08d}"},
        "created_at": stamp, "updated_at": stamp, "version": 1,
    }


def batch(tenant: str, start: int, count: int) -> bytes:
    rng = random.Random(start)
    return json.dumps({"operations": [
        {"op": "upsert", "tenant": tenant, "product": product(index, rng)} for index in range(start, start + count)
    ]}).encode()


def send(url: str, token: str | None, tenant: str, start: int, count: int, body: bytes | None = None) -> None:
    body = body if body is not None else batch(tenant, start, count)
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    connection.request("POST", "/api/products/batch", body=body, headers=headers)
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        sys.exit(f"seed: batch at {start} answered {response.status}: {payload[:200]!r}")
    results = json.loads(payload)["results"]
    rejected = [r for r in results if r["outcome"] == "rejected"]
    if rejected:
        sys.exit(f"seed: batch at {start} had rejected operations: {rejected[:3]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the Database Service's base URL")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--token", default=None, help="the service token, if the Database Service has one")
    parser.add_argument("--pregenerate", action="store_true",
                        help="build every batch before sending, so the rate is the Database Service's, not Python's")
    args = parser.parse_args()
    starts = range(0, args.count, args.batch)
    bodies = {start: None for start in starts}
    if args.pregenerate:
        generating = time.monotonic()
        bodies = {start: batch(args.tenant, start, min(args.batch, args.count - start)) for start in starts}
        print(f"seed: {len(bodies)} batches built in {time.monotonic() - generating:.1f}s", file=sys.stderr)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(args.concurrency) as pool:
        futures = [pool.submit(send, args.url, args.token, args.tenant, start, min(args.batch, args.count - start), bodies[start])
                   for start in starts]
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            future.result()
            if done % 100 == 0:
                print(f"seed: {done * args.batch} products", file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"seed: {args.count} products in {elapsed:.1f}s ({args.count / elapsed:.0f}/s)", file=sys.stderr)


if __name__ == "__main__":
    main()
