#!/usr/bin/env node
// console-scale: does the web console (cogs/cloud/ui) stay responsive at 1,000 servers?
//
//     node bench/console_scale.mjs BIN_DIR [--servers 1000] [--idle-s 30] [--batch 50] [--pace-ms 1000]
//                                          [--boot-ms 1000] [--hosts 2] [--sim-hosts 200] [--keep]
//
// A `cogs dev --no-tls` (test/browser/harness.mjs DevCloud, its `--hosts` sim hosts) and one more
// `cogs-compute --hosts N` process serving `--sim-hosts` simulated hosts, each enrolled through the
// API (as `cogs-bench create-storm` does): 16 vCPUs a host at cogsd's CPU ratio 4, 64 servers of the
// bench's 1-vCPU, 128 MB flavor each (with `--sim-hosts 0`, cogsd runs at `--cpu-ratio 16` so that
// the dev hosts hold them); a project without quotas, its member token.
//
// Debian's headless Chromium (playwright-core) signs in as the member and opens #/servers while the
// project has no server; then the servers are requested through the API, `--batch` at a time
// (`max_count`) every `--pace-ms` (the storm), until all are ACTIVE. Server ids grow with time
// (UUIDv7), so that page's first 50 stop changing once they are ACTIVE: a second page,
// #/servers?status=BUILD, shows a list that changes at every poll of the storm, measured alike. Then
// `--idle-s` of idle polling of #/servers. Measured in each page: long tasks (a PerformanceObserver
// of `longtask` installed before any script by addInitScript: every task over 50 ms), CDP's
// Performance.getMetrics (script, layout, style and task time, JS heap, DOM nodes), and Chromium's
// trace (every task of the renderer's main thread, so the longest even under 50 ms). Then: the pages
// walked with "Next page" to the last (the time from the click to the new rows and the next frame),
// reloads of #/servers (navigation to the first page drawn), the status and name filters once; an
// admin's #/servers, #/hosts, #/workflows?state=all and one server's page, each loaded (reload to
// drawn), followed for a few seconds, and reached again from another page by a hash change.
//
// Progress goes to stderr; the last line of stdout is one JSON object of figures (bench/README.md).
// It never fails on a timing. It exits 1 when an invariant is broken: a page of more than 50 rows;
// the pages walked not showing exactly the servers the API lists (each id once); a row's status not
// the API's; a filtered page not the API's answer to the same filter. `cogs dev` is stopped and
// Chromium closed whatever happens; the data directory is removed unless something failed or --keep.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { DEADLINE_MS, DevCloud, launchChromium, sleep, waitFor } from "../test/browser/harness.mjs";

// ---- options

function options(argv) {
  const o = { bin: "", servers: 1000, idleS: 30, batch: 50, paceMs: 1000, bootMs: 1000, hosts: 2, simHosts: 200, keep: false };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) usage(`${name} wants a whole number, not ${v}`);
    return n;
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.startsWith("--") && a.includes("=") ? a.split(/=(.*)/s) : [a, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === "--servers") o.servers = num(flag, value());
    else if (flag === "--idle-s") o.idleS = num(flag, value());
    else if (flag === "--batch") o.batch = num(flag, value());
    else if (flag === "--pace-ms") o.paceMs = num(flag, value());
    else if (flag === "--boot-ms") o.bootMs = num(flag, value());
    else if (flag === "--hosts") o.hosts = num(flag, value());
    else if (flag === "--sim-hosts") o.simHosts = num(flag, value());
    else if (flag === "--keep") o.keep = true;
    else if (flag === "-h" || flag === "--help") usage("");
    else if (!a.startsWith("--") && !o.bin) o.bin = a;
    else usage("unknown argument " + a);
  }
  if (!o.bin) usage("BIN_DIR is missing");
  for (const b of ["cogs", "cogsd", "cogs-compute", "cogs-network", "cogs-volume"]) {
    if (!fs.existsSync(path.join(o.bin, b))) usage(`${path.join(o.bin, b)} is missing (ninja -C <build> ${b})`);
  }
  if (o.servers < 1 || o.batch < 1 || o.batch > 1000) usage("--servers >= 1, 1 <= --batch <= 1000");
  if (o.hosts < 1 || o.hosts > 64 || o.simHosts > 1000) usage("1 <= --hosts <= 64, --sim-hosts <= 1000");
  // A host: 16 vCPUs at cogsd's CPU ratio (4, or 16 without sim hosts): 64 or 256 one-vCPU servers.
  o.cpuRatio = o.simHosts ? 4 : 16;
  if ((o.hosts + o.simHosts) * 16 * o.cpuRatio < o.servers * 1.1) usage("too few hosts for --servers: add --sim-hosts");
  return o;
}

