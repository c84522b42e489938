#!/usr/bin/env python3
"""Issue 27's targets, on a release build: storefront search at a million products.

A shop of PRODUCTS products (default 1,000,000), each with 3 variants (Color x Size), 2 prices (EUR, USD), 3 tags
of 40 and 1 to 3 categories of a tree of 30, loaded into a Database Service (SQLite) through its batch API. Then,
against one Products Service:

1. the index's build on the first search, and the process's RSS before and after, beside the catalog's JSON;
2. a facet query over the whole shop (no q, facets tag,category,option.Color + price, one filter), p50 / p99;
3. a selective q of two words with 3 facets, p50 / p99;
4. paging by page_token to the 10,000th result (100 pages of 100), p50 / p99 per page;
5. GET /products/{id} p50 / p99 idle, then while 2 clients loop on facet queries;
6. the same queries on the same data in SQLite (FTS5 for words, GROUP BY for each facet, each facet without its own
   filter), as the outside reference.

    swift build -c release --static-swift-stdlib
    bench/search.py --bin "$(swift build -c release --static-swift-stdlib --show-bin-path)"
    bench/search.py --bin ... --products 100000 --queries 500
"""
import argparse
import concurrent.futures
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from catalog import rss_mib, seed  # noqa: E402
from replicas import Processes, call, percentile  # noqa: E402

VOCABULARY = [f"{a}{b}" for a in ("ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vo", "zi") for b in
              ("bel", "dor", "fin", "gar", "hom", "jun", "kir", "lam", "mor", "nix", "pal", "qua", "ros", "sil", "tov",
               "ulm", "ver", "wyn", "xar", "yel")]  # 200 words
COLORS = ["Red", "Blue", "Green", "Black", "White", "Grey", "Navy", "Olive"]
SIZES = ["S", "M", "L"]
TAGS = [f"tag{i}" for i in range(40)]
TYPES = ["apparel", "shoes", "bags", "home", "toys", "garden", "beauty", "sports"]


def shop_product(index, categories):
    rng = random.Random(index)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(1_700_000_000 + index)) + ".000Z"
    colors = rng.sample(COLORS, 1)
    words = rng.sample(VOCABULARY, 3)
    return {"id": f"prod_{index:026d}", "name": " ".join(words).title(), "handle": f"p-{index}", "type": TYPES[index % len(TYPES)],
            "description": " ".join(rng.sample(VOCABULARY, 4)), "images": [], "tags": rng.sample(TAGS, 3), "active": True,
            "options": [{"name": "Color", "values": colors}, {"name": "Size", "values": SIZES}],
            "variants": [{"id": f"var_{index:020d}{size}", "sku": f"SKU-{index}-{size}", "options": {"Color": colors[0], "Size": size},
                          "prices": [{"currency": "EUR", "amount": 500 + rng.randrange(20000)}, {"currency": "USD", "amount": 600 + rng.randrange(20000)}],
                          "position": position + 1, "metadata": {}}
                         for position, size in enumerate(SIZES)],
            "category_ids": rng.sample(categories, rng.randint(1, 3)), "translations": {}, "metadata": {},
            "created_at": stamp, "updated_at": stamp, "version": 1}


def make_categories(port):
    """5 roots of 5 children each: 30 categories."""
    made, roots = [], []
    for root in range(5):
        status, category = call(port, "POST", "/api/categories", {"name": f"Root {root}"})
        assert status == 201, (status, category)
        roots.append(category["id"])
        made.append(category["id"])
        for child in range(5):
            status, sub = call(port, "POST", "/api/categories", {"name": f"Child {root}.{child}", "parent_id": category["id"]})
            assert status == 201, (status, sub)
            made.append(sub["id"])
    return made, roots


def timed(port, path):
    started = time.perf_counter()
    status, answer = call(port, "GET", path)
    return (time.perf_counter() - started) * 1000, status, answer


class Queries:
    """The query mix, the same for the service and the references."""

    def __init__(self, categories, roots, seed=7):
        self.rng = random.Random(seed)
        self.categories, self.roots = categories, roots

    def facet(self):
        """No q, facets tag, category, option.Color and price, one filter (a root category or a type)."""
        if self.rng.random() < 0.5:
            return {"category": self.rng.choice(self.roots)}
        return {"type": self.rng.choice(TYPES)}

    def selective(self):
        """Two words of the vocabulary (the second a prefix of 4 letters), a facet filter half the time."""
        first, second = self.rng.sample(VOCABULARY, 2)
        query = {"q": f"{first} {second[:4]}"}
        if self.rng.random() < 0.5:
            query["option.Color"] = self.rng.choice(COLORS)
        return query


