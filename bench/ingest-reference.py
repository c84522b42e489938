#!/usr/bin/env python3
"""The storage engine's own pace for the Database Service's batch writes on SQLite: the statements the service runs
for each row (read the stored version, upsert the product's JSON and its filter columns, log the change with its JSON), on the same schema
(WAL, synchronous=NORMAL), in transactions of 1,000 rows, from Python's sqlite3 module. The products are those
bench/seed.py sends, so the rate compares with `bench/seed.py --pregenerate` against a fresh Database Service.

    bench/ingest-reference.py --count 1000000
"""
import argparse
import importlib.util
import json
import os
import random
import sqlite3
import sys
import tempfile
import time

here = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("seed", os.path.join(here, "seed.py"))
seed = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed)

SCHEMA = """
CREATE TABLE products (tenant TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL DEFAULT '',
  active INTEGER NOT NULL DEFAULT 1, created_at TEXT NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
  deleted_ms INTEGER, body TEXT, PRIMARY KEY (tenant, id)) WITHOUT ROWID;
CREATE INDEX products_tombstones ON products (deleted_ms) WHERE deleted;
CREATE TABLE product_changes (position INTEGER PRIMARY KEY AUTOINCREMENT, tenant TEXT NOT NULL, product_id TEXT NOT NULL,
  version INTEGER NOT NULL, op TEXT NOT NULL, changed_at TEXT NOT NULL, recorded_ms INTEGER NOT NULL, product TEXT, event_type TEXT);
CREATE INDEX product_changes_tenant ON product_changes (tenant, position);
"""
STATE = "SELECT version, deleted, name FROM products WHERE tenant = ? AND id = ?"
UPSERT = """INSERT INTO products (tenant, id, name, type, active, created_at, body, version, deleted) VALUES (?,?,?,?,?,?,?,?,0)
ON CONFLICT (tenant, id) DO UPDATE SET name = excluded.name, type = excluded.type, active = excluded.active,
  created_at = excluded.created_at, body = excluded.body, version = excluded.version, deleted = 0, deleted_ms = NULL"""
LOG = """INSERT INTO product_changes (tenant, product_id, version, op, changed_at, recorded_ms, product, event_type)
VALUES (?,?,?,?,?,?,?,?)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        db = sqlite3.connect(os.path.join(directory, "reference.sqlite"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        batches = []
        for start in range(0, args.count, 1000):
            rng = random.Random(start)
            rows = []
            for index in range(start, min(start + 1000, args.count)):
                product = seed.product(index, rng)
                body = json.dumps(product, separators=(",", ":"))
                rows.append(("default", product["id"], product["name"], product["type"], 1, product["created_at"], body, 1,
                             product["updated_at"]))
            batches.append(rows)
        started = time.monotonic()
        for rows in batches:
            db.execute("BEGIN IMMEDIATE")
            for row in rows:
                db.execute(STATE, row[:2]).fetchone()
                db.execute(UPSERT, row[:8])
                db.execute(LOG, (row[0], row[1], 1, "upsert", row[8], int(time.time() * 1000), row[6], "product.created"))
            db.execute("COMMIT")
        elapsed = time.monotonic() - started
        db.close()
    print(f"ingest-reference: {args.count} rows in {elapsed:.1f}s ({args.count / elapsed:.0f}/s)")


if __name__ == "__main__":
    sys.exit(main())