function usage(why) {
  if (why) process.stderr.write("console_scale: " + why + "\n");
  process.stderr.write(
    "usage: node bench/console_scale.mjs BIN_DIR [--servers 1000] [--idle-s 30] [--batch 50] [--pace-ms 1000]\n" +
      "                                    [--boot-ms 1000] [--hosts 2] [--sim-hosts 200] [--keep]\n",
  );
  process.exit(2);
}

const O = options(process.argv);
const PAGE_ROWS = 50; // servers.js PAGE_SIZE: the invariant's bound
const FOLLOW_MS = 4000; // how long an admin's page is followed after it is drawn (two polls)

// ---- small things

const t00 = Date.now();
function progress(text) {
  process.stderr.write(`[console-scale ${((Date.now() - t00) / 1000).toFixed(1).padStart(6)} s] ${text}\n`);
}

const broken = []; // the invariants broken, each a sentence
function invariant(ok, what) {
  if (!ok) {
    broken.push(what);
    progress("INVARIANT BROKEN: " + what);
  }
  return ok;
}

const round = (x, d = 1) => (x === null || x === undefined || Number.isNaN(x) ? null : Math.round(x * 10 ** d) / 10 ** d);
function median(xs) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const max = (xs) => (xs.length ? Math.max(...xs) : null);
const mb = (bytes) => round(bytes / (1024 * 1024), 2);

function loadAverage() {
  try {
    return fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).map(Number);
  } catch {
    return null;
  }
}

// ---- the page's instruments

// Installed in every document before its scripts: each long task (> 50 ms) as [start, duration].
function longTaskObserver() {
  window.__longtasks = [];
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) window.__longtasks.push([e.startTime, e.duration]);
    }).observe({ type: "longtask", buffered: true });
  } catch (e) {
    window.__longtaskError = String(e);
  }
}

// A page with the long-task observer, a CDP session with Performance enabled, and a count of its
// GET /v1/servers (the list's polls) with their answers' statuses.
async function instrumentedPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  await page.addInitScript(longTaskObserver);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Performance.enable");
  const polls = []; // [Date.now(), status] of each answered GET /v1/servers
  page.on("response", (r) => {
    const u = new URL(r.url());
    if (u.pathname === "/v1/servers" && r.request().method() === "GET") polls.push([Date.now(), r.status()]);
  });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) errors.push(m.text());
  });
  return { context, page, cdp, polls, errors };
}

// Chromium's trace (browser-wide) from start() to stop(pages): for each of `pages` (each marks its
// renderer with console.timeStamp just before the trace stops) every task of its renderer's main
// thread (`RunTask`): the longest and those over 50 ms, below the long-task API's 50 ms floor too.
function tracer() {
  return {
    start: () => browser.startTracing(undefined, { categories: ["devtools.timeline", "disabled-by-default-devtools.timeline"] }),
    async stop(pages) {
      const marks = pages.map((_, i) => "cogs-console-scale-" + i);
      for (const [i, p] of pages.entries()) await p.evaluate((mark) => console.timeStamp(mark), marks[i]);
      const trace = JSON.parse((await browser.stopTracing()).toString());
      const events = trace.traceEvents || trace;
      const main = new Set(
        events.filter((e) => e.ph === "M" && e.name === "thread_name" && e.args?.name === "CrRendererMain").map((e) => e.pid + ":" + e.tid),
      );
      return marks.map((mark) => {
        const pid = events.find((e) => e.name === "TimeStamp" && e.args?.data?.message === mark)?.pid;
        const runs = events.filter((e) => e.ph === "X" && e.name === "RunTask" && e.pid === pid && main.has(e.pid + ":" + e.tid));
        const tasks = runs.map((e) => e.dur / 1000);
        // What the longest task spent its time in: the three longest events inside it.
        const top = runs.reduce((a, e) => (!a || e.dur > a.dur ? e : a), null);
        const inside = top
          ? events
              .filter((e) => e.ph === "X" && e.pid === top.pid && e.tid === top.tid && e !== top && e.ts >= top.ts && e.ts + e.dur <= top.ts + top.dur)
              .sort((x, y) => y.dur - x.dur)
              .slice(0, 3)
              .map((e) => `${e.name} ${round(e.dur / 1000)}`)
              .join(", ")
          : "";
        return {
          trace_tasks: tasks.length,
          trace_longest_task_ms: pid === undefined ? null : round(max(tasks) ?? 0),
          trace_longest_task_in: inside,
          trace_tasks_over_50ms: tasks.filter((d) => d > 50).length,
          trace_tasks_over_16ms: tasks.filter((d) => d > 16).length,
        };
      });
    },
  };
}

