"""Open a report's HTML page in real headless Chromium, offline, and check that every plot shows.

    python scripts/check_html.py report.html [--screenshot report.png]

Checks: the file is under 2 MB; the page loads with every network request refused and asks
for no resource at all; every figure's SVG is laid out with a non-zero size, is not hidden
and holds drawn marks; the tables sort (a header click reorders rows without error).
Prints one line per check and exits 0 when all hold, 1 when one fails, 2 when Chromium is
missing (Debian: ``apt-get install chromium``). The tests run it where Chromium exists.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_BYTES = 2_000_000

# Appended to a copy of the page: measures what Chromium actually laid out and writes it
# into the DOM, which --dump-dom then prints.
PROBE = """
<script>
window.addEventListener('load', () => {
  const figures = [...document.querySelectorAll('figure')].map(f => {
    const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const style = svg ? getComputedStyle(svg) : {display: 'none', visibility: 'hidden'};
    const marks = svg ? svg.querySelectorAll('rect,circle,polyline,polygon').length : 0;
    return {caption: (f.querySelector('figcaption') || {}).textContent || '', width: box.width, height: box.height,
            display: style.display, visibility: style.visibility, marks: marks};
  });
  let sorted = true;
  try { const th = document.querySelector('th'); if (th) { th.click(); th.click(); } } catch (e) { sorted = String(e); }
  const resources = performance.getEntriesByType('resource').map(r => r.name);
  const out = document.createElement('pre'); out.id = 'ser-audit-probe';
  out.textContent = JSON.stringify({figures, resources, sorted, tables: document.querySelectorAll('table').length});
  document.body.appendChild(out);
});
</script>
"""


def chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)


def run_chromium(binary: str, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-quic", f"--user-data-dir={profile}",
             # Every host name fails to resolve: a page that needs the network cannot get it.
             "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", *extra, page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )


def check(page: Path, screenshot: Path | None = None) -> list[tuple[bool, str]]:
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("Chromium not found; install it (Debian: apt-get install chromium)")
    results = []
    size = page.stat().st_size
    results.append((size < MAX_BYTES, f"size {size / 1e6:.2f} MB (limit 2 MB)"))
    with tempfile.TemporaryDirectory() as folder:
        probed = Path(folder) / page.name
        probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
        dom = run_chromium(binary, probed, "--dump-dom")
        found = re.search(r'<pre id="ser-audit-probe">(.*?)</pre>', dom.stdout, re.S)
        if not found:
            return [*results, (False, f"the page did not finish loading in Chromium: {dom.stderr.strip()[-300:]}")]
        probe = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
        if screenshot is not None:
            shot = run_chromium(binary, page, f"--screenshot={screenshot.resolve()}", "--window-size=1280,6000")
            results.append((screenshot.is_file(), f"screenshot {screenshot} ({shot.returncode})"))
    figures = probe["figures"]
    results.append((bool(figures), f"{len(figures)} figure(s)"))
    for figure in figures:
        shown = figure["width"] > 0 and figure["height"] > 0 and figure["display"] != "none" and figure["visibility"] != "hidden"
        results.append((shown and figure["marks"] > 0, f"figure {figure['caption'][:70]!r}: {figure['width']:.0f}x"
                        f"{figure['height']:.0f} px, {figure['marks']} marks"))
    results.append((not probe["resources"], f"network requests: {probe['resources'] or 'none'}"))
    results.append((probe["sorted"] is True, f"table sorting: {'works' if probe['sorted'] is True else probe['sorted']}"))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args()
    try:
        results = check(args.page, args.screenshot)
    except FileNotFoundError as error:
        print(f"check_html: {error}", file=sys.stderr)
        return 2
    for passed, line in results:
        print(f"{'ok  ' if passed else 'FAIL'} {line}")
    return 0 if all(passed for passed, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
