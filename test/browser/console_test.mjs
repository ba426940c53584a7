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
//  3. A volume (made through the API) attached on the server's page through "Attach a volume": listed
//     there in-use, in-use with the server in the API and in the server's volume_ids; detached through
//     its Detach and the dialog: available again, out of volume_ids; then attached again from the
//     volume's own page (a server picked by name), which then links the server, which lists it.
//  4. Its page: details, a timeline bar per step of its server.create workflow (in the states the
//     API gives), its events; Stop through the button and the confirmation (by keyboard): SHUTOFF,
//     and the timeline shows the server.stop workflow; the timeline module, given a step_waiting
//     event, marks where the step began waiting on an open circuit breaker (and another
//     workflow's is not drawn).
//  5. The servers page's filters: by status (SHUTOFF: that server alone) and by exact name, each
//     the rows of the API's answer to the same ?status= / ?name=, kept in the hash across a reload,
//     and the nav's Servers clears them; the list requests carry nothing but the page and filters.
//  6. The New server form: a name too long refused with the API's message at the field, nothing
//     made; then a server made through the pickers, ACTIVE on its page, deleted through Delete and
//     its confirmation; sign-out forgets the token.
//  7. A reader (signing in by keyboard) sees the server, no action button and no New server, its
//     volume listed without Detach and no Attach (nor on the volume's page), and
//     is signed out, told why, when its token is revoked;
//     another project's member sees none of it (its page: no such server); an admin sees the host.
//  8. No request URL ever carried a token; the console logged no error (a CSP violation would).
//
// Waits are for conditions with generous deadlines, never fixed sleeps. `cogs dev` is stopped
// (SIGINT, then SIGKILL of it and the processes dev.json names) and Chromium closed even when a step
// fails. Exits 0 when every step passes.
import { DEADLINE_MS, fail, labelled, launchChromium, main, newPage, shot, signIn, startWithTenants, stepList, waitFor } from "./harness.mjs";

const { steps, step } = stepList();
const ctx = {};

step("the cloud and its tenants", async () => {
  const { cloud } = ctx;
  await startWithTenants(ctx, "ui");
  const net = (await cloud.api(ctx.member, "POST", "/v1/networks", { name: "net-ui" })).network;
  await cloud.waitStatus(ctx.member, "/v1/networks/" + net.id, "network", "ACTIVE");
  const subnet = (await cloud.api(ctx.member, "POST", "/v1/subnets", { network_id: net.id, name: "subnet-ui", cidr: "10.42.0.0/24" })).subnet;
  await cloud.waitStatus(ctx.member, "/v1/subnets/" + subnet.id, "subnet", "ACTIVE");
  ctx.network = net;
});

step("Chromium (Debian's, headless, no downloads)", async () => {
  ctx.browser = await launchChromium();
  ctx.page = await newPage(ctx);
  // The answers of the servers list, to see its polls revalidated.
  ctx.listAnswers = [];
  ctx.page.on("response", (r) => {
    if (new URL(r.url()).pathname === "/v1/servers") ctx.listAnswers.push(r.status());
  });
});

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
  await signIn(ctx, ctx.member);
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