async function metrics(cdp) {
  const { metrics: list } = await cdp.send("Performance.getMetrics");
  return Object.fromEntries(list.map((m) => [m.name, m.value]));
}

async function collectGarbage(cdp) {
  await cdp.send("HeapProfiler.collectGarbage").catch(() => {});
}

const now = (page) => page.evaluate(() => performance.now());

// The long tasks of the page's document that started in [from, to] (performance.now() times).
async function longTasks(page, from, to = Infinity) {
  const all = await page.evaluate(() => window.__longtasks || []);
  const inside = all.filter(([s]) => s >= from && s <= to).map(([, d]) => d);
  return { longest_task_ms: round(max(inside) ?? 0), long_tasks: inside.length };
}

// Waits (frame by frame) until `selector` matches; resolves to performance.now() at that frame.
async function drawnAt(page, selector) {
  const handle = await page.waitForFunction((sel) => (document.querySelector(sel) ? performance.now() : 0), selector, {
    polling: "raf",
    timeout: DEADLINE_MS,
  });
  return handle.jsonValue();
}

async function signIn(page, url, token) {
  await page.goto(url + "/ui/#/signin");
  await page.locator("#token").fill(token);
  await page.locator("#signin-submit").click();
  await page.locator("#servers").waitFor();
}

// The rows of the servers table now: [{id, status}].
const rowsOf = (page) =>
  page.locator("#servers-body tr").evaluateAll((trs) => trs.map((tr) => ({ id: tr.dataset.id, status: tr.dataset.status })));

// ---- the API

// Every item of a list (limit=1000, following next_marker).
async function listAll(cloud, token, p, key) {
  const out = [];
  let marker = "";
  const sep = p.includes("?") ? "&" : "?";
  for (;;) {
    const answer = await cloud.api(token, "GET", `${p}${sep}limit=1000` + (marker ? "&marker=" + encodeURIComponent(marker) : ""));
    out.push(...answer[key]);
    marker = answer.next_marker || "";
    if (!marker) return out;
  }
}

async function waitActive(cloud, token, p, kind) {
  return cloud.waitStatus(token, p, kind, "ACTIVE");
}

// ---- the run

const cloud = new DevCloud(
  O.bin,
  ["--hosts", String(O.hosts), "--boot-ms", String(O.bootMs), `--cogsd-arg=--cpu-ratio=${O.cpuRatio}`],
  { prefix: "cogs-console-scale." },
);
let browser = null;
let sim = null; // the cogs-compute process of the sim hosts
const figures = {
  servers: O.servers, hosts: O.hosts + O.simHosts, batch: O.batch, pace_ms: O.paceMs, boot_ms: O.bootMs,
};

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    if (sim) sim.kill("SIGKILL");
    cloud.kill();
    process.exit(1);
  });
}

