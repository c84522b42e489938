"""Schemathesis hooks for scripts/check-api: how to send a JSON Lines body (POST /imports).

The OpenAPI document describes an import's body as an array of product objects; each becomes one line.
"""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    items = value if isinstance(value, list) else [value]
    return "".join(json.dumps(item) + "\n" for item in items).encode()