step("a volume attached and detached on the server's page, attached again on its own page", async () => {
  const { page, cloud } = ctx;
  const sid = ctx.server.id;
  const made = (await cloud.api(ctx.member, "POST", "/v1/volumes", { name: "vol-ui", size_gb: 1 })).volume;
  await cloud.waitStatus(ctx.member, "/v1/volumes/" + made.id, "volume", "available");
  ctx.volume = made;
  const volumeOf = async () => (await cloud.api(ctx.member, "GET", "/v1/volumes/" + made.id)).volume;
  const idsOf = async () => (await cloud.api(ctx.member, "GET", "/v1/servers/" + sid)).server.volume_ids || [];
  await page.locator(`#servers tr[data-id="${sid}"] a`).click();
  await page.locator('#details[data-status="ACTIVE"]').waitFor();
  await page.locator("#server-volumes-none").waitFor();
  await page.locator(`#attach-volume option[value="${made.id}"]`).waitFor({ state: "attached" });
  await labelled(page);
  await page.locator("#attach-volume").selectOption(made.id);
  await page.locator("#action-attach").click();
  const row = page.locator(`#server-volumes-body tr[data-id="${made.id}"]`);
  await page.locator(`#server-volumes-body tr[data-id="${made.id}"][data-status="in-use"]`).waitFor();
  const cells = await row.locator("td").allTextContents();
  if (cells[0] !== "vol-ui" || cells[1] !== "1 GB") fail("the volume's row: " + cells);
  const attached = await volumeOf();
  if (attached.status !== "in-use" || attached.server_id !== sid) fail("the API says: " + JSON.stringify(attached));
  if (!(await idsOf()).includes(made.id)) fail("the server's volume_ids lack the volume");
  await shot(page, "server-volumes");
  // Detach: confirmed in the dialog, which names the volume.
  await row.locator("button.detach").click();
  await page.locator("#confirm").waitFor({ state: "visible" });
  if (!(await page.locator("#confirm-text").textContent()).includes("vol-ui")) fail("the confirmation names no volume");
  await page.locator("#confirm-ok").click();
  await page.locator("#server-volumes-none").waitFor();
  await cloud.waitStatus(ctx.member, "/v1/volumes/" + made.id, "volume", "available");
  if ((await idsOf()).includes(made.id)) fail("the server's volume_ids still name the volume");
  // The volume's page: Attach to a server picked by name; then it names its server (linked).
  await page.goto(cloud.url + "/ui/#/volumes/" + made.id);
  await page.locator('#details[data-status="available"]').waitFor();
  await page.locator("#attach-server").selectOption({ label: "web-ui-1" });
  await page.locator("#action-attach").click();
  await page.locator('#details[data-status="in-use"]').waitFor();
  await page.locator("#action-detach").waitFor();
  if ((await volumeOf()).server_id !== sid) fail("attached from its page to another server");
  await shot(page, "volume");
  await page.locator(`#details a[href="#/servers/${sid}"]`, { hasText: "web-ui-1" }).click();
  await page.locator(`#server-volumes-body tr[data-id="${made.id}"][data-status="in-use"]`).waitFor();
  await page.locator('a[href="#/servers"]').first().click();
  await page.locator(`#servers tr[data-id="${sid}"]`).waitFor();
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

step("the timeline marks where a step waited on an open circuit breaker (its step_waiting event)", async () => {
  // The console's own timeline module, in the page, on a workflow whose boot waited on the open
  // circuit of its compute service: what the engine's step_waiting event says (docs/api.md, Events).
  const drawn = await ctx.page.evaluate(async () => {
    const { circuitWaits, renderTimeline } = await import("/ui/js/timeline.js");
    const workflow = {
      id: "wf-1", type: "server.create", state: "running",
      steps: [
        { name: "create_port", action: "network.create_port", state: "succeeded", attempts: 1, started_ms: 1000, finished_ms: 1100 },
        { name: "boot", action: "compute.create_instance", state: "running", attempts: 1, started_ms: 1100 },
      ],
    };
    const events = [
      { type: "step_succeeded", workflow_id: "wf-1", time_ms: 1100, message: "step create_port (network.create_port) succeeded after 1 attempt" },
      { type: "step_waiting", workflow_id: "wf-1", time_ms: 1200, message: "step boot (compute.create_instance) waits: circuit of compute is open" },
      { type: "step_waiting", workflow_id: "wf-2", time_ms: 1300, message: "step create_port (network.create_port) waits: circuit of network is open" },
    ];
    const figure = renderTimeline(workflow, 2100, circuitWaits(events, "wf-1"));
    document.body.append(figure);
    const marks = [...figure.querySelectorAll(".wait-mark")].map((m) => ({
      step: m.dataset.step, left: m.style.left, title: m.title, inTrack: m.parentElement.classList.contains("track"),
    }));
    const notes = [...figure.querySelectorAll(".step")].map((li) => li.querySelector(".note")?.textContent || "");
    const labels = [...figure.querySelectorAll(".step")].map((li) => li.getAttribute("aria-label"));
    figure.remove();
    return { marks, notes, labels };
  });
  const { marks, notes, labels } = drawn;
  if (marks.length !== 1) fail("wait marks: " + JSON.stringify(marks));
  const [m] = marks;
  // 1200 on the span 1000..2100: 18.18% along the boot's track.
  if (m.step !== "boot" || m.left !== "18.18%" || !m.inTrack || !m.title.includes("circuit of compute is open")) fail("mark: " + JSON.stringify(m));
  if (notes[0] !== "" || notes[1] !== "waited on a circuit breaker") fail("notes: " + JSON.stringify(notes));
  if (!labels[1].includes("waits: circuit of compute is open") || labels[0].includes("circuit")) fail("labels: " + JSON.stringify(labels));
});

step("the servers page filters by status and by exact name, as the API does", async () => {
  const { page, cloud } = ctx;
  // Two more servers (filter-ui-1, filter-ui-2) beside web-ui-1, SHUTOFF since the step before.
  const more = (await cloud.api(ctx.member, "POST", "/v1/servers", {
    name: "filter-ui", flavor: "m1.tiny", image: "busybox", network_id: ctx.network.id, max_count: 2,
  })).servers;
  for (const s of more) await cloud.waitStatus(ctx.member, "/v1/servers/" + s.id, "server", "ACTIVE");
  const sent = []; // the query of every list request from now on
  const onRequest = (r) => {
    const u = new URL(r.url());
    if (u.pathname === "/v1/servers") sent.push(u.search);
  };
  page.on("request", onRequest);
  await page.locator("#nav-servers").click();
  await page.locator(`#servers-body tr[data-id="${more[1].id}"][data-status="ACTIVE"]`).waitFor();
  await labelled(page);
  if ((await page.locator("label[for=servers-status]").textContent()).trim() !== "Status") fail("the status select has no label");
  if ((await page.locator("label[for=servers-name]").textContent()).trim() !== "Name") fail("the name field has no label");
  const help = await page.locator("#servers-name-help").textContent();
  if (!/exactly/.test(help) || (await page.getAttribute("#servers-name", "aria-describedby")) !== "servers-name-help") {
    fail("the name field does not say the match is exact: " + help);
  }
  const rows = () => page.locator("#servers-body tr").evaluateAll((trs) => trs.map((tr) => `${tr.dataset.id} ${tr.dataset.status}`).sort());
  const listed = async (q) => (await cloud.api(ctx.member, "GET", "/v1/servers" + q)).servers.map((s) => `${s.id} ${s.status}`).sort();
  const same = async (q) => JSON.stringify(await rows()) === JSON.stringify(await listed(q));
  // A status: exactly the API's answer to ?status=, and the filter in the hash.
  await page.locator("#servers-status").selectOption("SHUTOFF");
  await waitFor("the page = GET /v1/servers?status=SHUTOFF", DEADLINE_MS, () => same("?status=SHUTOFF"));
  const shutoff = await rows();
  if (shutoff.length !== 1 || !shutoff[0].startsWith(ctx.server.id)) fail("SHUTOFF rows: " + shutoff);
  if ((await page.evaluate(() => location.hash)) !== "#/servers?status=SHUTOFF") fail("hash: " + (await page.evaluate(() => location.hash)));
  // A name, all statuses: that server alone; a part of a name matches nothing (the API's match is exact).
  await page.locator("#servers-status").selectOption("");
  await page.locator("#servers-name").fill("filter-ui-2");
  await page.locator("#servers-name").press("Enter");
  await waitFor("the page = GET /v1/servers?name=filter-ui-2", DEADLINE_MS, () => same("?name=filter-ui-2"));
  if (JSON.stringify(await rows()) !== JSON.stringify([`${more[1].id} ACTIVE`])) fail("name rows: " + (await rows()));
  await page.locator("#servers-name").fill("filter-ui");
  await page.locator("#servers-name").press("Enter");
  await page.locator("#main .status", { hasText: "No server matches." }).waitFor();
  if ((await rows()).length !== 0) fail("a part of a name matched: " + (await rows()));
  // A reload with the filters in the hash shows the same view, its controls set.
  await page.evaluate(() => history.replaceState(null, "", "#/servers?status=ACTIVE&name=filter-ui-1"));
  await page.reload();
  await page.locator(`#servers-body tr[data-id="${more[0].id}"]`).waitFor();
  if ((await page.locator("#servers-status").inputValue()) !== "ACTIVE" || (await page.locator("#servers-name").inputValue()) !== "filter-ui-1") {
    fail("the controls after a reload do not show the hash's filters");
  }
  if (!(await same("?status=ACTIVE&name=filter-ui-1"))) fail("after a reload: " + (await rows()));
  // The nav's Servers: no filter, every server of the project again, from page 1.
  await page.locator("#nav-servers").click();
  await waitFor("the unfiltered list", DEADLINE_MS, () => same(""));
  if ((await page.locator("#servers-status").inputValue()) !== "" || (await page.locator("#servers-name").inputValue()) !== "") fail("the filters stayed");
  // The list requests carried the page and the filters, nothing else.
  page.off("request", onRequest);
  for (const q of sent) {
    const extra = [...new URLSearchParams(q).keys()].filter((k) => !["limit", "marker", "status", "name"].includes(k));
    if (extra.length) fail("a list request sent " + q);
  }
  if (!sent.includes("?status=SHUTOFF&limit=50") || !sent.includes("?name=filter-ui-2&limit=50")) fail("requests: " + sent);
  for (const s of more) await cloud.api(ctx.member, "DELETE", "/v1/servers/" + s.id, undefined, 202);
  for (const s of more) {
    await waitFor(`${s.name} gone`, DEADLINE_MS, async () => (await fetch(`${cloud.url}/v1/servers/${s.id}`, { headers: { Authorization: "Bearer " + ctx.member } })).status === 404);
  }
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
  // Its attached volume is listed, with no Detach; no Attach either, here or on the volume's page.
  await page.locator(`#server-volumes-body tr[data-id="${ctx.volume.id}"]`).waitFor();
  if (await page.locator("#h-volumes ~ * button, #attach-volume").count()) fail("a reader is offered Attach or Detach");
  await page.locator(`#server-volumes-body tr[data-id="${ctx.volume.id}"] a`).click();
  await page.locator('#details[data-status="in-use"]').waitFor();
  if (await page.locator("#action-attach, #action-detach, #attach-server").count()) fail("a reader is offered Attach or Detach on the volume");
  await page.goBack();
  await page.locator("#timeline").waitFor();
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
  await signIn(ctx, ctx.otherMember);
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
  await signIn(ctx, cloud.adminToken);
  const row = page.locator(`#servers tr[data-id="${ctx.server.id}"]`);
  await row.waitFor();
  const heads = await page.locator("#servers thead th").allTextContents();
  if (!heads.includes("Host")) fail("no Host column for an admin: " + heads);
  const host = (await cloud.api(cloud.adminToken, "GET", "/v1/servers/" + ctx.server.id)).server.host;
  const cells = await row.locator("td").allTextContents();
  if (!host || cells[heads.indexOf("Host")] !== host) fail(`host shown ${cells} != ${host}`);
  await page.locator("#signout").click();
});

main(ctx, steps, ["--hosts", "2", "--boot-ms", "50"]);
