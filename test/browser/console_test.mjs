#!/usr/bin/env node
// browser.console: the web console (cogs/cloud/ui) in Debian's headless Chromium, against a real
// `cogs dev`, as a tenant uses it.
//
//     node console_test.mjs BIN_DIR          (COGS_SCREENSHOTS=1: also save docs/screenshots/*.png)
//
// One `cogs dev --port 0 --hosts 2 --boot-ms 50 --no-tls` on a temporary directory. Its admin token
// (dev.json's admin_token_file) makes, through /v1: a member and a reader token of project demo, a
// second project with its own member, and the member's network and subnet. Then, in Chromium:
//
//  1. /ui redirects to /ui/; the entry has the strict Content-Security-Policy; a bad token is refused
//     with a clear error.
//  2. The member signs in (project and role shown), a server created through the API appears in the
//     list and reaches ACTIVE there without the page reloading; then the list's polls are
//     revalidated (304, the API's ETag).
//  3. Its page: details, a timeline bar per step of its server.create workflow (in the states the
//     API gives), its events; Stop through the button and the confirmation (by keyboard): SHUTOFF,
//     and the timeline shows the server.stop workflow.
//  4. The New server form: a name too long refused with the API's message at the field, nothing
//     made; then a server made through the pickers, ACTIVE on its page, deleted through Delete and
//     its confirmation; sign-out forgets the token.
//  5. A reader (signing in by keyboard) sees the server, no action button and no New server, and
//     is signed out, told why, when its token is revoked;
//     another project's member sees none of it (its page: no such server); an admin sees the host.
//  6. No request URL ever carried a token; the console logged no error (a CSP violation would).
//
// Waits are for conditions with generous deadlines, never fixed sleeps. `cogs dev` is stopped
// (SIGINT, then SIGKILL of it and the processes dev.json names) and Chromium closed even when a step
// fails. Exits 0 when every step passes.
import { DEADLINE_MS, DevCloud, fail, launchChromium, run, shot, waitFor } from "./harness.mjs";

const BIN = process.argv[2];

// ---- the steps

const steps = [];
function step(name, fn) {
  steps.push({ name, fn });
}

const ctx = {};

step("the cloud and its tenants", async () => {
  const { cloud } = ctx;
  await cloud.start();
  const admin = cloud.adminToken;
  const projects = (await cloud.api(admin, "GET", "/v1/projects")).projects;
  const demo = projects.find((p) => p.name === "demo") || fail("no project demo: " + JSON.stringify(projects));
  const other = (await cloud.api(admin, "POST", "/v1/projects", { name: "other" })).project;
  const token = async (project, role) =>
    (await cloud.api(admin, "POST", "/v1/tokens", { project_id: project.id, role, name: "ui-" + role })).token.secret;
  ctx.member = await token(demo, "member");
  ctx.reader = await token(demo, "reader");
  ctx.otherMember = await token(other, "member");
  ctx.tokens = [admin, ctx.member, ctx.reader, ctx.otherMember];
  const net = (await cloud.api(ctx.member, "POST", "/v1/networks", { name: "net-ui" })).network;
  await cloud.waitStatus(ctx.member, "/v1/networks/" + net.id, "network", "ACTIVE");
  const subnet = (await cloud.api(ctx.member, "POST", "/v1/subnets", { network_id: net.id, name: "subnet-ui", cidr: "10.42.0.0/24" })).subnet;
  await cloud.waitStatus(ctx.member, "/v1/subnets/" + subnet.id, "subnet", "ACTIVE");
  ctx.network = net;
});

step("Chromium (Debian's, headless, no downloads)", async () => {
  ctx.browser = await launchChromium();
  ctx.page = await newPage();
});

