// What the browser tests share: a `cogs dev` on a temporary directory (DevCloud), Debian's headless
// Chromium through playwright-core (a page whose requests and errors are watched), waits on
// conditions, signing in, the accessibility basics of a page (labelled), and a runner of steps
// (run, main) that ends with the checks every test makes (no token in a URL, no error in the page)
// and stops the cloud and closes Chromium even when a step fails.
//
// A test file: `const { steps, step } = stepList(); const ctx = {};`, its steps, then
// `main(ctx, steps, [cogs dev flags])`; its first step starts ctx.cloud and sets ctx.tokens, a
// later one sets ctx.browser and ctx.page (newPage).
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
// The source tree, and the Chromium the tests drive (Debian's; playwright-core downloads none).
export const SOURCE = path.resolve(HERE, "../..");
export const CHROMIUM = "/usr/bin/chromium";
// The deadline of a wait: a state the cloud reaches in at most seconds idle; generous under load.
export const DEADLINE_MS = 60_000;
// Where shot() saves, when COGS_SCREENSHOTS is set: docs/screenshots (or the directory it names, when
// it is not "1"); "" otherwise.
const SHOTS_ENV = process.env.COGS_SCREENSHOTS || "";
export const SHOTS = !SHOTS_ENV ? "" : SHOTS_ENV === "1" ? path.join(SOURCE, "docs", "screenshots") : path.resolve(SHOTS_ENV);

// Fails the step running (an Error with `message`).
export function fail(message) {
  throw new Error(message);
}

// A promise resolved after `ms`: the pace of a poll, never an assertion.
export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// Polls `check` (sync or async) every 100 ms until it is truthy; fails after `deadlineMs` naming `what`.
export async function waitFor(what, deadlineMs, check) {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > end) fail(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await sleep(100); // the pace of a poll, not an assertion
  }
}

async function loadPlaywright() {
  const entry = path.join(HERE, "node_modules", "playwright-core", "index.mjs");
  if (!fs.existsSync(entry)) {
    fail(`${entry} is missing: scripts/install-deps installs it (npm ci in test/browser)`);
  }
  if (!fs.existsSync(CHROMIUM)) fail(`${CHROMIUM} is missing: scripts/install-deps installs Debian's chromium`);
  return (await import(entry)).chromium;
}

// Debian's Chromium, headless; launch() gives it a fresh temporary --user-data-dir and removes it at close.
export async function launchChromium() {
  const chromium = await loadPlaywright();
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
}

// A page of a new context of ctx.browser (`viewport`), with the deadline as its default timeout,
// watched for run()'s last step: every request URL goes to ctx.urls, every error the page logs to
// ctx.consoleErrors ("Failed to load resource: ..." aside: Chromium noting an API answer the page
// handles, a 401, 404 or 409; the rest, an exception or a CSP violation "Refused to ...", is the
// console's error).
export async function newPage(ctx, viewport = { width: 1280, height: 800 }) {
  const context = await ctx.browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  ctx.urls = ctx.urls || [];
  ctx.consoleErrors = ctx.consoleErrors || [];
  page.on("request", (r) => ctx.urls.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) ctx.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => ctx.consoleErrors.push(String(e)));
  return page;
}

// Starts ctx.cloud and makes its tenants through /v1 as its admin: ctx.member and ctx.reader of
// project demo, ctx.otherMember of a new project "other" (tokens named `prefix`-<role>), and
// ctx.tokens, every token the last step looks for in the URLs.
export async function startWithTenants(ctx, prefix) {
  const { cloud } = ctx;
  await cloud.start();
  const admin = cloud.adminToken;
  const projects = (await cloud.api(admin, "GET", "/v1/projects")).projects;
  const demo = projects.find((p) => p.name === "demo") || fail("no project demo: " + JSON.stringify(projects));
  const other = (await cloud.api(admin, "POST", "/v1/projects", { name: "other" })).project;
  const token = async (project, role) =>
    (await cloud.api(admin, "POST", "/v1/tokens", { project_id: project.id, role, name: prefix + "-" + role })).token.secret;
  ctx.member = await token(demo, "member");
  ctx.reader = await token(demo, "reader");
  ctx.otherMember = await token(other, "member");
  ctx.tokens = [admin, ctx.member, ctx.reader, ctx.otherMember];
}

// Signs ctx.page in with `token` through the sign-in form; waits for the servers list it lands on.
export async function signIn(ctx, token) {
  const { page, cloud } = ctx;
  await page.goto(cloud.url + "/ui/#/signin");
  await page.locator("#token").fill(token);
  await page.locator("#signin-submit").click();
  await page.locator("#servers").waitFor();
}

