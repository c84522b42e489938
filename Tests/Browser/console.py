#!/usr/bin/env python3
"""Browser test: the merchant's console at /admin, through every task, in Debian's chromium driven by Playwright,
against a real stack (debug build, SQLite) with the network blocked outside it (product images, on a made-up
host, are answered by the test). It fails on any script error, Content Security Policy violation or request
elsewhere. Tasks: sign in with an API key (a second stack with a key), list, search, filter by facets and page,
create, edit and delete a product with options, variants, SKUs, prices, images and a category, see an API error next to
the field its `param` names, meet a 412 and reload, see the history and restore a version, import a file and see
its rejected lines, download an export, add a webhook endpoint (secret shown once) and see its deliveries, read the
replica's health; keyboard use and visible focus; the page's security headers. A screenshot of each main screen
is saved under .ci/artifacts/ (console-*.png).

    Tests/Browser/console.py --bin .build/debug
"""
import http.server
import json
import os
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from replicas import Processes  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _support import arguments  # noqa: E402

from playwright.sync_api import expect, sync_playwright  # noqa: E402

IMAGE_HOST = "https://images.example/"


def png(width=192, height=192):
    """A warm gradient as a PNG, served for every product image (made here: nothing comes from elsewhere)."""
    rows = b"".join(b"\x00" + bytes(channel for x in range(width) for channel in (230, 120 + x * 100 // width, 40 + y * 80 // height))
                    for y in range(height))
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = png()


def request(port, method, path, body=None, headers=None, key=None):
    """A plain API call; returns (status, headers, parsed JSON or text)."""
    sent = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if key:
        sent["Authorization"] = f"Bearer {key}"
    call = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(call, timeout=30) as response:
            text = response.read().decode()
            return response.status, response.headers, (json.loads(text) if text.startswith(("{", "[")) else text)
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        return error.code, error.headers, (json.loads(text) if text.startswith("{") else text)


class Receiver:
    """A webhook target on this machine that answers 204 and counts what it got."""

    def __init__(self):
        received = self.received = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                received.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


class Console:
    """One browser context on one stack's console, failing on anything the page should never do."""

    def __init__(self, browser, port, artifacts):
        self.origin = f"http://127.0.0.1:{port}"
        self.artifacts = artifacts
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.blocked, self.problems = [], []
        self.context.route("**/*", self.route)
        self.page.on("console", lambda message: self.problems.append(message.text) if message.type == "error" else None)
        self.page.on("pageerror", lambda error: self.problems.append(str(error)))
        self.page.on("dialog", lambda dialog: dialog.accept())

    def route(self, route):
        url = route.request.url
        if url.startswith(self.origin + "/"):
            route.continue_()
        elif url.startswith(IMAGE_HOST):
            route.fulfill(status=200, content_type="image/png", body=PNG)
        else:
            self.blocked.append(url)
            route.abort("internetdisconnected")

    def open(self, fragment=""):
        response = self.page.goto(self.origin + "/admin" + fragment)
        assert response.status == 200, f"/admin answered {response.status}"
        return response

    def shot(self, name, top=True, full_page=False):
        if top:
            self.page.evaluate("window.scrollTo(0, 0)")
        self.page.evaluate("document.getElementById('toast').replaceChildren()")
        self.page.screenshot(path=os.path.join(self.artifacts, f"console-{name}.png"), full_page=full_page)

    def close(self):
        self.context.close()
        # A 412 and a 400 are what some tasks try on purpose; the browser logs failed fetches as errors.
        unexpected = [problem for problem in self.problems if "status of 4" not in problem]
        assert not self.blocked, f"the console asked for files elsewhere: {self.blocked}"
        assert not unexpected, f"the browser reported: {unexpected}"


def field_error(page, label):
    """The error shown for the control labelled `label`."""
    control = page.get_by_label(label, exact=True)
    return page.locator(f"#{control.get_attribute('id')}-error")


def products_tasks(console, port):
    page = console.page
    database_category = request(port, "POST", "/categories", {"name": "Lighting", "handle": "lighting"})
    assert database_category[0] == 201, database_category
    for index in range(30):
        status, _, _ = request(port, "POST", "/products", {"name": f"Chair {index:02d}", "type": "furniture", "tags": ["wood"]})
        assert status == 201
    console.open()
    expect(page.get_by_role("heading", name="Products", exact=True)).to_be_visible()
    expect(page.get_by_text("30 products")).to_be_visible()

    # Keyboard: from the top of the page the skip link comes first; from the view (focused when shown), its first
    # control; each focused visibly.
    page.get_by_role("heading", name="Products console").click()
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.get_by_role("heading", name="Products", exact=True).focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("[document.activeElement.textContent, getComputedStyle(document.activeElement).outlineStyle]")
    assert focused == ["New product", "solid"], focused
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="New product")).to_be_visible()
    page.go_back()

    # Paging through the search's cursor: 25, then 5, then back.
    expect(page.locator("tbody tr")).to_have_count(25)
    page.get_by_role("button", name="Next page").click()
    expect(page.locator("tbody tr")).to_have_count(5)
    page.get_by_role("button", name="Previous page").click()
    expect(page.locator("tbody tr")).to_have_count(25)
    expect(page.get_by_role("button", name="Previous page")).to_be_disabled()

    # A new product, with options, variants, SKUs, prices, an image and a category.
    page.get_by_role("link", name="New product").click()
    page.get_by_label("Name", exact=True).fill("Desk lamp")
    page.get_by_label("Type", exact=True).fill("lighting")
    page.get_by_label("Description", exact=True).fill("Warm light for reading.")
    page.get_by_label("Tags", exact=True).fill("light, desk")
    page.get_by_label("Images", exact=True).fill(IMAGE_HOST + "lamp.png")
    page.get_by_label("Images", exact=True).dispatch_event("change")
    expect(page.locator(".images img")).to_have_count(1)
    page.get_by_label("Categories", exact=True).select_option(label="Lighting")
    page.get_by_role("button", name="Add option").click()
    page.get_by_label("Option 1 name").fill("Color")
    page.get_by_label("Option 1 values").fill("Red, Blue")
    page.get_by_label("Option 1 values").dispatch_event("change")
    for sku, color, prices in [("LAMP-RED", "Red", "EUR 1999, USD 2199"), ("LAMP-BLUE", "Blue", "EUR 2099")]:
        page.get_by_role("button", name="Add variant").click()
        row = page.locator(".variants tbody tr").last
        row.get_by_label("SKU of", exact=False).fill(sku)
        row.get_by_label("Color of", exact=False).select_option(color)
        row.get_by_label("Prices of", exact=False).fill(prices)
    # A price the console cannot read is named next to the variant's prices, before anything is sent.
    page.get_by_label("Prices of variant 2").fill("twenty euros")
    page.get_by_role("button", name="Create product").click()
    expect(field_error(page, "Prices of variant 2")).to_contain_text("minor units")
    page.get_by_label("Prices of variant 2").fill("EUR 2099")
    # The API's error is shown next to the field its param names: a SKU two variants share.
    page.get_by_label("SKU of variant 2").fill("LAMP-RED")
    page.get_by_role("button", name="Create product").click()
    expect(field_error(page, "SKU of variant 2")).to_contain_text("LAMP-RED")
    expect(page.get_by_label("SKU of variant 2")).to_have_attribute("aria-invalid", "true")
    console.shot("product-error", top=False)
    page.get_by_label("SKU of variant 2").fill("LAMP-BLUE")
    page.get_by_role("button", name="Create product").click()
    expect(page.get_by_role("heading", name="Desk lamp")).to_be_visible()
    lamp = request(port, "GET", "/products?handle=desk-lamp")[2][0]
    assert [v["sku"] for v in lamp["variants"]] == ["LAMP-RED", "LAMP-BLUE"], lamp
    assert lamp["variants"][0]["prices"] == [{"currency": "EUR", "amount": 1999}, {"currency": "USD", "amount": 2199}], lamp
    assert lamp["options"] == [{"name": "Color", "values": ["Red", "Blue"]}] and lamp["tags"] == ["light", "desk"], lamp
    assert lamp["images"] == [IMAGE_HOST + "lamp.png"] and len(lamp["category_ids"]) == 1, lamp
    console.shot("product", full_page=True)

    # An edit; then one made elsewhere meanwhile: 412, shown as such, and a reload shows the other change.
    page.get_by_label("Description", exact=True).fill("Warm light for reading, dimmable.")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_text("Saved Desk lamp")).to_be_visible()
    assert request(port, "GET", f"/products/{lamp['id']}")[2]["description"] == "Warm light for reading, dimmable."
    request(port, "PATCH", f"/products/{lamp['id']}", {"name": "Desk lamp (renamed elsewhere)"})
    page.get_by_label("Name", exact=True).fill("Desk lamp II")
    page.get_by_role("button", name="Save changes").click()
    expect(page.get_by_role("alert")).to_contain_text("changed by someone else")
    page.get_by_role("button", name="Reload the product").click()
    expect(page.get_by_label("Name", exact=True)).to_have_value("Desk lamp (renamed elsewhere)")

    # History, and a restore of the first version.
    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    expect(page.get_by_role("button", name="Restore version")).to_have_count(3, timeout=15_000)
    console.shot("history")
    page.get_by_role("button", name="Restore version").last.click()
    expect(page.get_by_label("Name", exact=True)).to_have_value("Desk lamp")
    expect(page.get_by_label("Description", exact=True)).to_have_value("Warm light for reading.")

    # A product deleted from its page (the dialog accepted) is gone.
    stool = request(port, "POST", "/products", {"name": "Stool"})[2]
    page.goto(console.origin + f"/admin#/products/{stool['id']}")
    expect(page.get_by_role("heading", name="Stool")).to_be_visible()
    page.get_by_role("button", name="Delete product").click()
    expect(page.get_by_role("heading", name="Products", exact=True)).to_be_visible()
    assert request(port, "GET", f"/products/{stool['id']}")[0] == 404

    # Search and facets.
    page.get_by_role("link", name="Products", exact=True).click()
    page.get_by_label("Search", exact=True).fill("lamp")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("tbody tr")).to_have_count(1)
    expect(page.locator("tbody")).to_contain_text("Desk lamp")
    page.get_by_label("Search", exact=True).fill("")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_text("31 products")).to_be_visible()
    page.get_by_label("furniture (30)").check()
    expect(page.get_by_text("30 products")).to_be_visible()
    page.get_by_label("lighting (1)").check()
    expect(page.get_by_text("31 products")).to_be_visible()
    console.shot("products")
    return lamp


