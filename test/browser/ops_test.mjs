#!/usr/bin/env node
// browser.ops: the operators' pages of the web console (cogs/cloud/ui: hosts.js, workflows.js,
// heal.js, quotas.js, charts.js) in Debian's headless Chromium, against a real `cogs dev`, as an
// admin uses them while a host dies.
//
//     node ops_test.mjs BIN_DIR          (COGS_SCREENSHOTS=1: also save docs/screenshots/ops-*.png)
//
// One `cogs dev --hosts 3` on a temporary directory with short healing timings (docs/healing.md:
// lease 1.5 s, a 5 s suspect window so a 2 s poll cannot miss it, restart grace 1.5 s). Its admin
// token makes a network, a subnet and a server through /v1. Then, in Chromium, as the admin:
//
//  1. The Operate nav is shown; #/hosts lists the 3 hosts up, each with vCPU / RAM / disk bars, the
//     server's host counting it; a poll that brings only lease renewals redraws no row (the focus
//     stays on its button).
//  2. The compute agent of the server's host is SIGKILLed (its supervisor, `cogs dev`, is stopped
//     first with SIGSTOP so it does not restart the agent at once): without a reload, the host's
//     row turns suspect, then down; the server is evacuated (its host changes, ACTIVE again) and
//     the hosts page moves its count. `cogs dev` is let go (SIGCONT): the agent restarts, the host
//     is up again; the servers page shows the server's new host.
//  3. #/heal shows the host's suspect and down events and the server's evacuation, newest first;
//     no paused-evacuation banner; one while the alert's history (answered by the test through
//     page.route: pausing needs most hosts down) says paused, none once it says resumed.
//  4. #/workflows?state=all&type=server.evacuate shows the evacuation with its steps done; a failed
//     workflow (its list, record and retry answered by the test) has Retry, which POSTs .../retry.
//  5. Disable and Enable a host through its buttons and the confirmation, the reason shown; Drain
//     the host that came back (draining), Enable it again. A refused Drain (a 409 answered by the
//     test) shows the API's message as text; 1,000 hosts (a GET /v1/hosts answered by the test)
//     show 50 rows a page, counted and filtered.
//  6. #/quotas shows the admin project's servers in use; #/charts draws its SVG lines from /metrics.
//  7. A member sees no Operate nav, and #/hosts sends it to #/servers.
//  8. No request URL ever carried a token; the page logged no error (a CSP violation would); on
//     every page, each form control has a label, each button a name, each column header a scope.
//
// Waits are for conditions with generous deadlines, never fixed sleeps. `cogs dev` is let go and
// stopped (SIGCONT, SIGINT, then SIGKILL of it and every process dev.json names) and Chromium
// closed even when a step fails (harness.mjs: DevCloud, run()). Exits 0 when every step passes.
import { DEADLINE_MS, SHOTS, fail, labelled, launchChromium, main, newPage, shot, signIn, stepList, waitFor } from "./harness.mjs";

const LEASE_TTL_MS = 1500;
const FENCE_WINDOW_MS = 5000; // suspect this long before down: longer than two polls of the page

const { steps, step } = stepList();
const ctx = {};

step("the cloud, a network and a server", async () => {
  const { cloud } = ctx;
  await cloud.start();
  const admin = cloud.adminToken;
  const net = (await cloud.api(admin, "POST", "/v1/networks", { name: "net-ops" })).network;
  await cloud.waitStatus(admin, "/v1/networks/" + net.id, "network", "ACTIVE");
  const subnet = (await cloud.api(admin, "POST", "/v1/subnets", {
    network_id: net.id, name: "subnet-ops", cidr: "10.43.0.0/24",
  })).subnet;
  await cloud.waitStatus(admin, "/v1/subnets/" + subnet.id, "subnet", "ACTIVE");
  const made = (await cloud.api(admin, "POST", "/v1/servers", {
    name: "ops-1", flavor: "m1.tiny", image: "busybox", network_id: net.id,
  })).server;
  ctx.server = await cloud.waitStatus(admin, "/v1/servers/" + made.id, "server", "ACTIVE");
  if (!ctx.server.host) fail("an ACTIVE server without a host: " + JSON.stringify(ctx.server));
  const demo = (await cloud.api(admin, "GET", "/v1/projects")).projects.find((p) => p.name === "demo") || fail("no project demo");
  const token = { project_id: demo.id, role: "member", name: "ops-member" };
  ctx.member = (await cloud.api(admin, "POST", "/v1/tokens", token)).token.secret;
  ctx.tokens = [admin, ctx.member];
});