// Accessibility basics of the page shown: every form control in <main> has a label, every button a
// name, every column header a scope.
export async function labelled(page) {
  const bad = await page.evaluate(() => [
    ...[...document.querySelectorAll("main input, main select")].filter((c) => !c.labels?.length).map((c) => c.outerHTML.slice(0, 80)),
    ...[...document.querySelectorAll("main button")].filter((b) => !b.textContent.trim()).map((b) => b.outerHTML.slice(0, 80)),
    ...[...document.querySelectorAll("main thead th")].filter((t) => !t.getAttribute("scope")).map((t) => t.outerHTML),
  ]);
  if (bad.length) fail("not labelled: " + bad.join(" | "));
}

// A test's list of steps and the function that adds one: step(name, async fn).
export function stepList() {
  const steps = [];
  return { steps, step: (name, fn) => steps.push({ name, fn }) };
}

// `page`'s full screenshot as docs/screenshots/<name>.png, when COGS_SCREENSHOTS is set.
export async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
}

// One `cogs dev --port 0 --no-tls` (and `args`, e.g. `--cogsd-arg=--lease-ttl-ms=...`) on a temporary
// directory named `prefix`*. It remembers every pid dev.json ever names, so stop() and kill() reach
// the processes `cogs dev` restarted too; freeze() and thaw() stop and let go `cogs dev` itself.
export class DevCloud {
  constructor(bin, args, { prefix = "cogs-browser." } = {}) {
    this.bin = bin;
    this.args = args;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.proc = null;
    this.pids = new Set();
    this.frozen = false;
  }

  async start() {
    const out = fs.openSync(path.join(this.dir, "dev.out"), "w");
    const err = fs.openSync(path.join(this.dir, "dev.err"), "w");
    this.proc = spawn(
      path.join(this.bin, "cogs"),
      ["dev", "--data-dir", this.dir, "--port", "0", "--no-tls", ...this.args],
      { stdio: ["ignore", out, err] },
    );
    this.exited = new Promise((resolve) => this.proc.on("exit", (code, signal) => resolve(code ?? signal)));
    await waitFor("dev.json", 120_000, () => {
      if (this.proc.exitCode !== null) fail("cogs dev exited before writing dev.json:\n" + this.tail("dev.err"));
      return fs.existsSync(path.join(this.dir, "dev.json"));
    });
    const dev = this.devJson();
    this.url = dev.api_url;
    this.adminToken = fs.readFileSync(dev.admin_token_file, "utf8").trim();
  }

  // dev.json as now (rewritten when `cogs dev` restarts a process); every pid it names is remembered.
  devJson() {
    const dev = JSON.parse(fs.readFileSync(path.join(this.dir, "dev.json"), "utf8"));
    for (const p of dev.processes) this.pids.add(p.pid);
    return dev;
  }

  // The pid of process `name` (e.g. cogs-compute-2) as dev.json names it now.
  pidOf(name) {
    const p = this.devJson().processes.find((x) => x.name === name);
    return p ? p.pid : fail(`no ${name} in dev.json`);
  }

  // SIGSTOP / SIGCONT of `cogs dev` itself, the supervisor that restarts a dead process.
  freeze() {
    this.proc.kill("SIGSTOP");
    this.frozen = true;
  }

  thaw() {
    if (this.frozen && this.proc && this.proc.exitCode === null) this.proc.kill("SIGCONT");
    this.frozen = false;
  }

  // Lets `cogs dev` go, SIGINTs it (SIGKILL after a minute), then SIGKILLs every process dev.json named.
  async stop() {
    this.thaw();
    this.learnPids();
    if (this.proc && this.proc.exitCode === null) {
      this.proc.kill("SIGINT");
      let timer;
      const late = new Promise((resolve) => (timer = setTimeout(() => resolve("timeout"), 60_000)));
      const stopped = await Promise.race([this.exited, late]);
      clearTimeout(timer); // else the pending timer would hold the process for its minute
      if (stopped === "timeout") this.proc.kill("SIGKILL");
    }
    this.killChildren();
  }

  // At once, for a run killed from outside: SIGKILL of every process dev.json named and of `cogs dev`.
  kill() {
    this.thaw();
    this.learnPids();
    this.killChildren();
    if (this.proc) this.proc.kill("SIGKILL");
  }