def service_path(filters, facets=True, extra=""):
    query = dict(filters)
    if facets:
        query.update({"facets": "tag,category,option.Color,price", "currency": "EUR"})
    return "/products/search?" + urllib.parse.urlencode(query) + extra


def measure(name, latencies):
    print(f"{name}: p50 {percentile(latencies, 0.5):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms over {len(latencies)}")
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


def service(port, pid, queries, count, json_bytes, rounds):
    rss_before = rss_mib(pid)
    started = time.monotonic()
    while True:
        elapsed, status, answer = timed(port, service_path({"type": TYPES[0]}))
        if status == 200:
            break
        assert status == 503, (status, answer)
        time.sleep(0.05)
    build = time.monotonic() - started
    rss_after = rss_mib(pid)
    print(f"index: built on the first search in {build:.1f} s; RSS {rss_before:.0f} -> {rss_after:.0f} MiB "
          f"(+{rss_after - rss_before:.0f} MiB, {(rss_after - rss_before) * 2**20 / json_bytes:.2f}x the catalog's JSON)")
    results = {}
    facet_paths = [service_path(queries.facet()) for _ in range(rounds)]
    latencies = []
    for path in facet_paths:
        elapsed, status, answer = timed(port, path)
        assert status == 200, (status, answer)
        latencies.append(elapsed)
    results["facet"] = measure("facet query over the whole shop (service)", latencies)
    selective = [queries.selective() for _ in range(rounds)]
    latencies, totals = [], []
    for filters in selective:
        elapsed, status, answer = timed(port, service_path(filters))
        assert status == 200, (status, answer)
        latencies.append(elapsed)
        totals.append(answer["total"])
    results["selective"] = measure(f"selective q, two words (service; median total {percentile(totals, 0.5):.0f})", latencies)
    latencies = []
    for round in range(max(1, rounds // 100)):
        token = None
        for page in range(100):
            path = service_path({"category": queries.roots[round % len(queries.roots)]}, facets=False, extra="&limit=100&sort=-price&currency=EUR")
            if token:
                path += "&page_token=" + token
            elapsed, status, answer = timed(port, path)
            assert status == 200, (status, answer)
            latencies.append(elapsed)
            token = answer["next_page_token"]
    results["paging"] = measure("pages by page_token to the 10,000th result (service)", latencies)
    ids = [f"prod_{random.randrange(count):026d}" for _ in range(rounds)]
    idle = [timed(port, f"/products/{id}")[0] for id in ids]
    measure("GET by id, idle", idle)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            call(port, "GET", service_path(queries.facet()))
    loopers = [threading.Thread(target=loop) for _ in range(2)]
    for thread in loopers:
        thread.start()
    busy = [timed(port, f"/products/{id}")[0] for id in ids]
    stop.set()
    for thread in loopers:
        thread.join()
    results["get_busy"] = measure("GET by id while 2 clients loop on facet queries", busy)
    return facet_paths, selective, results


def sqlite_reference(work, count, categories, facet_paths, selective, rounds):
    """The same data and queries in SQLite: FTS5 over the words, one GROUP BY per facet (each without its own filter)."""
    path = os.path.join(work, "reference.sqlite")
    db = sqlite3.connect(path)
    db.executescript("""
        PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
        CREATE TABLE products (rowid INTEGER PRIMARY KEY, id TEXT, name TEXT, type TEXT, min_eur INTEGER);
        CREATE TABLE tags (product INTEGER, tag TEXT);
        CREATE TABLE cats (product INTEGER, category TEXT);
        CREATE TABLE variants (product INTEGER, color TEXT, eur INTEGER);
        CREATE VIRTUAL TABLE words USING fts5(text, tokenize='unicode61 remove_diacritics 2');
    """)
    started = time.monotonic()
    for start in range(0, count, 10_000):
        rows = [shop_product(i, categories) for i in range(start, min(count, start + 10_000))]
        db.executemany("INSERT INTO products VALUES (?,?,?,?,?)", [
            (i, p["id"], p["name"], p["type"], min(v["prices"][0]["amount"] for v in p["variants"])) for i, p in zip(range(start, start + len(rows)), rows)])
        db.executemany("INSERT INTO tags VALUES (?,?)", [(start + k, t) for k, p in enumerate(rows) for t in p["tags"]])
        db.executemany("INSERT INTO cats VALUES (?,?)", [(start + k, c) for k, p in enumerate(rows) for c in p["category_ids"]])
        db.executemany("INSERT INTO variants VALUES (?,?,?)", [(start + k, v["options"]["Color"], v["prices"][0]["amount"]) for k, p in enumerate(rows) for v in p["variants"]])
        db.executemany("INSERT INTO words (rowid, text) VALUES (?,?)", [
            (start + k, " ".join([p["name"], p["description"]] + p["tags"] + [v["sku"] for v in p["variants"]] + [p["options"][0]["values"][0]] + SIZES))
            for k, p in enumerate(rows)])
    db.executescript("""
        CREATE INDEX tags_product ON tags (product); CREATE INDEX tags_tag ON tags (tag, product);
        CREATE INDEX cats_product ON cats (product); CREATE INDEX cats_category ON cats (category, product);
        CREATE INDEX variants_product ON variants (product); CREATE INDEX variants_color ON variants (color, product);
        CREATE INDEX products_type ON products (type); ANALYZE;
    """)
    db.commit()
    print(f"sqlite: loaded in {time.monotonic() - started:.0f} s", file=sys.stderr)
    parent_of = {}

    def subtree(category):
        return [category] + [c for c in categories if parent_of.get(c) == category]
    # The tree: each root's five children follow it in `categories`.
    for index, category in enumerate(categories):
        if index % 6:
            parent_of[category] = categories[index - index % 6]

    def matched(filters, without=None):
        """SQL for the rowids passing `filters` but `without`."""
        clauses, params = [], []
        if "q" in filters and without != "q":
            words = filters["q"].split()
            clauses.append("rowid IN (SELECT rowid FROM words WHERE words MATCH ?)")
            params.append(" ".join(f'"{w}"' for w in words[:-1]) + f' "{words[-1]}"*')
        if "category" in filters and without != "category":
            tree = subtree(filters["category"])
            clauses.append(f"rowid IN (SELECT product FROM cats WHERE category IN ({','.join('?' * len(tree))}))")
            params += tree
        if "type" in filters and without != "type":
            clauses.append("type = ?")
            params.append(filters["type"])
        if "option.Color" in filters and without != "option.Color":
            clauses.append("rowid IN (SELECT product FROM variants WHERE color = ?)")
            params.append(filters["option.Color"])
        return ("SELECT rowid FROM products" + (" WHERE " + " AND ".join(clauses) if clauses else "")), params

    def run(filters):
        base, params = matched(filters)
        db.execute(f"SELECT id FROM products WHERE rowid IN ({base}) ORDER BY min_eur, id LIMIT 20", params).fetchall()
        db.execute(f"SELECT count(*) FROM ({base})", params).fetchall()
        db.execute(f"SELECT tag, count(*) FROM tags WHERE product IN ({base}) GROUP BY tag ORDER BY 2 DESC LIMIT 100", params).fetchall()
        sub, subparams = matched(filters, without="category")
        db.execute(f"SELECT category, count(*) FROM cats WHERE product IN ({sub}) GROUP BY category ORDER BY 2 DESC LIMIT 100", subparams).fetchall()
        sub, subparams = matched(filters, without="option.Color")
        db.execute(f"SELECT color, count(DISTINCT product) FROM variants WHERE product IN ({sub}) GROUP BY color ORDER BY 2 DESC", subparams).fetchall()
        db.execute(f"SELECT min(eur), max(eur) FROM variants WHERE product IN ({base})", params).fetchall()

    results = {}
    for name, mix in (("facet", [dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(p).query)) for p in facet_paths]), ("selective", selective)):
        latencies = []
        for filters in mix[: max(50, rounds // 10)]:
            started = time.perf_counter()
            run(filters)
            latencies.append((time.perf_counter() - started) * 1000)
        results[name] = measure(f"{name} (SQLite FTS5 + GROUP BY, first {len(latencies)} of the mix)", latencies)
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        processes = Processes(args.bin, work)
        try:
            database = processes.start("database-service", ["--database", os.path.join(work, "shop.sqlite")], "/readyz")
            categories, roots = make_categories(database)
            json_bytes = seed(database, args.products, make=lambda index: shop_product(index, categories))
            started = time.monotonic()
            port = processes.start("products-service", ["--database-service-url", f"http://127.0.0.1:{database}",
                                                        "--data-dir", os.path.join(work, "replica")], "/readyz")
            print(f"shop: {args.products} products, {json_bytes / 2**20:.0f} MiB of JSON; warm start {time.monotonic() - started:.1f} s")
            queries = Queries(categories, roots)
            facet_paths, selective, ours = service(port, processes.pid(port), queries, args.products, json_bytes, args.queries)
            processes.stop()
            if not args.no_reference:
                theirs = sqlite_reference(work, args.products, categories, facet_paths, selective, args.queries)
                for name in ("facet", "selective"):
                    print(f"ratio {name}: SQLite p50 / service p50 = {theirs[name][0] / ours[name][0]:.1f}x,"
                          f" p99 {theirs[name][1] / ours[name][1]:.1f}x")
        finally:
            processes.stop()


if __name__ == "__main__":
    main()