step("Chromium (Debian's, headless, no downloads)", async () => {
  ctx.browser = await launchChromium();
  ctx.page = await newPage(ctx, { width: 1280, height: 860 });
});

// The row of host `name` on the hosts page.
const hostRow = (name, attrs = "") => ctx.page.locator(`#hosts-body tr[data-name="${name}"]${attrs}`);

step("an admin sees Operate and every host up, with capacity bars", async () => {
  const { page } = ctx;
  await signIn(ctx, ctx.cloud.adminToken);
  if (await page.locator("#nav-ops").isHidden()) fail("no Operate nav for an admin");
  await page.locator("#nav-hosts").click();
  for (const name of ["host-1", "host-2", "host-3"]) {
    await hostRow(name, '[data-state="up"][data-enabled="true"]').waitFor();
    const bars = await hostRow(name).locator(".capacity").evaluateAll((els) =>
      els.map((e) => ({ label: e.dataset.label, used: Number(e.dataset.used), total: Number(e.dataset.total) })));
    if (JSON.stringify(bars.map((b) => b.label)) !== '["vCPU","RAM","Disk"]') fail(`${name} bars: ${JSON.stringify(bars)}`);
    if (bars.some((b) => !(b.total > 0))) fail(`${name} capacity without a total: ${JSON.stringify(bars)}`);
  }
  // The server's host counts it and its vCPU bar shows it used (m1.tiny: 1 vCPU).
  await hostRow(ctx.server.host, '[data-servers="1"]').waitFor();
  const used = Number(await hostRow(ctx.server.host).locator('.capacity[data-label="vCPU"]').getAttribute("data-used"));
  if (!(used >= 1)) fail(`${ctx.server.host} shows ${used} vCPUs used`);
  const fill = hostRow(ctx.server.host).locator('.capacity[data-label="vCPU"] .fill');
  const fillWidth = await fill.evaluate((e) => e.getBoundingClientRect().width);
  if (!(fillWidth > 0)) fail("the used vCPU bar has no width");
  const summary = await page.locator("#hosts-summary").textContent();
  if (!/3 hosts: 3 up/.test(summary)) fail("summary: " + summary);
  // A poll that brings only lease renewals keeps every row's node (and the focus in it).
  await hostRow("host-3").evaluate((tr) => (tr.__kept = true));
  await page.locator("#drain-host-3").focus();
  const polls = Number(await page.locator("#hosts-summary").getAttribute("data-polls"));
  await page.waitForFunction((n) => Number(document.getElementById("hosts-summary").dataset.polls) >= n + 2, polls);
  if (!(await hostRow("host-3").evaluate((tr) => tr.__kept === true))) fail("an unchanged host's row was redrawn");
  if ((await page.evaluate(() => document.activeElement?.id)) !== "drain-host-3") fail("a poll took the focus away");
});

