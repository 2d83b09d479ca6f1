"""A picture of report.html as a browser draws it, for the README: headless Chromium (Debian's
chromium and chromium-driver, as the tests use), offline, once every plot has been drawn.

    python scripts/screenshot.py results/quick-STAMP-report/report.html docs/demo/report_html.png

`make readme-figures` runs it on the demo's report. Exits 2 with one line if the page is missing
or Chromium is not installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed.browser import INSTALL, PLOTLY_READY, Browser, missing_binaries  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("page", type=Path, help="a report.html that `python -m analysis figures` wrote")
    p.add_argument("png", type=Path, help="where to write the picture")
    p.add_argument("--width", type=int, default=1400, help="the window's width in pixels (default 1400)")
    args = p.parse_args()
    if not args.page.is_file():
        print(f"screenshot: error: {args.page}: no such file", file=sys.stderr)
        return 2
    if missing := missing_binaries():
        print(f"screenshot: error: {', '.join(missing)} not found: {INSTALL}", file=sys.stderr)
        return 2
    with Browser(width=args.width) as browser:
        visit = browser.visit(args.page, args.png, ready=PLOTLY_READY, timeout=120)
    if visit.console_errors:
        print(f"screenshot: error: the page logged {visit.console_errors[0]}", file=sys.stderr)
        return 2
    print(f"{args.png}: {args.png.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