// `count` hosts sim-1 .. sim-<count>, each enrolled through the API with its own credentials, served
// by one `cogs-compute --hosts` process; resolves once GET /v1/hosts shows every host up.
async function startSimHosts(count) {
  const dir = path.join(cloud.dir, "sim");
  const creds = path.join(dir, "creds");
  for (let i = 1; i <= count; i++) {
    const host = "sim-" + i;
    const e = (await cloud.api(cloud.adminToken, "POST", `/v1/hosts/${host}/enroll`, undefined, 201)).enrollment;
    fs.mkdirSync(path.join(creds, host), { recursive: true });
    fs.writeFileSync(path.join(creds, host, "host.token"), e.host_token + "\n", { mode: 0o600 });
    fs.writeFileSync(path.join(creds, host, "agent.token"), e.agent_token + "\n", { mode: 0o600 });
  }
  const log = fs.openSync(path.join(dir, "cogs-compute.log"), "w");
  const portFile = path.join(dir, "cogs-compute.port");
  sim = spawn(
    path.join(O.bin, "cogs-compute"),
    ["--listen", "127.0.0.1:0", "--port-file", portFile, "--state", path.join(dir, "compute.db"),
      "--credentials-dir", creds, "--hosts", String(count), "--host-prefix", "sim-", "--az", "nova",
      "--boot-ms", String(O.bootMs), "--control-url", cloud.url],
    { stdio: ["ignore", log, log] },
  );
  await waitFor(`${count} sim hosts up`, 120_000, async () => {
    if (sim.exitCode !== null) throw new Error("cogs-compute exited:\n" + fs.readFileSync(path.join(dir, "cogs-compute.log"), "utf8").slice(-2000));
    const hosts = (await cloud.api(cloud.adminToken, "GET", "/v1/hosts")).hosts;
    return hosts.filter((h) => h.name.startsWith("sim-") && h.state === "up").length === count;
  });
}

