#!/usr/bin/env python3
"""Browser test: each service's /docs renders Swagger UI with the network blocked (Playwright driving Debian's
chromium). Every request that does not go to the service under test is aborted and counted; the test fails if
the page asked for anything elsewhere, if Swagger UI did not render the service's operations, or if the browser
reported a Content Security Policy violation or a script error, or if "Try it out" on the Products Service's
GET /products did not get a 200 from the service that served the page. A screenshot of each page is saved under
.ci/artifacts/.

    Tests/Browser/docs_offline.py --bin .build/debug
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from replicas import Processes  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from _support import arguments  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402



def check(browser, name, port, artifacts, try_path=None, path="/docs"):
    origin = f"http://127.0.0.1:{port}"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    blocked, problems = [], []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(origin + "/"):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort("internetdisconnected")

    context.route("**/*", route)
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    response = page.goto(origin + path, wait_until="networkidle")
    assert response.status == 200, f"{name}: {path} answered {response.status}"
    assert page.url == origin + "/docs", f"{name}: {path} ended at {page.url}"
    # Swagger UI rendered the document: its title and the operations it lists.
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    title = page.inner_text(".swagger-ui .info .title")
    operations = page.locator(".opblock").count()
    if path == "/docs":
        page.screenshot(path=os.path.join(artifacts, f"docs-{name}.png"), full_page=False)
    if try_path:
        # "Try it out" reaches the service that served the page, though the document names another server.
        operation = page.locator(".opblock.opblock-get").filter(
            has=page.locator(f".opblock-summary-path[data-path='{try_path}']")).first
        operation.locator(".opblock-summary").first.click()
        operation.locator("button.try-out__btn").click()
        operation.locator("button.execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status").first
        status.wait_for(timeout=30_000)
        assert status.inner_text().strip() == "200", f"{name}: try it out on {try_path} got {status.inner_text()!r}"
    context.close()
    assert name.replace("-", " ").lower() in title.lower(), f"{name}: the page's title is {title!r}"
    assert operations >= 10, f"{name}: Swagger UI shows {operations} operations"
    assert not blocked, f"{name}: the page asked for files elsewhere: {blocked}"
    assert not problems, f"{name}: the browser reported: {problems}"
    print(f"docs_offline: {name} {path} rendered {operations} operations offline ({title.splitlines()[0]})")


def main():
    args, artifacts = arguments(__doc__)
    with tempfile.TemporaryDirectory() as work:
        processes = Processes(os.path.abspath(args.bin), work)
        try:
            database, (products,) = processes.stack("docs", 1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                try:
                    check(browser, "products-service", products, artifacts, try_path="/products")
                    check(browser, "database-service", database, artifacts)
                    # With a trailing slash the page's relative asset paths would miss: the service redirects.
                    check(browser, "products-service", products, artifacts, path="/docs/")
                finally:
                    browser.close()
        finally:
            processes.stop()


if __name__ == "__main__":
    main()