def import_export_tasks(console, port):
    page = console.page
    page.get_by_role("link", name="Imports and exports").click()
    lines = "\n".join([json.dumps({"name": "Imported vase", "tags": ["vase"]}), json.dumps({"name": "Bad", "colour": "blue"}),
                       json.dumps({"name": "Imported bowl"})]) + "\n"
    page.get_by_label("Import file (JSON Lines)").set_input_files(
        files=[{"name": "products.jsonl", "mimeType": "application/x-ndjson", "buffer": lines.encode()}])
    page.get_by_label("When a line is invalid").select_option("skip_invalid")
    page.get_by_role("button", name="Upload and import").click()
    expect(page.locator("[data-fact=status]")).to_have_text("partially_succeeded", timeout=60_000)
    expect(page.locator("[data-fact=written]")).to_have_text("2")
    expect(page.get_by_role("cell", name="colour", exact=True)).to_be_visible()
    console.shot("imports")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the catalog (JSON Lines)").click()
    exported = open(download.value.path()).read().splitlines()
    names = {json.loads(line)["name"] for line in exported}
    assert len(exported) == 33 and {"Imported vase", "Imported bowl", "Desk lamp"} <= names, (len(exported), names)


def webhook_and_health_tasks(console, port, receiver, lamp):
    page = console.page
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Endpoint URL").fill("ftp://nowhere")
    page.get_by_role("button", name="Add endpoint").click()
    expect(field_error(page, "Endpoint URL")).not_to_be_empty()
    url = f"http://127.0.0.1:{receiver.port}/hooks"
    page.get_by_label("Endpoint URL").fill(url)
    page.get_by_label("Description").fill("Storefront cache")
    page.get_by_role("button", name="Add endpoint").click()
    expect(page.get_by_role("alert")).to_contain_text("shown only now")
    secret = page.locator(".secret").inner_text()
    assert secret.startswith("whsec_"), secret
    console.shot("webhooks")
    page.reload()
    expect(page.locator(".secret")).to_have_count(0)
    request(port, "PATCH", f"/products/{lamp['id']}", {"description": "Sent to the webhook."})
    deadline = time.time() + 60
    while not receiver.received and time.time() < deadline:
        time.sleep(0.2)
    assert receiver.received, "the endpoint got no delivery"
    page.get_by_role("button", name=f"Deliveries to {url}").click()
    expect(page.get_by_role("cell", name="product.updated").first).to_be_visible(timeout=15_000)
    page.get_by_role("button", name=f"Disable {url}").click()
    expect(page.get_by_role("button", name=f"Enable {url}")).to_be_visible()

    page.get_by_role("link", name="Health").click()
    expect(page.locator("dd").first).to_have_text("healthy", timeout=30_000)
    expect(page.get_by_text("Writes not yet stored by the database (this shop)")).to_be_visible()
    console.shot("health")