step("SIGKILL of a host's agent: suspect, then down, its server moved, without a reload", async () => {
  const { page, cloud } = ctx;
  const host = ctx.server.host;
  // Every state the row shows, as the page shows it (read in the page every 50 ms).
  await page.evaluate((name) => {
    window.__notReloaded = true;
    window.__states = [];
    setInterval(() => {
      const s = document.querySelector(`#hosts-body tr[data-name="${name}"]`)?.dataset.state;
      if (s && window.__states[window.__states.length - 1] !== s) window.__states.push(s);
    }, 50);
  }, host);
  const agent = "cogs-compute-" + host.split("-").pop(); // cogs dev names host-N's agent cogs-compute-N
  const pid = cloud.pidOf(agent);
  cloud.freeze(); // else `cogs dev` restarts the agent within a second and the lease never lapses
  process.kill(pid, "SIGKILL");
  await hostRow(host, '[data-state="suspect"]').waitFor();
  await hostRow(host, '[data-state="down"]').waitFor();
  const states = await page.evaluate(() => window.__states);
  if (JSON.stringify(states) !== '["up","suspect","down"]') fail("the row showed " + JSON.stringify(states));
  // Evacuated: on another host, ACTIVE again; the page moves the count.
  let moved;
  await waitFor("the server evacuated", DEADLINE_MS, async () => {
    moved = (await cloud.api(cloud.adminToken, "GET", "/v1/servers/" + ctx.server.id)).server;
    if (moved.status === "ERROR") fail("evacuation ended ERROR: " + JSON.stringify(moved.fault));
    return moved.status === "ACTIVE" && moved.host && moved.host !== host;
  });
  ctx.newHost = moved.host;
  await hostRow(moved.host, '[data-servers="1"]').waitFor();
  await hostRow(host, '[data-servers="0"]').waitFor();
  const summary = await page.locator("#hosts-summary").textContent();
  if (!/1 down/.test(summary)) fail("summary: " + summary);
  await shot(page, "ops-hosts");
  // Let `cogs dev` go: it restarts the agent and the host renews its lease again.
  cloud.thaw();
  await hostRow(host, '[data-state="up"]').waitFor();
  if (!(await page.evaluate(() => window.__notReloaded === true))) fail("the page reloaded");
  // The servers page says where it is now.
  await page.locator("#nav-servers").click();
  const row = page.locator(`#servers tr[data-id="${ctx.server.id}"][data-status="ACTIVE"]`);
  await row.locator("td", { hasText: new RegExp(`^${moved.host}$`) }).waitFor();
  await page.locator("#nav-hosts").click();
  await hostRow(host).waitFor();
});

step("heal activity: the host's suspect and down, the server's evacuation, newest first", async () => {
  const { page } = ctx;
  await page.locator("#nav-heal").click();
  const host = ctx.server.host;
  await page.locator(`#heal-body tr[data-kind="host"][data-id="${host}"][data-type="down"]`).waitFor();
  await page.locator(`#heal-body tr[data-kind="host"][data-id="${host}"][data-type="suspect"]`).waitFor();
  await page.locator(`#heal-body tr[data-kind="server"][data-id="${ctx.server.id}"][data-type="evacuated"]`).waitFor();
  const seqs = await page.locator("#heal-body tr").evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
  if (seqs.some((s, i) => i > 0 && s >= seqs[i - 1])) fail("not newest first: " + seqs);
  if (await page.locator("#evacuation-banner").isVisible()) fail("an evacuation-paused banner with one host of three down");
  // The filter narrows to one category.
  await page.locator("#heal-filter").selectOption("evacuation");
  await page.locator('#heal-body tr[data-type="down"]').waitFor({ state: "detached" });
  await page.locator(`#heal-body tr[data-type="evacuated"]`).waitFor();
  await page.locator("#heal-filter").selectOption("");
  await page.locator(`#heal-body tr[data-type="down"]`).first().waitFor();
  await labelled(ctx.page);
  await shot(page, "ops-heal");
  // The banner follows the latest evacuation alert. Pausing needs more than half the hosts down at
  // once; the alert's history is answered by the test instead: paused, then resumed.
  const seq = 1_000_000_000;
  const alert = (type, s) => ({
    seq: s, time_ms: Date.now(), time: new Date().toISOString(), project: "", resource_kind: "alert", resource_id: "evacuation",
    workflow_id: "", type, message: "2 of 3 hosts are suspect or down", trace_id: "",
  });
  const alerts = (url) => url.pathname === "/v1/events" && url.searchParams.get("resource_kind") === "alert";
  await page.route(alerts, (route) => {
    const after = Number(new URL(route.request().url()).searchParams.get("after"));
    const events = after < seq ? [alert("evacuation_paused", seq)] : after === seq ? [alert("evacuation_resumed", seq + 1)] : [];
    if (after === seq && !ctx.resume) events.length = 0; // paused until the test says resume
    const next = events.length ? events[events.length - 1].seq : after;
    return route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify({ events, next_after: next }) });
  });
  await page.locator('#evacuation-banner[data-paused="true"]', { hasText: "2 of 3 hosts are suspect or down" }).waitFor();
  ctx.resume = true;
  await page.locator("#evacuation-banner").waitFor({ state: "hidden" });
  await page.unroute(alerts);
});