async function main() {
  figures.load_before = loadAverage();
  progress(`cogs dev --hosts ${O.hosts} --boot-ms ${O.bootMs} --cpu-ratio ${O.cpuRatio} in ${cloud.dir}`);
  await cloud.start();
  const admin = cloud.adminToken;
  if (O.simHosts) {
    progress(`${O.simHosts} sim hosts: enrolled, one cogs-compute --hosts ${O.simHosts}`);
    await startSimHosts(O.simHosts);
  }

  // A project without quotas, its member, a small flavor, a network whose subnet holds every server.
  const project = (await cloud.api(admin, "POST", "/v1/projects", { name: "scale" })).project;
  await cloud.api(admin, "PUT", `/v1/projects/${project.id}/quotas`, {
    servers: -1, vcpus: -1, ram_mb: -1, volumes: -1, volume_gb: -1, ports: -1,
  });
  const member = (await cloud.api(admin, "POST", "/v1/tokens", { project_id: project.id, role: "member", name: "scale" })).token.secret;
  await cloud.api(admin, "POST", "/v1/flavors", { name: "bench.small", vcpus: 1, ram_mb: 128, disk_gb: 1 });
  const net = (await cloud.api(member, "POST", "/v1/networks", { name: "scale-net" })).network;
  await waitActive(cloud, member, "/v1/networks/" + net.id, "network");
  let prefix = 22;
  while (prefix > 8 && 2 ** (32 - prefix) - 3 < O.servers) prefix--;
  const subnet = (await cloud.api(member, "POST", "/v1/subnets", { network_id: net.id, name: "scale-subnet", cidr: `10.80.0.0/${prefix}` })).subnet;
  await waitActive(cloud, member, "/v1/subnets/" + subnet.id, "subnet");
  progress(`project scale ${project.id}, network ${net.id}, subnet 10.80.0.0/${prefix}`);

  progress("Chromium (headless): the member signs in, #/servers with no server yet");
  browser = await launchChromium();
  const m = await instrumentedPage(browser);
  await signIn(m.page, cloud.url, member);
  await m.page.locator("#servers-body").waitFor({ state: "attached" });
  // Server ids grow with time (UUIDv7), so the first page of #/servers holds the first 50 made and
  // stops changing once they are ACTIVE: a second page follows #/servers?status=BUILD, which changes
  // at every poll of the storm (what is being built).
  const w = await instrumentedPage(browser);
  await signIn(w.page, cloud.url, member);
  await w.page.locator("#servers-status").selectOption("BUILD");
  await waitFor("#/servers?status=BUILD", DEADLINE_MS, async () => (await w.page.evaluate(() => location.hash)) === "#/servers?status=BUILD");

  // ---- the storm: batches of max_count every pace, the pages polling all along
  await collectGarbage(m.cdp);
  await collectGarbage(w.cdp);
  const trace = tracer();
  await trace.start();
  const stormFrom = await now(m.page);
  const stormFromW = await now(w.page);
  const stormM0 = await metrics(m.cdp);
  const stormW0 = await metrics(w.cdp);
  const stormT0 = Date.now();
  const made = [];
  const creating = (async () => {
    for (let b = 1; made.length < O.servers; b++) {
      const count = Math.min(O.batch, O.servers - made.length);
      const t = Date.now();
      const answer = await cloud.api(member, "POST", "/v1/servers", {
        name: "s" + b, flavor: "bench.small", image: "busybox", network_id: net.id, max_count: count,
      });
      made.push(...answer.servers.map((s) => s.id));
      const left = O.paceMs - (Date.now() - t);
      if (left > 0 && made.length < O.servers) await sleep(left);
    }
  })();
  let active = 0;
  let errored = 0;
  let rowsMaxStorm = 0;
  let lastShown = -1;
  let creatingDone = false;
  creating.then(() => (creatingDone = true), () => (creatingDone = true));
  const stormDeadline = Date.now() + 600_000;
  for (;;) {
    await sleep(1000); // the pace of the bench's own look at the API, not an assertion
    if (creatingDone) await creating; // a refused request fails the run here
    const all = await listAll(cloud, admin, `/v1/servers?project_id=${project.id}`, "servers");
    active = all.filter((s) => s.status === "ACTIVE").length;
    errored = all.filter((s) => s.status === "ERROR").length;
    const rows = (await rowsOf(m.page)).length;
    const building = (await rowsOf(w.page)).length;
    rowsMaxStorm = Math.max(rowsMaxStorm, rows, building);
    if (active !== lastShown) {
      progress(`storm: ${made.length} requested, ${all.length} listed, ${active} ACTIVE, ${errored} ERROR; rows shown: ${rows}, BUILD ${building}`);
    }
    lastShown = active;
    if (creatingDone && all.length >= O.servers && active + errored === all.length) break;
    if (Date.now() > stormDeadline) throw new Error(`after 600 s only ${active} of ${O.servers} servers are ACTIVE`);
  }
  invariant(errored === 0, `${errored} servers ended ERROR in the storm`);
  const stormMs = Date.now() - stormT0;
  const stormT1 = Date.now();
  const stormTo = await now(m.page);
  const stormToW = await now(w.page);
  const stormM1 = await metrics(m.cdp);
  const stormW1 = await metrics(w.cdp);
  const [stormTrace, stormTraceW] = await trace.stop([m.page, w.page]);
  invariant(rowsMaxStorm <= PAGE_ROWS, `a page showed ${rowsMaxStorm} rows during the storm (at most ${PAGE_ROWS})`);
  figures.storm = {
    seconds: round(stormMs / 1000),
    ...phase(m.polls, stormT0, stormT1, stormM0, stormM1),
    ...(await longTasks(m.page, stormFrom, stormTo)),
    nodes_end: stormM1.Nodes,
    js_heap_end_mb: mb(stormM1.JSHeapUsedSize),
    max_rows: rowsMaxStorm,
    ...stormTrace,
  };
  figures.storm_build = {
    ...phase(w.polls, stormT0, stormT1, stormW0, stormW1),
    ...(await longTasks(w.page, stormFromW, stormToW)),
    nodes_end: stormW1.Nodes,
    js_heap_end_mb: mb(stormW1.JSHeapUsedSize),
    ...stormTraceW,
  };
  progress("storm figures (#/servers): " + JSON.stringify(figures.storm));
  progress("storm figures (#/servers?status=BUILD): " + JSON.stringify(figures.storm_build));
  w.errors.length === 0 || invariant(false, "the BUILD page logged errors: " + JSON.stringify(w.errors.slice(0, 5)));
  await w.context.close();

  // ---- idle: the same page, polled, nothing changing
  await collectGarbage(m.cdp);
  await trace.start();
  const idleM0 = await metrics(m.cdp);
  const idleFrom = await now(m.page);
  const idleT0 = Date.now();
  progress(`idle: ${O.idleS} s of polling`);
  await sleep(O.idleS * 1000); // the phase's length: what is measured is the page meanwhile
  const idleTo = await now(m.page);
  const idleM1 = await metrics(m.cdp);
  const idleT1 = Date.now();
  const [idleTrace] = await trace.stop([m.page]);
  await collectGarbage(m.cdp);
  const idleM2 = await metrics(m.cdp);
  figures.idle = {
    seconds: O.idleS,
    ...phase(m.polls, idleT0, idleT1, idleM0, idleM1),
    ...(await longTasks(m.page, idleFrom, idleTo)),
    js_heap_start_mb: mb(idleM0.JSHeapUsedSize),
    js_heap_end_mb: mb(idleM2.JSHeapUsedSize),
    js_heap_growth_kb: round((idleM2.JSHeapUsedSize - idleM0.JSHeapUsedSize) / 1024),
    nodes_start: idleM0.Nodes,
    nodes_end: idleM2.Nodes,
    ...idleTrace,
  };
  progress("idle figures: " + JSON.stringify(figures.idle));

  // ---- every page, by Next page, to the last
  const api = await listAll(cloud, member, "/v1/servers", "servers");
  const apiStatus = new Map(api.map((s) => [s.id, s.status]));
  invariant(api.length === O.servers, `the API lists ${api.length} servers, ${O.servers} were requested`);
  const seen = new Map(); // id -> times seen
  const nextMs = [];
  let pageNo = 1;
  let pagesLongest = 0;
  const walkFrom = await now(m.page);
  const check = (rows) => {
    invariant(rows.length <= PAGE_ROWS, `page ${pageNo} has ${rows.length} rows`);
    for (const r of rows) {
      seen.set(r.id, (seen.get(r.id) || 0) + 1);
      invariant(apiStatus.get(r.id) === r.status, `page ${pageNo}: server ${r.id} shown ${r.status}, the API says ${apiStatus.get(r.id)}`);
    }
  };
  check(await rowsOf(m.page));
  for (;;) {
    const next = m.page.locator("#page-next");
    if (await next.isDisabled()) break;
    const ms = await m.page.evaluate(clickAndWaitForNewRows, { button: "#page-next", deadline: DEADLINE_MS });
    if (ms < 0) throw new Error(`page ${pageNo + 1}: no new rows within ${DEADLINE_MS} ms of Next page`);
    pageNo++;
    nextMs.push(ms);
    check(await rowsOf(m.page));
  }
  const walkTasks = await longTasks(m.page, walkFrom);
  pagesLongest = walkTasks.longest_task_ms;
  const twice = [...seen.values()].filter((n) => n > 1).length;
  const missing = api.filter((s) => !seen.has(s.id)).length;
  invariant(seen.size === O.servers, `the pages walked show ${seen.size} distinct servers, not ${O.servers}`);
  invariant(twice === 0, `${twice} servers were shown on more than one page`);
  invariant(missing === 0, `${missing} servers the API lists were on no page`);
  figures.pages = {
    count: pageNo,
    next_page_median_ms: round(median(nextMs)),
    next_page_max_ms: round(max(nextMs)),
    longest_task_ms: pagesLongest,
    long_tasks: walkTasks.long_tasks,
    distinct_servers: seen.size,
  };
  progress("pages figures: " + JSON.stringify(figures.pages));

  // ---- navigation (a reload of #/servers) to the first page drawn, three times
  const loadMs = [];
  let loadLongest = 0;
  for (let i = 0; i < 3; i++) {
    await m.page.evaluate(() => history.replaceState(null, "", "#/servers"));
    await m.page.reload();
    const at = await drawnAt(m.page, "#servers-body tr");
    loadMs.push(at);
    await sleep(FOLLOW_MS);
    loadLongest = Math.max(loadLongest, (await longTasks(m.page, 0)).longest_task_ms);
  }
  await collectGarbage(m.cdp);
  figures.member_servers_load = {
    drawn_median_ms: round(median(loadMs)),
    drawn_max_ms: round(max(loadMs)),
    longest_task_ms: loadLongest,
    nodes: (await metrics(m.cdp)).Nodes,
  };
  progress("load figures: " + JSON.stringify(figures.member_servers_load));

  // ---- the filters (Task 2): a status, then a name, each against the API's answer
  figures.filter = await exerciseFilters(m.page, member, api);
  progress("filter figures: " + JSON.stringify(figures.filter));

  // ---- an admin's pages
  progress("an admin's pages");
  const a = await instrumentedPage(browser);
  await signIn(a.page, cloud.url, admin);
  const workflowsTotal = (await listAll(cloud, admin, "/v1/workflows?state=succeeded", "workflows")).length;
  figures.workflows_succeeded = workflowsTotal;
  const headers = await a.page.locator("#servers thead th").allTextContents();
  invariant(headers.includes("Host"), `an admin's servers table has no Host column: ${headers}`);
  const one = api[Math.floor(api.length / 2)];
  figures.admin = {};
  for (const [key, hash, selector] of [
    ["servers", "#/servers", "#servers-body tr"],
    ["hosts", "#/hosts", "#hosts-body tr"],
    ["workflows", "#/workflows?state=all", "#workflows-body tr"],
    ["server", "#/servers/" + one.id, '#details[data-status="ACTIVE"]'],
  ]) {
    figures.admin[key] = await adminPage(a, hash, selector);
    progress(`admin ${hash}: ${JSON.stringify(figures.admin[key])}`);
  }
  await a.page.evaluate(() => (location.hash = "#/servers"));
  await drawnAt(a.page, "#servers-body tr");
  const rowsAdmin = await rowsOf(a.page);
  invariant(rowsAdmin.length <= PAGE_ROWS, `an admin's first page has ${rowsAdmin.length} rows`);
  figures.page_errors = m.errors.length + a.errors.length;
  invariant(figures.page_errors === 0, "the console logged errors: " + JSON.stringify([...m.errors, ...a.errors].slice(0, 5)));
  figures.longtask_observer = (await m.page.evaluate(() => window.__longtaskError || "ok"));
}