def sign_in_tasks(browser, processes, work, artifacts):
    database_file = os.path.join(work, "keys.sqlite")
    database, (products,) = processes.stack("keys", 1)
    # The stack's Database Service was started on keys.sqlite: the key goes into it directly.
    created = subprocess.run([os.path.join(processes.bin_dir, "database-service"), "keys", "create", "--tenant", "shop",
                              "--database", database_file], capture_output=True, text=True, check=True).stdout.split()[-1]
    deadline = time.time() + 30
    while request(products, "GET", "/products")[0] != 401 and time.time() < deadline:
        time.sleep(0.2)
    console = Console(browser, products, artifacts)
    page = console.page
    console.open()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    console.shot("sign-in")
    page.get_by_label("API key").fill("pk_not_a_key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".form-error")).to_contain_text("not accepted")
    page.get_by_label("API key").fill(created)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Products", exact=True)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('products-console-key')") == created
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('products-console-key')") is None
    console.close()
    return database


def main():
    args, artifacts = arguments(__doc__)
    # Webhooks may go to the receiver on this machine.
    os.environ["WEBHOOK_ALLOW_PRIVATE"] = "1"
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as work:
        processes = Processes(os.path.abspath(args.bin), work)
        try:
            database, (products,) = processes.stack("console", 1)
            status, headers, _ = request(products, "GET", "/admin")
            policy = headers.get("Content-Security-Policy", "")
            assert status == 200 and "script-src 'self';" in policy and "frame-ancestors 'none'" in policy, policy
            assert headers.get("X-Content-Type-Options") == "nosniff"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                try:
                    console = Console(browser, products, artifacts)
                    lamp = products_tasks(console, products)
                    import_export_tasks(console, products)
                    webhook_and_health_tasks(console, products, receiver, lamp)
                    console.close()
                    sign_in_tasks(browser, processes, work, artifacts)
                finally:
                    browser.close()
        finally:
            processes.stop()
            receiver.server.shutdown()
    print("console: every task passed in chromium, screenshots in .ci/artifacts/console-*.png")


if __name__ == "__main__":
    main()