step("workflows: the server.evacuate with its steps; in flight and failed filters answer", async () => {
  const { page } = ctx;
  await page.locator("#nav-workflows").click();
  await page.locator("#workflows-state").waitFor();
  await page.locator("#workflows-state").selectOption("");
  await page.locator("#workflows-type").selectOption("server.evacuate");
  if (!/state=all/.test(page.url()) || !/type=server.evacuate/.test(page.url())) fail("filters not in the hash: " + page.url());
  const row = page.locator(`#workflows-body tr[data-type="server.evacuate"][data-resource="${ctx.server.id}"]`);
  await row.waitFor();
  await page.locator(`#workflows-body tr[data-resource="${ctx.server.id}"][data-state="succeeded"]`).first().waitFor();
  const done = await row.first().locator("td.num").textContent();
  const m = /^(\d+) \/ (\d+)$/.exec(done);
  if (!m || m[1] !== m[2] || Number(m[2]) === 0) fail("steps done of a succeeded evacuation: " + done);
  await labelled(ctx.page);
  await shot(page, "ops-workflows");
  // The failed view (a link can name it) answers: none failed here.
  await page.goto(ctx.cloud.url + "/ui/#/workflows?state=failed");
  await page.locator("#workflows-status", { hasText: "No workflow failed" }).waitFor();
  // A failed workflow (a compensation a service refused) has Retry. Making one needs a fault at a
  // service; its list, its record and the retry are answered by the test instead, the route checked.
  const id = "01a2ffff-0000-7000-8000-00000000f00d";
  const failed = {
    id, type: "server.create", state: "failed", reason: "compensation failed: delete_port: refused",
    created_at: new Date().toISOString(), finished_at: new Date().toISOString(), trace_id: "",
    resource_kind: "server", resource_id: ctx.server.id,
  };
  const retried = [];
  const fake = (url) => url.pathname === "/v1/workflows" || url.pathname.startsWith("/v1/workflows/" + id);
  await page.route(fake, (route) => {
    const url = new URL(route.request().url());
    let body = { workflows: url.searchParams.get("state") === "failed" ? [failed] : [] };
    if (url.pathname.endsWith("/retry")) {
      retried.push(route.request().method());
      body = { workflow: { id, retried: true } };
      return route.fulfill({ status: 202, contentType: "application/json", body: JSON.stringify(body) });
    }
    if (url.pathname !== "/v1/workflows") {
      body = { workflow: { ...failed, steps: [{ name: "a", state: "succeeded" }, { name: "b", state: "failed" }] } };
    }
    return route.fulfill({ status: 200, contentType: "application/json", body: JSON.stringify(body) });
  });
  const failedRow = page.locator(`#workflows-body tr[data-id="${id}"][data-state="failed"]`);
  await failedRow.waitFor();
  const stepsDone = await failedRow.locator("td.num").textContent();
  if (stepsDone !== "1 / 2") fail("steps done: " + stepsDone);
  await page.locator(`#retry-${id}`).click();
  await page.locator("#confirm-ok").click();
  await page.locator("#workflows-status", { hasText: "Retry requested" }).waitFor();
  if (JSON.stringify(retried) !== '["POST"]') fail("retry calls: " + JSON.stringify(retried));
  await page.unroute(fake);
});