  // The pids of processes restarted since the start, when there is a dev.json to read.
  learnPids() {
    try {
      this.devJson();
    } catch {
      // no dev.json: nothing more to learn
    }
  }

  // SIGKILL of every pid remembered (those already gone ignored).
  killChildren() {
    for (const pid of this.pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    this.pids.clear();
  }

  // The last `lines` lines of file `name` in the data directory (for a failure's report).
  tail(name, lines = 40) {
    try {
      return fs.readFileSync(path.join(this.dir, name), "utf8").split("\n").slice(-lines).join("\n");
    } catch (e) {
      return `(${name}: ${e.message})`;
    }
  }

  // The API as `token`: the parsed body; a status other than `expect` fails.
  async api(token, method, p, body, expect) {
    const headers = { Authorization: "Bearer " + token };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(this.url + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (expect !== undefined ? r.status !== expect : !r.ok) fail(`${method} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }

  // Polls GET `p` as `token` until its `kind` has `status`; ERROR fails. The last record.
  async waitStatus(token, p, kind, status) {
    let last;
    await waitFor(`${p} ${status}`, DEADLINE_MS, async () => {
      last = (await this.api(token, "GET", p))[kind];
      if (last.status === "ERROR") fail(`${p} ended ERROR: ${JSON.stringify(last.fault)}`);
      return last.status === status;
    });
    return last;
  }
}

// The step run() ends with: no request URL of the pages (ctx.urls) ever carried a token
// (ctx.tokens), and the pages logged no error (ctx.consoleErrors): a CSP violation would.
const NOTHING_LEAKED = {
  name: "no token in any URL, no error in the page",
  fn: (ctx) => {
    for (const u of ctx.urls || []) {
      for (const t of ctx.tokens || []) {
        if (u.includes(t)) fail("a token in a URL: " + u);
      }
    }
    if (ctx.consoleErrors?.length) fail("errors in the page:\n" + ctx.consoleErrors.join("\n"));
  },
};

// Runs `steps` ([{name, fn}], in order, stopping at the first failure), then the check that no
// token was in a URL and the page logged no error, with ctx.cloud started by the first of them;
// ctx.browser and ctx.page, once set, are closed and screenshot on failure. The cloud is stopped
// whatever happens (a SIGTERM from ctest's timeout too). Sets the exit code.
export async function run(ctx, testSteps) {
  const steps = [...testSteps, NOTHING_LEAKED];
  for (const sig of ["SIGTERM", "SIGINT"]) {
    process.on(sig, () => {
      ctx.cloud.kill();
      process.exit(1);
    });
  }
  let failed = 0;
  let passed = 0;
  try {
    for (const s of steps) {
      const t0 = Date.now();
      try {
        await s.fn(ctx);
        passed += 1;
        console.log(`ok   ${s.name} (${Date.now() - t0} ms)`);
      } catch (e) {
        failed += 1;
        console.log(`FAIL ${s.name} (${Date.now() - t0} ms)\n${e.stack || e}`);
        if (ctx.page) {
          const file = path.join(ctx.cloud.dir, "failure.png");
          await ctx.page.screenshot({ path: file, fullPage: true }).catch(() => {});
          console.log("  page: " + ctx.page.url() + " (screenshot " + file + ")");
        }
        break; // later steps build on earlier ones
      }
    }
  } finally {
    if (ctx.browser) await ctx.browser.close().catch(() => {});
    await ctx.cloud.stop();
    if (failed) {
      console.log("---- cogs dev stderr\n" + ctx.cloud.tail("dev.err") + "\n---- cogsd.log\n" + ctx.cloud.tail("logs/cogsd.log"));
    } else {
      fs.rmSync(ctx.cloud.dir, { recursive: true, force: true });
    }
  }
  const skipped = steps.length - passed - failed;
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
  process.exitCode = failed || skipped ? 1 : 0;
}

// A test's main: `node <test>.mjs BIN_DIR` makes ctx.cloud a DevCloud of BIN_DIR with `args` (the
// `cogs dev` flags) and `options`, then run(ctx, steps). Sets the exit code.
export function main(ctx, steps, args, options = {}) {
  const bin = process.argv[2];
  if (!bin) {
    console.error(`usage: node ${path.basename(process.argv[1])} BIN_DIR`);
    process.exitCode = 2;
    return;
  }
  ctx.cloud = new DevCloud(bin, args, options);
  run(ctx, steps).catch((e) => {
    console.error(e);
    process.exitCode = 1;
  });
}
