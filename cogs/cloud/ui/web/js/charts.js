// #/charts (admin): a few live charts from cogsd's own Prometheus metrics (docs/metrics.md).
// GET /metrics (public: Prometheus scrapes it without a token, so none is sent) every 5 s; the few
// series needed are parsed here and turned into points: a counter's rate over the last interval, a
// histogram's mean and p95 over the last interval (from the increase of its _sum, _count and
// buckets), a gauge as it is. The last POINTS points of each line are kept (bounded), drawn as SVG
// polylines made with createElementNS: no library, no innerHTML.
import { clear, h } from "./dom.js";
import { statusLine } from "./widgets.js";

export const POLL_MS = 5000;
const POINTS = 60;
const SVG = "http://www.w3.org/2000/svg";
const W = 360;
const H = 120;

// Prometheus text format 0.0.4: `name{label="value",...} value [timestamp]`; comments skipped.
// Returns [{name, labels, value}]. Label values may hold escaped quotes, backslashes and newlines.
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    let i = 0;
    while (i < line.length && line[i] !== "{" && line[i] !== " ") i++;
    const name = line.slice(0, i);
    const labels = {};
    if (line[i] === "{") {
      i++;
      while (i < line.length && line[i] !== "}") {
        const eq = line.indexOf("=", i);
        if (eq < 0) break;
        const key = line.slice(i, eq).trim();
        let j = eq + 2; // past ="
        let value = "";
        while (j < line.length && line[j] !== '"') {
          if (line[j] === "\\" && j + 1 < line.length) {
            const c = line[j + 1];
            value += c === "n" ? "\n" : c;
            j += 2;
          } else {
            value += line[j++];
          }
        }
        labels[key] = value;
        i = j + 1;
        if (line[i] === ",") i++;
      }
      i++; // past }
    }
    const rest = line.slice(i).trim().split(/\s+/);
    const value = Number(rest[0] === "+Inf" ? Infinity : rest[0] === "-Inf" ? -Infinity : rest[0]);
    if (name) out.push({ name, labels, value });
  }
  return out;
}

// The sum of every sample of `name` whose labels pass `keep`.
export function total(samples, name, keep = () => true) {
  let s = 0;
  for (const x of samples) if (x.name === name && keep(x.labels)) s += x.value;
  return s;
}

// A histogram summed over its other labels: {sum, count, buckets: [[le, cumulative count]...]}.
export function histogram(samples, name) {
  const buckets = new Map();
  for (const x of samples) {
    if (x.name === name + "_bucket") {
      const le = x.labels.le === "+Inf" ? Infinity : Number(x.labels.le);
      buckets.set(le, (buckets.get(le) || 0) + x.value);
    }
  }
  return {
    sum: total(samples, name + "_sum"),
    count: total(samples, name + "_count"),
    buckets: [...buckets.entries()].sort((a, b) => a[0] - b[0]),
  };
}

// The q-quantile of the observations between two scrapes of a histogram (linear within a bucket,
// as Prometheus's histogram_quantile); null when nothing was observed.
export function quantileBetween(before, now, q) {
  const inc = now.buckets.map(([le, c], i) => [le, c - (before.buckets[i]?.[1] ?? 0)]);
  const n = inc.length ? inc[inc.length - 1][1] : 0;
  if (n <= 0) return null;
  const rank = q * n;
  let prevLe = 0;
  let prevCount = 0;
  for (const [le, c] of inc) {
    if (c >= rank) {
      if (le === Infinity) return prevLe;
      return prevLe + (le - prevLe) * ((rank - prevCount) / Math.max(1e-9, c - prevCount));
    }
    prevLe = le;
    prevCount = c;
  }
  return prevLe;
}

// An increase of a counter; a counter that went down restarted (cogsd restarted): its value is the increase.
function increase(before, now) {
  return now >= before ? now - before : now;
}

// A line's value from the previous and the current scrape (samples) and the seconds between them.
const rate = (name, keep) => (a, b, dt) => increase(total(a, name, keep), total(b, name, keep)) / dt;
const perMinute = (name, keep) => (a, b, dt) => rate(name, keep)(a, b, dt) * 60;
const gauge = (name, keep) => (a, b) => total(b, name, keep);
// A histogram's mean over the interval, times `scale`; with nothing observed in the interval, the
// mean of everything so far when `sinceStart` (so a rare event's line says what it costs), else null.
const mean =
  (name, scale = 1, sinceStart = false) =>
  (a, b) => {
    const x = histogram(a, name);
    const y = histogram(b, name);
    if (y.count > x.count) return ((y.sum - x.sum) / (y.count - x.count)) * scale;
    return sinceStart && y.count > 0 ? (y.sum / y.count) * scale : null;
  };
const quantile = (name, q, scale = 1) => (a, b) => {
  const v = quantileBetween(histogram(a, name), histogram(b, name), q);
  return v === null ? null : v * scale;
};
const outcome = (o) => (l) => l.outcome === o;