// In the page: clicks `button`, then waits until the first row of #servers-body is another server
// (the next page drawn) and the frame after it; the milliseconds from the click, or -1.
function clickAndWaitForNewRows({ button, deadline }) {
  const body = document.getElementById("servers-body");
  const before = body.firstElementChild?.dataset.id;
  return new Promise((resolve) => {
    const t0 = performance.now();
    const timer = setTimeout(() => {
      mo.disconnect();
      resolve(-1);
    }, deadline);
    const mo = new MutationObserver(() => {
      if (body.firstElementChild?.dataset.id === before) return;
      mo.disconnect();
      clearTimeout(timer);
      requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - t0), 0));
    });
    mo.observe(body, { childList: true });
    document.querySelector(button).click();
  });
}

// The figures of a phase: its polls of the list and the CDP metrics' deltas per poll.
function phase(polls, t0, t1, m0, m1) {
  const inside = polls.filter(([t]) => t >= t0 && t <= t1);
  const n = Math.max(1, inside.length);
  const per = (name) => round(((m1[name] - m0[name]) * 1000) / n, 2);
  return {
    polls: inside.length,
    polls_304: inside.filter(([, s]) => s === 304).length,
    script_ms_per_poll: per("ScriptDuration"),
    layout_ms_per_poll: per("LayoutDuration"),
    style_ms_per_poll: per("RecalcStyleDuration"),
    task_ms_per_poll: per("TaskDuration"),
  };
}