step("disable, enable and drain hosts through their buttons and the confirmation", async () => {
  const { page, cloud } = ctx;
  const host = ctx.newHost;
  await page.locator("#nav-hosts").click();
  await hostRow(host).waitFor();
  await page.locator("#host-reason").fill("firmware update");
  await page.locator(`#disable-${host}`).click();
  await page.locator("#confirm").waitFor({ state: "visible" });
  if (!(await page.locator("#confirm-text").textContent()).includes(host)) fail("the confirmation names no host");
  await page.locator("#confirm-ok").click();
  await hostRow(host, '[data-enabled="false"]').waitFor();
  if (!(await hostRow(host).textContent()).includes("disabled: firmware update")) fail("no reason shown");
  const api = (await cloud.api(cloud.adminToken, "GET", "/v1/hosts/" + host)).host;
  if (api.enabled || api.disabled_reason !== "firmware update") fail("the API has " + JSON.stringify(api));
  // Cancel changes nothing; Enable through the dialog by keyboard.
  await page.locator(`#enable-${host}`).click();
  await page.locator("#confirm-cancel").click();
  await page.locator("#confirm").waitFor({ state: "hidden" });
  if ((await cloud.api(cloud.adminToken, "GET", "/v1/hosts/" + host)).host.enabled) fail("a cancelled enable enabled");
  await page.locator(`#enable-${host}`).click();
  await page.locator("#confirm").waitFor({ state: "visible" });
  await page.keyboard.press("Tab");
  await page.keyboard.press("Enter");
  await hostRow(host, '[data-enabled="true"]').waitFor();
  // Drain the host that came back (its stale copy removed, it holds no server): draining, then
  // drained (an event on the heal page); Enable takes it back.
  const back = ctx.server.host;
  await hostRow(back, '[data-servers="0"]').waitFor();
  await page.locator("#host-reason").fill("");
  await page.locator(`#drain-${back}`).click();
  await page.locator("#confirm-ok").click();
  await hostRow(back, '[data-draining="true"][data-enabled="false"]').waitFor();
  if (!(await hostRow(back).textContent()).includes("draining")) fail("no draining shown");
  await page.locator(`#enable-${back}`).click();
  await page.locator("#confirm-ok").click();
  await hostRow(back, '[data-draining="false"][data-enabled="true"]').waitFor();
  await labelled(ctx.page);
});

step("the API's refusal of an action is shown; 1,000 hosts page by 50", async () => {
  const { page } = ctx;
  const host = ctx.newHost;
  // A refusal the cloud gives rarely on cue (a drain racing a delete): answered by the test instead.
  const refuse = (url) => url.pathname === `/v1/hosts/${host}/drain`;
  await page.route(refuse, (route) =>
    route.fulfill({
      status: 409, contentType: "application/json", body: JSON.stringify({ code: "conflict", message: "host <b>busy</b>" }),
    }));
  await page.locator(`#drain-${host}`).click();
  await page.locator("#confirm-ok").click();
  await page.locator("#hosts-status.error", { hasText: "host <b>busy</b> (conflict)" }).waitFor();
  if ((await page.locator("#hosts-status b").count()) !== 0) fail("API text was parsed as HTML");
  await page.unroute(refuse);
  // 1,000 hosts (GET /v1/hosts answers them all at once): 50 rows a page, the states counted.
  const many = Array.from({ length: 1000 }, (_, i) => ({
    name: `rack-${i + 1}`, availability_zone: "nova", vcpus: 64, ram_mb: 262144, disk_gb: 4000, enabled: i % 10 !== 0,
    disabled_reason: i % 10 === 0 ? "maintenance" : "", draining: false, state: i % 100 === 5 ? "down" : "up",
    state_since: new Date().toISOString(), last_renewal_at: new Date().toISOString(),
    used: { vcpus: i % 64, ram_mb: (i % 64) * 4096, disk_gb: i % 4000 }, servers: i % 64,
  }));
  const list = (url) => url.pathname === "/v1/hosts";
  const body = JSON.stringify({ hosts: many });
  await page.route(list, (route) => route.fulfill({ status: 200, contentType: "application/json", body }));
  const counted = "1000 hosts: 990 up, 0 suspect, 10 down; 100 disabled or draining.";
  await page.locator("#hosts-summary", { hasText: counted }).waitFor();
  if ((await page.locator("#hosts-body tr").count()) !== 50) fail("not 50 rows a page");
  await page.locator(".pager .page", { hasText: "Page 1 of 20" }).waitFor();
  await page.locator("#hosts-next").click();
  await page.locator('#hosts-body tr[data-name="rack-51"]').waitFor();
  await page.locator("#hosts-filter").selectOption("down");
  await page.locator(".pager .page", { hasText: "Page 1 of 1" }).waitFor();
  if ((await page.locator("#hosts-body tr").count()) !== 10) fail("the down filter does not show the 10 down hosts");
  await page.locator("#hosts-filter").selectOption("");
  await page.unroute(list);
  await hostRow(host).waitFor();
});

