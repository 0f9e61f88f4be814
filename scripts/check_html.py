"""Open a report's HTML page in real headless Chromium, offline, and check that every plot shows.

    python scripts/check_html.py report.html [--screenshot report.png]

Checks, on a window 1280 px wide: the file is under 2 MB; the page loads with every network
request refused and asks for no resource at all; every figure's SVG is laid out with a non-zero
size, is not hidden, holds drawn marks, spans at least 60% of the content column, and its legend
covers none of its marks (bounding boxes as Chromium laid them out); the summary's verdict
sentence agrees with the page's per-layer verdict table (the layer it names has the verdict and
severity it states, and as many layers leak as it says); printing opens every folded table; the
tables sort (a header click reorders rows without error).
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
  const column = document.querySelector('main') || document.body; const cs = getComputedStyle(column);
  const columnWidth = column.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
  const overlap = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  const figures = [...document.querySelectorAll('figure')].map(f => {
    const svg = f.querySelector('svg'); const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    const style = svg ? getComputedStyle(svg) : {display: 'none', visibility: 'hidden'};
    const drawn = svg ? [...svg.querySelectorAll('.mark')] : [];
    const marks = drawn.length ? drawn : (svg ? [...svg.querySelectorAll('rect,circle,polyline,polygon')] : []);
    const legend = svg ? [...svg.querySelectorAll('.legend')] : [];
    let covered = 0;
    for (const item of legend) { const a = item.getBoundingClientRect();
      for (const mark of marks) { if (overlap(a, mark.getBoundingClientRect())) { covered += 1; } } }
    return {caption: (f.querySelector('figcaption') || {}).textContent || '', width: box.width, height: box.height,
            display: style.display, visibility: style.visibility, marks: marks.length, legend: legend.length, covered};
  });
  const summary = document.querySelector('#summary');
  const headline = summary ? (summary.querySelector('.headline') || summary.querySelector('li')) : null;
  const table = document.querySelector('#verdict-table') || (summary ? summary.querySelector('table') : null);
  const verdicts = table ? {headers: [...table.querySelectorAll('thead th')].map(th => th.textContent.trim()),
                            rows: [...table.querySelectorAll('tbody tr')].map(tr => [...tr.cells].map(c => c.textContent.trim()))}
                         : null;
  let sorted = true;
  try { const th = document.querySelector('th'); if (th) { th.click(); th.click(); } } catch (e) { sorted = String(e); }
  window.dispatchEvent(new Event('beforeprint'));
  const folded = [...document.querySelectorAll('details')].filter(d => !d.open).length;
  const resources = performance.getEntriesByType('resource').map(r => r.name);
  const out = document.createElement('pre'); out.id = 'ser-audit-probe';
  out.textContent = JSON.stringify({figures, resources, sorted, columnWidth, folded,
    details: document.querySelectorAll('details').length, headline: headline ? headline.textContent : null, verdicts,
    tables: document.querySelectorAll('table').length});
  document.body.appendChild(out);
});
</script>
"""
SEVERITIES = ("none", "low", "medium", "high", "critical")
MIN_FIGURE_SHARE = 0.6


def headline_agrees(headline: str | None, verdicts: dict | None) -> tuple[bool, str]:
    """The summary's verdict sentence against the per-layer verdict table: ``LAYER leaks: L x [..], SEVERITY (..); N
    of M layers leak``, ``private: ..`` or ``inconclusive: ..``."""
    if not headline or not verdicts or "verdict" not in verdicts["headers"]:
        return False, "headline: no verdict sentence or no per-layer verdict table in the summary"
    sentence = headline.split("verdict: ", 1)[-1].strip()
    column = {name: i for i, name in enumerate(verdicts["headers"])}
    layers = {row[column["layer"]]: row for row in verdicts["rows"]}
    states = [row[column["verdict"]] for row in verdicts["rows"]]
    named = re.match(r"(?P<layer>\S+) leaks: L (?P<value>[0-9.]+) \[[^]]*\], (?P<severity>\w+) \(", sentence)
    if named:
        row = layers.get(named["layer"])
        if row is None:
            return False, f"headline names {named['layer']}, which the verdict table does not list"
        severity = row[column["severity"]] if "severity" in column else named["severity"]
        worst = max((SEVERITIES.index(r[column["severity"]]) for r in verdicts["rows"] if r[column["verdict"]] == "leaks"
                     and r[column["severity"]] in SEVERITIES), default=-1) if "severity" in column else -1
        count = re.search(r"(\d+) of (\d+) layers leak", sentence)
        problems = [
            *([f"its table row says {row[column['verdict']]}"] if row[column["verdict"]] != "leaks" else []),
            *([f"severity {named['severity']} but the row says {severity}"] if severity != named["severity"] else []),
            *([f"a leaking layer is more severe than {severity}"] if worst > SEVERITIES.index(severity) else []),
            *([f"it counts {count[1]} of {count[2]} leaking layers, the table {states.count('leaks')} of {len(states)}"]
              if count and (int(count[1]), int(count[2])) != (states.count("leaks"), len(states)) else []),
        ]
        state = f"{named['layer']} leaks, {named['severity']}"
    elif sentence.startswith("private"):
        problems = [f"{layer} is {row[column['verdict']]}" for layer, row in layers.items()
                    if row[column["verdict"]] != "private"]
        state = "private"
    elif sentence.startswith("inconclusive"):
        problems = [*(["a layer leaks"] if "leaks" in states else []),
                    *(["no layer is inconclusive"] if "inconclusive" not in states else [])]
        state = "inconclusive"
    else:
        return False, f"headline states no verdict: {sentence[:80]!r}"
    return not problems, f"headline ({state}) agrees with the verdict table" + (f": NO, {'; '.join(problems)}"
                                                                                 if problems else "")


def chromium() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None)


def run_chromium(binary: str, page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-quic", f"--user-data-dir={profile}",
             # Every host name fails to resolve: a page that needs the network cannot get it.
             "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=5000", "--window-size=1280,2000", *extra,
             page.as_uri()],
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
    column = probe["columnWidth"]
    for figure in figures:
        shown = figure["width"] > 0 and figure["height"] > 0 and figure["display"] != "none" and figure["visibility"] != "hidden"
        name = f"figure {figure['caption'][:60]!r}"
        results.append((shown and figure["marks"] > 0, f"{name}: {figure['width']:.0f}x"
                        f"{figure['height']:.0f} px, {figure['marks']} marks"))
        share = figure["width"] / column if column else 0.0
        results.append((share >= MIN_FIGURE_SHARE, f"{name}: {share:.0%} of the {column:.0f} px content column "
                        f"(at least {MIN_FIGURE_SHARE:.0%})"))
        results.append((figure["covered"] == 0, f"{name}: legend ({figure['legend']} elements) covers "
                        f"{figure['covered']} mark(s)"))
    results.append(headline_agrees(probe["headline"], probe["verdicts"]))
    results.append((probe["folded"] == 0, f"print opens every folded table: {probe['details'] - probe['folded']} of "
                    f"{probe['details']} open"))
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