// Loads `hash` (a reload: the console as opened), follows it FOLLOW_MS, then moves to it again from
// another page inside the console (a hash change, as the nav does). Figures of both.
async function adminPage(a, hash, selector) {
  await a.page.evaluate((h) => history.replaceState(null, "", h), hash);
  const trace = tracer();
  await trace.start();
  await a.page.reload();
  const drawn = await drawnAt(a.page, selector);
  await sleep(FOLLOW_MS);
  const tasks = await longTasks(a.page, 0);
  const [traced] = await trace.stop([a.page]);
  await collectGarbage(a.cdp);
  const nodes = (await metrics(a.cdp)).Nodes;
  // In the console: from the quotas page (another page, little to draw) by a hash change.
  await a.page.evaluate(() => (location.hash = "#/quotas"));
  await a.page.locator("#main h1", { hasText: "Quotas" }).waitFor();
  const navMs = await a.page.evaluate(
    ({ h, sel }) =>
      new Promise((resolve) => {
        const t0 = performance.now();
        location.hash = h;
        const look = () => (document.querySelector(sel) ? resolve(performance.now() - t0) : requestAnimationFrame(look));
        requestAnimationFrame(look);
      }),
    { h: hash, sel: selector },
  );
  return { drawn_ms: round(drawn), in_console_ms: round(navMs), ...tasks, nodes, ...traced };
}