step("quotas per project and live charts from /metrics", async () => {
  const { page } = ctx;
  await page.locator("#nav-quotas").click();
  const servers = page.locator('#quotas section[data-project="admin"] tr[data-resource="servers"] .capacity');
  await servers.waitFor();
  const inUse = await servers.getAttribute("data-used");
  if (inUse !== "1") fail("admin's servers in use: " + inUse);
  await page.locator('#quotas section[data-project="demo"]').waitFor();
  await labelled(ctx.page);
  await shot(page, "ops-quotas");
  await page.locator("#nav-charts").click();
  // Two reads make the first points; every chart is drawn with SVG (lines or single points).
  await page.locator('#chart-workflows:not([data-points="0"])').waitFor();
  await page.waitForFunction(() => Number(document.querySelector("#chart-hosts").dataset.points) >= 2);
  for (const id of ["workflows", "step-latency", "placement", "heal", "hosts"]) {
    await page.locator(`#chart-${id} svg.chart line.axis`).waitFor({ state: "attached" });
  }
  if ((await page.locator("#chart-hosts svg polyline").count()) === 0) fail("no line drawn on the hosts chart");
  const up = await page.locator('#chart-hosts li[data-line="up"]').textContent();
  if (up !== "up: 3") fail("hosts chart legend: " + up);
  // A heal happened: its time is charted (the mean so far).
  if (/none/.test(await page.locator('#chart-heal li[data-line="mean"]').textContent())) fail("no time to heal charted");
  await labelled(ctx.page);
  if (SHOTS) {
    // For the picture only: some work to chart, and half a minute of points.
    const admin = ctx.cloud.adminToken;
    for (let i = 0; i < 4; i++) {
      const s = { name: `ops-chart-${i}`, flavor: "m1.tiny", image: "busybox", network_id: ctx.server.network_id };
      await ctx.cloud.api(admin, "POST", "/v1/servers", s);
    }
    await page.waitForFunction(() => Number(document.querySelector("#chart-workflows").dataset.points) >= 6);
  }
  await shot(page, "ops-charts");
});

step("a member sees no Operate nav and is sent away from #/hosts", async () => {
  const { page } = ctx;
  await page.locator("#signout").click();
  await signIn(ctx, ctx.member);
  if (!(await page.locator("#nav-ops").isHidden())) fail("a member sees Operate");
  await page.goto(ctx.cloud.url + "/ui/#/hosts");
  await page.waitForURL(/#\/servers$/);
  await page.locator("#servers").waitFor();
  if ((await page.locator("#hosts").count()) !== 0) fail("a member sees the hosts");
});

main(ctx, steps, [
  "--hosts", "3", "--boot-ms", "50",
  `--cogsd-arg=--lease-ttl-ms=${LEASE_TTL_MS}`, `--cogsd-arg=--fence-window-ms=${FENCE_WINDOW_MS}`,
  "--cogsd-arg=--restart-grace-ms=1500",
], { prefix: "cogs-browser-ops." });