async function newPage() {
  const context = await ctx.browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.setDefaultTimeout(DEADLINE_MS);
  ctx.urls = ctx.urls || [];
  ctx.consoleErrors = ctx.consoleErrors || [];
  page.on("request", (r) => ctx.urls.push(r.url()));
  ctx.listAnswers = ctx.listAnswers || [];
  page.on("response", (r) => {
    if (new URL(r.url()).pathname === "/v1/servers") ctx.listAnswers.push(r.status());
  });
  page.on("console", (m) => {
    // "Failed to load resource: ... 401/404/503" is Chromium noting an API answer the page handles
    // (a bad token, another project's server, a driver without a console); the rest (a CSP
    // violation: "Refused to ...", an exception) is the console's error.
    if (m.type() === "error" && !/^Failed to load resource/.test(m.text())) ctx.consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => ctx.consoleErrors.push(String(e)));
  return page;
}

async function signIn(page, token) {
  await page.goto(ctx.cloud.url + "/ui/#/signin");
  await page.locator("#token").fill(token);
  await page.locator("#signin-submit").click();
}

step("/ui serves the console with a strict CSP; a bad token is refused", async () => {
  const { page, cloud } = ctx;
  const answer = await page.goto(cloud.url + "/ui");
  if (!page.url().startsWith(cloud.url + "/ui/")) fail("/ui did not redirect to /ui/: " + page.url());
  const csp = (await answer.allHeaders())["content-security-policy"] || "";
  if (!csp.includes("default-src 'none'") || !csp.includes("script-src 'self'")) fail("CSP: " + csp);
  await page.locator("#token").waitFor();
  if ((await page.getAttribute("label[for=token]", "for")) !== "token") fail("the token field has no label");
  await shot(page, "signin");
  await page.locator("#token").fill("cogs_not_a_token");
  await page.locator("#signin-submit").click();
  const error = page.locator("#signin-error");
  await error.waitFor({ state: "visible" });
  const text = await error.textContent();
  if (!/not valid/.test(text)) fail("bad token error: " + text);
  if (await page.evaluate(() => sessionStorage.length) !== 0) fail("a refused token was kept");
});

step("a member signs in and sees a new server reach ACTIVE without a reload", async () => {
  const { page, cloud } = ctx;
  await signIn(page, ctx.member);
  await page.locator("#servers").waitFor();
  const role = await page.locator("#who-role").textContent();
  const project = await page.locator("#who-project").textContent();
  if (role !== "member" || !project.includes("demo")) fail(`shown: ${project} / ${role}`);
  await page.evaluate(() => (window.__notReloaded = true));
  const server = (await cloud.api(ctx.member, "POST", "/v1/servers", {
    name: "web-ui-1", flavor: "m1.tiny", image: "busybox", network_id: ctx.network.id,
  })).server;
  ctx.server = server;
  await page.locator(`#servers tr[data-id="${server.id}"][data-status="ACTIVE"]`).waitFor();
  if (!(await page.evaluate(() => window.__notReloaded === true))) fail("the page reloaded");
  // The list's polls are revalidated with its ETag: once nothing changes, cogsd answers 304.
  ctx.listAnswers.length = 0;
  await waitFor("a poll of the list answered 304", DEADLINE_MS, () => ctx.listAnswers.includes(304));
  await shot(page, "servers");
});

step("its page: details, a bar per workflow step, events; stop with confirmation", async () => {
  const { page, cloud } = ctx;
  await page.locator(`#servers tr[data-id="${ctx.server.id}"] a`).click();
  await page.locator('#details[data-status="ACTIVE"]').waitFor();
  const shown = (await cloud.api(ctx.member, "GET", "/v1/servers/" + ctx.server.id)).server;
  const wf = (await cloud.api(ctx.member, "GET", "/v1/workflows/" + shown.workflow_id)).workflow;
  await page.locator(`#timeline[data-workflow="${wf.id}"][data-state="succeeded"]`).waitFor();
  const bars = await page.locator("#timeline .bar").evaluateAll((els) =>
    els.map((e) => ({ step: e.dataset.step, state: e.dataset.state, title: e.title, width: e.getBoundingClientRect().width })));
  // A bar per step, in the workflow's order, in the state the API gives it; a step that ran has
  // a bar of some width and its attempts on hover.
  const want = wf.steps.map((s) => s.name);
  if (JSON.stringify(bars.map((b) => b.step)) !== JSON.stringify(want)) fail(`bars ${JSON.stringify(bars)} != steps ${want}`);
  wf.steps.forEach((s, i) => {
    const b = bars[i];
    if (b.state !== s.state) fail(`bar ${s.name}: ${b.state}, the API says ${s.state}`);
    if (s.started_ms && (b.width <= 0 || !b.title.includes("attempts: " + s.attempts))) fail("bar: " + JSON.stringify(b));
  });
  if (!wf.steps.some((s) => s.state === "succeeded")) fail("no step succeeded: " + JSON.stringify(wf.steps));
  await page.locator('#events-body tr[data-type="active"]').waitFor();
  await page.locator("#events-body tr[data-type=\"created\"]").waitFor();
  await shot(page, "server");
  await page.locator("#action-stop").click();
  const dialog = page.locator("#confirm");
  await dialog.waitFor({ state: "visible" });
  if (!(await page.locator("#confirm-text").textContent()).includes("web-ui-1")) fail("the confirmation names no server");
  // By keyboard: focus starts on Cancel, Tab reaches the confirmation, Enter presses it.
  const focused = () => page.evaluate(() => document.activeElement?.id);
  if ((await focused()) !== "confirm-cancel") fail("the dialog's focus is on " + (await focused()));
  await page.keyboard.press("Tab");
  if ((await focused()) !== "confirm-ok") fail("Tab from Cancel reached " + (await focused()));
  await page.keyboard.press("Enter");
  await page.locator('#details[data-status="SHUTOFF"]').waitFor();
  await page.locator('#timeline[data-state="succeeded"] >> text=server.stop').waitFor();
  await page.locator("#action-start").waitFor({ state: "visible" });
  if (!(await page.locator("#action-start").isEnabled())) fail("start is not offered for a SHUTOFF server");
});

step("the form: the API's refusal shown at its field, a server made, deleted with confirmation", async () => {
  const { page, cloud } = ctx;
  await page.locator('a[href="#/servers"]').first().click();
  await page.locator("#new-server").click();
  await page.locator("#create-server #name").waitFor();
  const pick = async (select, text) => {
    const value = await page.locator(`#${select} option`, { hasText: text }).first().getAttribute("value");
    await page.locator("#" + select).selectOption(value);
  };
  await pick("flavor", "m1.tiny");
  await pick("image", "busybox");
  await pick("network_id", "net-ui");
  // A name over 64 bytes: the API's 400 names the field, the form marks it and says why.
  await page.locator("#name").fill("n".repeat(80));
  await page.locator("#create-submit").click();
  await page.locator('#name[aria-invalid="true"]').waitFor();
  const said = await page.locator("#create-error").textContent();
  if (!/not created/.test(said) || !/name/.test(said)) fail("the refusal shown: " + said);
  await shot(page, "create-server");
  if ((await cloud.api(ctx.member, "GET", "/v1/servers?name=" + "n".repeat(80))).servers.length) fail("a refused server exists");
  await page.locator("#name").fill("web-ui-2");
  await page.locator("#create-submit").click();
  await page.waitForURL(/#\/servers\/[0-9a-f-]{36}$/);
  const id = decodeURIComponent(page.url().split("/").pop());
  await page.locator('#details[data-status="ACTIVE"]').waitFor();
  const made = (await cloud.api(ctx.member, "GET", "/v1/servers/" + id)).server;
  if (made.name !== "web-ui-2" || made.network_id !== ctx.network.id) fail("made: " + JSON.stringify(made));
  await page.locator("#action-delete").click();
  await page.locator("#confirm").waitFor({ state: "visible" });
  await page.locator("#confirm-ok").click();
  await page.locator("text=This server does not exist").waitFor();
  await cloud.api(ctx.member, "GET", "/v1/servers/" + id, undefined, 404);
  // Sign out: the token is gone from the tab.
  await page.locator("#signout").click();
  await page.locator("#token").waitFor();
  if (await page.evaluate(() => sessionStorage.length) !== 0) fail("sign-out left the token");
});

step("a reader sees the server and no action", async () => {
  const { page, cloud } = ctx;
  // By keyboard: the token field has the focus, Enter submits.
  await page.goto(cloud.url + "/ui/#/signin");
  await page.locator("#token").waitFor();
  await page.keyboard.type(ctx.reader);
  await page.keyboard.press("Enter");
  await page.locator(`#servers tr[data-id="${ctx.server.id}"]`).waitFor();
  if ((await page.locator("#who-role").textContent()) !== "reader") fail("role not shown as reader");
  await page.locator(`#servers tr[data-id="${ctx.server.id}"] a`).click();
  await page.locator('#details[data-status="SHUTOFF"]').waitFor();
  await page.locator("#timeline").waitFor();
  const buttons = await page.locator("#actions button").count();
  if (buttons !== 0) fail(`a reader is offered ${buttons} action buttons`);
  await page.locator('a[href="#/servers"]').first().click();
  await page.locator(`#servers tr[data-id="${ctx.server.id}"]`).waitFor();
  if ((await page.locator("#new-server").count()) !== 0) fail("a reader is offered New server");
  // Its token revoked while the page polls: back to the sign-in page, saying why, the token forgotten.
  const { token_id: id } = await cloud.api(ctx.reader, "GET", "/v1/whoami");
  await cloud.api(cloud.adminToken, "DELETE", "/v1/tokens/" + id, undefined, 204);
  await page.locator("#signin-notice").waitFor();
  if (!/no longer works/.test(await page.locator("#signin-notice").textContent())) fail("no notice of the sign-out");
  if (await page.evaluate(() => sessionStorage.length) !== 0) fail("a revoked token was kept");
});

step("another project's member sees none of it", async () => {
  const { page, cloud } = ctx;
  await signIn(page, ctx.otherMember);
  await page.locator("#servers").waitFor();
  // The list has answered (its status line says there is nothing) and holds no row of demo's.
  await page.locator("text=No servers yet.").waitFor();
  if ((await page.locator("#servers tbody tr").count()) !== 0) fail("another project's server is listed");
  await page.goto(cloud.url + "/ui/#/servers/" + ctx.server.id);
  // Its page says there is no such server (the API's 404: exactly as if it did not exist).
  await page.locator('#details[data-status="GONE"]').waitFor({ state: "attached" });
  await page.locator("text=This server does not exist").waitFor();
  if ((await page.locator("#actions button:enabled").count()) !== 0) fail("actions offered on another's server");
  await page.locator("#signout").click();
});

step("an admin sees every project's servers with their hosts", async () => {
  const { page, cloud } = ctx;
  await signIn(page, cloud.adminToken);
  const row = page.locator(`#servers tr[data-id="${ctx.server.id}"]`);
  await row.waitFor();
  const heads = await page.locator("#servers thead th").allTextContents();
  if (!heads.includes("Host")) fail("no Host column for an admin: " + heads);
  const host = (await cloud.api(cloud.adminToken, "GET", "/v1/servers/" + ctx.server.id)).server.host;
  const cells = await row.locator("td").allTextContents();
  if (!host || cells[heads.indexOf("Host")] !== host) fail(`host shown ${cells} != ${host}`);
  await page.locator("#signout").click();
});

step("no token in any URL, no error in the page", async () => {
  for (const u of ctx.urls) {
    for (const t of ctx.tokens) {
      if (u.includes(t)) fail("a token in a URL: " + u);
    }
  }
  if (ctx.consoleErrors.length) fail("errors in the page:\n" + ctx.consoleErrors.join("\n"));
});

// ---- the run

async function main() {
  if (!BIN) fail("usage: node console_test.mjs BIN_DIR");
  ctx.cloud = new DevCloud(BIN, ["--hosts", "2", "--boot-ms", "50"]);
  await run(ctx, steps);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