// Stops three servers through the API, then uses the page's status filter (SHUTOFF) and name field,
// each checked against the API's answer to the same filter; the time from the change to the rows.
async function exerciseFilters(page, member, api) {
  const stopped = api.slice(0, 3).map((s) => s.id);
  for (const id of stopped) await cloud.api(member, "POST", `/v1/servers/${id}/stop`, {}, 202);
  for (const id of stopped) await cloud.waitStatus(member, "/v1/servers/" + id, "server", "SHUTOFF");
  const out = {};
  // Status.
  let t0 = Date.now();
  await page.locator("#servers-status").selectOption("SHUTOFF");
  const want = (await listAll(cloud, member, "/v1/servers?status=SHUTOFF", "servers")).map((s) => s.id).sort();
  await waitFor("the SHUTOFF servers alone on the page", DEADLINE_MS, async () => {
    const rows = await rowsOf(page);
    return rows.length === want.length && rows.every((r) => r.status === "SHUTOFF");
  });
  out.status_ms = Date.now() - t0;
  const rowsS = await rowsOf(page);
  invariant(JSON.stringify(rowsS.map((r) => r.id).sort()) === JSON.stringify(want), `status filter: rows ${JSON.stringify(rowsS)} != API ${want}`);
  invariant(want.length === stopped.length, `the API lists ${want.length} SHUTOFF servers, ${stopped.length} were stopped`);
  const hash = await page.evaluate(() => location.hash);
  invariant(hash === "#/servers?status=SHUTOFF", "the status is not in the hash: " + hash);
  // Name (exact), all statuses again.
  const target = api[api.length - 1];
  t0 = Date.now();
  await page.locator("#servers-status").selectOption("");
  await page.locator("#servers-name").fill(target.name);
  await page.locator("#servers-name").press("Enter");
  const named = (await listAll(cloud, member, "/v1/servers?name=" + encodeURIComponent(target.name), "servers")).map((s) => s.id);
  await waitFor(`the server named ${target.name} alone on the page`, DEADLINE_MS, async () => {
    const rows = await rowsOf(page);
    return rows.length === named.length && rows.every((r) => named.includes(r.id));
  });
  out.name_ms = Date.now() - t0;
  invariant(named.length === 1 && named[0] === target.id, `?name=${target.name} answers ${JSON.stringify(named)}`);
  // Cleared: the first page of everything again.
  await page.locator("#servers-name").fill("");
  await page.locator("#servers-name").press("Enter");
  await waitFor("the unfiltered first page", DEADLINE_MS, async () => (await rowsOf(page)).length === Math.min(PAGE_ROWS, api.length));
  out.matched_status = rowsS.length;
  return out;
}

let code = 0;
try {
  await main();
} catch (e) {
  code = 1;
  figures.error = String(e.message || e);
  progress("FAILED: " + (e.stack || e));
  progress("---- cogs dev stderr\n" + cloud.tail("dev.err") + "\n---- cogsd.log\n" + cloud.tail("logs/cogsd.log", 20));
} finally {
  if (browser) await browser.close().catch(() => {});
  if (sim && sim.exitCode === null) sim.kill("SIGKILL");
  await cloud.stop().catch(() => cloud.kill());
}
figures.load_after = loadAverage();
figures.seconds = round((Date.now() - t00) / 1000);
figures.invariants_broken = broken;
if (broken.length) code = 1;
if (code === 0 && !O.keep) {
  fs.rmSync(cloud.dir, { recursive: true, force: true });
} else {
  progress("data kept in " + cloud.dir);
}
process.stdout.write(JSON.stringify({ bench: "console-scale", ...figures }) + "\n");
process.exitCode = code;
