"""What the browser tests share: their command line and where their screenshots go."""
import argparse
import os

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def arguments(doc):
    """The test's arguments (`--bin`, `--chromium`), and the artifacts directory, made if missing."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the directory holding products-service and database-service")
    parser.add_argument("--chromium", default=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    artifacts = os.path.join(ROOT, ".ci", "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    return args, artifacts