// The charts (docs/metrics.md): a title, a unit, and a function per line.
const CHARTS = [
  {
    id: "workflows",
    title: "Workflows per second",
    unit: "/s",
    lines: [
      ["started", rate("cogs_workflows_started_total")],
      ["finished", rate("cogs_workflows_finished_total")],
      ["failed", rate("cogs_workflows_finished_total", outcome("failed"))],
    ],
  },
  {
    id: "step-latency",
    title: "Step latency (last interval)",
    unit: " ms",
    lines: [
      ["mean", mean("cogs_step_duration_seconds", 1000)],
      ["p95", quantile("cogs_step_duration_seconds", 0.95, 1000)],
    ],
  },
  {
    id: "placement",
    title: "Placements per minute",
    unit: "/min",
    lines: [
      ["failed", perMinute("cogs_placement_failures_total")],
      ["placed", perMinute("cogs_placements_total", outcome("placed"))],
    ],
  },
  {
    id: "heal",
    title: "Time to heal",
    note: "a down host's last renewal → one of its servers ACTIVE elsewhere",
    unit: " s",
    lines: [["mean", mean("cogs_heal_duration_seconds", 1, true)]],
  },
  {
    id: "hosts",
    title: "Hosts by state",
    unit: "",
    lines: ["up", "suspect", "down", "disabled"].map((st) => [st, gauge("cogs_hosts", (l) => l.state === st)]),
  },
];

function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

// "1.23" / "12.3" / "123": three significant digits at most.
function fmt(v) {
  if (v === null || v === undefined || !isFinite(v)) return "–";
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? String(Math.round(v)) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

export function renderCharts(main, session) {
  let stopped = false;
  let timer = 0;
  let previous = null; // {t, samples}
  const history = new Map(CHARTS.map((c) => [c.id, c.lines.map(() => [])])); // per chart, per line: values
  const status = statusLine("charts-status");
  const figures = new Map();

  const grid = h("div", { class: "charts" });
  for (const c of CHARTS) {
    const plot = svg("svg", {
      viewBox: `0 0 ${W} ${H}`,
      class: "chart",
      role: "img",
      "aria-labelledby": "chart-t-" + c.id,
    });
    const legend = h("ul", { class: "legend" });
    const fig = h(
      "figure",
      { class: "chart-box", id: "chart-" + c.id, "data-points": 0 },
      h("figcaption", { id: "chart-t-" + c.id }, c.title, c.note ? h("span", { class: "sub" }, c.note) : null),
      plot,
      legend,
    );
    figures.set(c.id, { fig, plot, legend });
    grid.append(fig);
  }
  clear(main).append(
    h("div", { class: "title" }, h("h1", {}, "Charts"), h("a", { href: "#/hosts" }, "Hosts")),
    h("p", { class: "help" }, `cogsd's /metrics, read every ${POLL_MS / 1000} s; the last ${POINTS} points of each line.`),
    status.el,
    grid,
  );

  async function scrape() {
    let text;
    try {
      const answer = await fetch("/metrics", { cache: "no-store", credentials: "omit" });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      text = await answer.text();
    } catch (e) {
      status.error("Cannot read /metrics: " + e.message);
      return;
    }
    const now = { t: performance.now(), samples: parseMetrics(text) };
    if (previous) {
      const dt = Math.max(0.001, (now.t - previous.t) / 1000);
      for (const c of CHARTS) {
        const lines = history.get(c.id);
        c.lines.forEach(([, f], i) => {
          const v = f(previous.samples, now.samples, dt);
          lines[i].push(v === null || !isFinite(v) ? null : v);
          if (lines[i].length > POINTS) lines[i].shift();
        });
        draw(c);
      }
      status.show("");
    } else {
      status.show("Reading the metrics; the first points come at the next read.");
    }
    previous = now;
  }

  function draw(c) {
    const { fig, plot, legend } = figures.get(c.id);
    const lines = history.get(c.id);
    let max = 0;
    for (const l of lines) for (const v of l) if (v !== null && v > max) max = v;
    const top = max > 0 ? max * 1.1 : 1;
    const pad = 4;
    const x = (i) => pad + (i * (W - 2 * pad)) / (POINTS - 1);
    const y = (v) => H - pad - (v / top) * (H - 2 * pad);
    const nodes = [
      svg("line", { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, class: "axis" }),
      svg("line", { x1: pad, y1: pad, x2: W - pad, y2: pad, class: "grid" }),
    ];
    const topLabel = svg("text", { x: W - pad, y: pad + 11, class: "tick", "text-anchor": "end" });
    topLabel.textContent = fmt(top) + c.unit;
    nodes.push(topLabel);
    lines.forEach((l, i) => {
      // Right-aligned: the newest point at the right edge; a null (nothing observed) breaks the line.
      const offset = POINTS - l.length;
      let run = [];
      const flush = () => {
        if (run.length === 1) {
          nodes.push(svg("circle", { cx: run[0][0], cy: run[0][1], r: 2, class: "series s" + i }));
        }
        if (run.length > 1) {
          nodes.push(svg("polyline", { points: run.map((p) => p.join(",")).join(" "), class: "series s" + i }));
        }
        run = [];
      };
      l.forEach((v, j) => {
        if (v === null) flush();
        else run.push([x(offset + j).toFixed(1), y(v).toFixed(1)]);
      });
      flush();
    });
    plot.replaceChildren(...nodes);
    const latest = lines.map((l) => (l.length ? l[l.length - 1] : null));
    fig.dataset.points = lines[0].length;
    legend.replaceChildren(
      ...c.lines.map(([name], i) =>
        h(
          "li",
          { class: "s" + i, "data-line": name },
          h("span", { class: "swatch", "aria-hidden": "true" }),
          `${name}: ` + (latest[i] === null ? "none" : fmt(latest[i]) + c.unit),
        ),
      ),
    );
  }

  // Its own timer rather than every(): the first read only primes the rates, so the second comes soon.
  const tick = async () => {
    if (stopped) return;
    await scrape();
    if (!stopped) timer = setTimeout(tick, previous && history.get(CHARTS[0].id)[0].length ? POLL_MS : 1000);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
