#!/usr/bin/env python3
"""Checks a Grafana dashboard against the metrics catalogue (docs/metrics.md).

    scripts/check-dashboard.py [--prometheus http://HOST:PORT] [--cogsd-job cogsd]
                               [docs/grafana/cogs-dashboard.json] [docs/metrics.md]

It fails (exit 1, one line per problem) when the dashboard is not valid JSON, lacks the
${DS_PROMETHEUS} datasource input, has duplicate panel ids or a panel without a query, or when a
PromQL expression names a series the catalogue does not list (a histogram `x` gives `x_bucket`,
`x_sum` and `x_count`), or a label that series does not carry (`le` on buckets, and the target
labels `job` and `instance`, are always allowed). With promtool on the PATH (Debian's `prometheus`
package, which scripts/install-deps installs) every expression is also parsed by Prometheus itself,
as a recording rule given to `promtool check rules`.

With --prometheus, every query also runs against that Prometheus (over the last 5 minutes, with
$__rate_interval = 30s and $cogsd = the --cogsd-job): a query it refuses is a problem; one that
returns no series is listed as a note (some series appear only once something happens: 5xx
answers, placement failures). Python 3 standard library only.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# PromQL words that are not series: aggregations, keywords, functions without parentheses after them.
KEYWORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset",
    "bool", "inf", "nan",
}
TARGET_LABELS = {"job", "instance"}


def catalogue(path):
    """{series name: set of labels} from the tables of docs/metrics.md."""
    series = {}
    for line in Path(path).read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3:
            continue
        names = re.findall(r"`([a-zA-Z_:][a-zA-Z0-9_:]*)`", cells[0])
        kind = cells[1]
        labels = {l.strip() for l in cells[2].split(",") if l.strip()}
        for name in names:
            series[name] = labels
            if "histogram" in kind:
                series[name + "_bucket"] = labels | {"le"}
                series[name + "_sum"] = labels
                series[name + "_count"] = labels
    return series


def strip_strings(expr):
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def check_expr(expr, series):
    """Problems of one PromQL expression."""
    problems = []
    text = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "", expr)  # Grafana variables ($__rate_interval, $cogsd)
    used = {}  # series name → labels matched on it
    # Selectors with matchers: name{a="x", b=~"y"}.
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", text):
        name = m.group(1)
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", strip_strings(m.group(2))))
        if name:
            used.setdefault(name, set()).update(labels)
    bare = strip_strings(text)
    grouping = set()
    for m in re.finditer(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", bare):
        grouping.update(l.strip() for l in m.group(2).split(",") if l.strip())
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    bare = re.sub(r"\{[^}]*\}", " ", bare)
    bare = re.sub(r"\[[^\]]*\]", " ", bare)
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", bare):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        used.setdefault(word, set())
    if not used:
        problems.append("names no series")
    known_labels = set(TARGET_LABELS)
    for name, labels in used.items():
        if name not in series:
            problems.append(f"series '{name}' is not in docs/metrics.md")
            continue
        allowed = series[name] | TARGET_LABELS
        known_labels |= allowed
        for label in sorted(labels - allowed):
            problems.append(f"series '{name}' has no label '{label}'")
    if any(n.endswith("_bucket") for n in used):
        known_labels.add("le")
    for label in sorted(grouping - known_labels):
        problems.append(f"groups by '{label}', which none of its series carries")
    return problems


def promtool_problems(exprs):
    """Syntax errors Prometheus finds in the expressions (Grafana variables given plain values)."""
    promtool = shutil.which("promtool")
    if not promtool:
        print("note: promtool not found; PromQL syntax not checked by Prometheus")
        return []
    rules = []
    for i, (where, expr) in enumerate(exprs):
        expr = expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
        expr = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".+", expr)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)  # JSON is YAML
        path = f.name
    try:
        run = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        Path(path).unlink()
    if run.returncode == 0:
        return []
    problems = []
    for line in (run.stdout + run.stderr).splitlines():
        m = re.search(r"group \"dashboard\", rule (\d+)", line)
        if m and int(m.group(1)) - 1 < len(exprs):
            where, expr = exprs[int(m.group(1)) - 1]
            problems.append(f"{where}: Prometheus cannot parse it: {line.strip()}")
        elif line.strip() and "FAILED" not in line and "Checking" not in line:
            problems.append(f"promtool: {line.strip()}")
    return problems or [f"promtool check rules failed: {run.stdout} {run.stderr}"]


def prometheus_problems(exprs, url, cogsd_job):
    """Queries that a live Prometheus refuses; prints a note for those that return nothing."""
    problems = []
    empty = 0
    now = time.time()
    for where, expr in exprs:
        expr = expr.replace("$__rate_interval", "30s").replace("$__interval", "30s")
        expr = re.sub(r"\$\{?cogsd\}?", cogsd_job, expr)
        query = urllib.parse.urlencode({"query": expr, "start": now - 300, "end": now, "step": "5"})
        try:
            with urllib.request.urlopen(f"{url.rstrip('/')}/api/v1/query_range?{query}", timeout=30) as r:
                answer = json.load(r)
        except urllib.error.HTTPError as e:
            problems.append(f"{where}: Prometheus refused it: {e.read().decode(errors='replace')[:300]}")
            continue
        except (OSError, ValueError) as e:
            return [f"cannot query {url}: {e}"]
        if answer.get("status") != "success":
            problems.append(f"{where}: Prometheus answered {answer.get('error', answer)}")
        elif not answer["data"]["result"]:
            empty += 1
            print(f"note: {where}: no series in the last 5 minutes")
    print(f"{len(exprs) - empty - len(problems)} of {len(exprs)} queries returned series from {url}")
    return problems


def panels_of(dashboard):
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows hold their panels


def main(argv):
    args = argv[1:]
    options = {"--prometheus": "", "--cogsd-job": "cogsd"}
    while args and args[0] in options:
        if len(args) < 2:
            print(f"usage: {argv[0]} [--prometheus URL] [--cogsd-job JOB] [DASHBOARD [METRICS_MD]]")
            return 2
        options[args[0]] = args[1]
        args = args[2:]
    dashboard_path = Path(args[0]) if len(args) > 0 else ROOT / "docs/grafana/cogs-dashboard.json"
    metrics_path = Path(args[1]) if len(args) > 1 else ROOT / "docs/metrics.md"
    problems = []
    try:
        dashboard = json.loads(dashboard_path.read_text())
    except (OSError, ValueError) as e:
        print(f"{dashboard_path}: not a readable JSON file: {e}")
        return 1
    series = catalogue(metrics_path)
    if not series:
        print(f"{metrics_path}: no series found in its tables")
        return 1
    inputs = [i.get("name") for i in dashboard.get("__inputs", [])]
    if "DS_PROMETHEUS" not in inputs:
        problems.append("no DS_PROMETHEUS datasource input")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("no schemaVersion")
    ids = set()
    queries = 0
    exprs = []
    for p in panels_of(dashboard):
        title = p.get("title", "?")
        if p.get("id") in ids:
            problems.append(f"panel '{title}': duplicate id {p.get('id')}")
        ids.add(p.get("id"))
        if p.get("type") == "row":
            continue
        if "gridPos" not in p:
            problems.append(f"panel '{title}': no gridPos")
        if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
            problems.append(f"panel '{title}': datasource is not ${{DS_PROMETHEUS}}")
        targets = p.get("targets", [])
        if not targets:
            problems.append(f"panel '{title}': no query")
        for t in targets:
            queries += 1
            exprs.append((f"panel '{title}' ({t.get('refId')})", t.get("expr", "")))
            for problem in check_expr(t.get("expr", ""), series):
                problems.append(f"panel '{title}' ({t.get('refId')}): {problem}")
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        for m in re.finditer(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", q):
            if m.group(1) not in series:
                problems.append(f"variable '{v.get('name')}': series '{m.group(1)}' is not in docs/metrics.md")
    problems += promtool_problems(exprs)
    if options["--prometheus"] and not problems:
        problems += prometheus_problems(exprs, options["--prometheus"], options["--cogsd-job"])
    for problem in problems:
        print(f"{dashboard_path}: {problem}")
    if problems:
        return 1
    print(f"{dashboard_path}: {len(ids)} panels, {queries} queries, every series in {metrics_path.name}"
          f"{' and parsed by promtool' if shutil.which('promtool') else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
