#!/usr/bin/env python3
"""Issue 25's targets, on a release build: what selling from the catalog costs.

1. PATCH of one variant's price in products of 100, 1,000 and 10,000 variants (PATCH /products/{id}/variants/{v}),
   sequential, p50 and p99; GET of the same product beside it as the server's own reference.
2. A shop of PRODUCTS products (default 1,000,000) with 3 variants and 2 prices each, loaded into the Database
   Service through its batch API: the Products Service's warm start (process start to /readyz 200), its RSS beside
   the catalog's JSON, and GET /variants?sku= of 100 random SKUs (2,000 sequential requests, p50 and p99).

    swift build -c release --static-swift-stdlib
    bench/catalog.py --bin "$(swift build -c release --static-swift-stdlib --show-bin-path)"
    bench/catalog.py --bin ... --products 100000      # a smaller shop
"""
import argparse
import concurrent.futures
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from replicas import Processes, call, percentile  # noqa: E402

SIZES = [f"S{i}" for i in range(100)]
COLORS = [f"C{i}" for i in range(100)]


def wide_product(count):
    """A product body with `count` variants over two options, each with a SKU and two prices."""
    variants = [{"sku": f"W{count}-{i}", "options": {"Size": SIZES[i % 100], "Color": COLORS[i // 100]},
                 "prices": [{"currency": "EUR", "amount": 1000 + i}, {"currency": "USD", "amount": 1100 + i}]}
                for i in range(count)]
    return {"name": f"Wide {count}", "options": [{"name": "Size", "values": SIZES[:min(count, 100)]},
                                                 {"name": "Color", "values": COLORS[:max(1, (count + 99) // 100)]}],
            "variants": variants}


def timed(port, method, path, body=None):
    started = time.perf_counter()
    status, answer = call(port, method, path, body)
    return (time.perf_counter() - started) * 1000, status, answer


def variant_patches(port, rounds):
    print("variants  PATCH one price p50 / p99 (ms)   GET product p50 / p99 (ms)   product JSON")
    for count in (100, 1_000, 10_000):
        status, product = call(port, "POST", "/products", wide_product(count))
        assert status == 201, (status, product)
        pid, variants = product["id"], product["variants"]
        size = len(json.dumps(product, separators=(",", ":")))
        patches, gets = [], []
        for round in range(rounds):
            variant = variants[round % len(variants)]["id"]
            elapsed, status, _ = timed(port, "PATCH", f"/products/{pid}/variants/{variant}",
                                       {"prices": [{"currency": "EUR", "amount": 500 + round}]})
            assert status == 200, status
            patches.append(elapsed)
            gets.append(timed(port, "GET", f"/products/{pid}")[0])
        print(f"{count:>8}  {percentile(patches, 0.5):>10.1f} / {percentile(patches, 0.99):<10.1f}"
              f"        {percentile(gets, 0.5):>8.1f} / {percentile(gets, 0.99):<8.1f}       {size / 1e6:.2f} MB")


def shop_product(index):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + index)) + ".000Z"
    return {"id": f"prod_{index:026d}", "name": f"Shirt {index}", "handle": f"shirt-{index}", "type": "apparel",
            "description": None, "images": [], "tags": [], "active": True,
            "options": [{"name": "Size", "values": ["S", "M", "L"]}],
            "variants": [{"id": f"var_{index:020d}{size}", "sku": f"SKU-{index}-{size}", "options": {"Size": size},
                          "prices": [{"currency": "EUR", "amount": 1999}, {"currency": "USD", "amount": 2199}],
                          "position": position + 1, "metadata": {}}
                         for position, size in enumerate(["S", "M", "L"])],
            "category_ids": [], "translations": {}, "metadata": {},
            "created_at": stamp, "updated_at": stamp, "version": 1}


def seed(port, count, batch=1000, make=None):
    """Loads `count` products (`make(index)`, default `shop_product`) through the Database Service's batch API."""
    make = make or shop_product

    def send(start):
        products = [make(i) for i in range(start, min(count, start + batch))]
        body = {"operations": [{"op": "upsert", "tenant": "default", "product": p} for p in products]}
        status, answer = call(port, "POST", "/api/products/batch", body)
        assert status == 200 and all(r["outcome"] == "applied" for r in answer["results"]), (status, str(answer)[:300])
        return sum(len(json.dumps(p, separators=(",", ":"), ensure_ascii=False)) for p in products)
    started, total = time.monotonic(), 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for done, size in enumerate(pool.map(send, range(0, count, batch)), 1):
            total += size
            if done % 100 == 0:
                print(f"seed: {done * batch} products", file=sys.stderr)
    print(f"seed: {count} products, {total / 2**20:.0f} MiB of JSON, in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return total


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        processes = Processes(args.bin, work)
        try:
            database, (products,) = processes.stack("wide", 1)
            variant_patches(products, args.rounds)
            processes.stop()

            processes = Processes(args.bin, work)
            database = processes.start("database-service", ["--database", os.path.join(work, "shop.sqlite")], "/readyz")
            json_bytes = seed(database, args.products)
            started = time.monotonic()
            port = processes.start("products-service", ["--database-service-url", f"http://127.0.0.1:{database}",
                                                        "--data-dir", os.path.join(work, "shop-replica")], "/readyz")
            warm = time.monotonic() - started
            rss = rss_mib(processes.pid(port))
            print(f"shop: {args.products} products, 3 variants and 2 prices each: {json_bytes / 2**20:.0f} MiB of JSON;"
                  f" warm start {warm:.1f} s; RSS {rss:.0f} MiB ({rss * 2**20 / json_bytes:.2f}x the JSON)")
            rng, latencies = random.Random(7), []
            for _ in range(args.lookups):
                asked = {f"SKU-{rng.randrange(args.products)}-{rng.choice('SML')}" for _ in range(100)}
                while len(asked) < 100:
                    asked.add(f"SKU-{rng.randrange(args.products)}-{rng.choice('SML')}")
                elapsed, status, found = timed(port, "GET", "/variants?sku=" + ",".join(sorted(asked)))
                assert status == 200 and len(found) == 100, (status, str(found)[:200])
                latencies.append(elapsed)
            print(f"GET /variants?sku= (100 SKUs): p50 {percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms"
                  f" over {args.lookups}; RSS after {rss_mib(processes.pid(port)):.0f} MiB")
        finally:
            processes.stop()


if __name__ == "__main__":
    main()
