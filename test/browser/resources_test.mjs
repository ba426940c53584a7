#!/usr/bin/env node
// browser.resources: the console's pages of networks, subnets, ports, volumes, images and flavors
// (cogs/cloud/ui/web/js/resources.js) in Debian's headless Chromium, against a real `cogs dev`.
//
//     node resources_test.mjs BIN_DIR          (COGS_SCREENSHOTS=1: also save docs/screenshots/*.png)
//
// One `cogs dev --hosts 1` on a temporary directory (harness.mjs). Its admin token makes a member
// and a reader of project demo, a second project's member, and the member's network net-keep.
// Then, in Chromium:
//
//  1. The member creates a network (by keyboard), a subnet on it and a port on it through the
//     forms, each seen reaching ACTIVE in its list without the page reloading; a bad cidr
//     (10.0.0.0/33) is refused with the API's message at the cidr field, and no subnet is made.
//  2. The network's page: details, its subnet and port, its events; Delete while it has them is
//     refused with the API's 409 said in the page.
//  3. A volume made through its form becomes available in the list.
//  4. The port, the subnet and the network are deleted through Delete and the dialog, and leave
//     their lists.
//  5. A reader gets no New and no Delete on any of the six pages (nor the form at #/<kind>/new).
//  6. Another project's member sees none of demo's networks (net-keep's page: no such network),
//     and is offered no New flavor or New image.
//  7. An admin sees net-keep with its project's name; creates an image (queued: no content yet)
//     and a flavor through the forms, and deletes the flavor; 60 more flavors make the list page:
//     50 rows, then the rest on the next page.
//  8. The admin uploads a small root filesystem (made with `tar -czf`) through the image's page
//     (its file field, Upload): the image is active, with the file's size and sha256 (node's) in
//     the API and on the page, the upload sent ?sha256= of the file, and no upload is offered any
//     more; a file that is not gzip, uploaded to another queued image, is refused at the file field
//     with the API's message, and that image stays queued without content (the API says).
//  9. A member is offered no upload on a queued image's page.
// 10. No request URL ever carried a token; the page logged no error (a CSP violation would); on
//     the forms and lists, each control has a label, each button a name, each column header a scope.
//
// Waits are for conditions with generous deadlines, never fixed sleeps. `cogs dev` is stopped and
// Chromium closed even when a step fails (harness.mjs run()). Exits 0 when every step passes.
import { execFileSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { DEADLINE_MS, fail, labelled, launchChromium, main, newPage, shot, signIn, startWithTenants, stepList, waitFor } from "./harness.mjs";

const KINDS = ["networks", "subnets", "ports", "volumes", "images", "flavors"];

const { steps, step } = stepList();
const ctx = {};

step("the cloud and its tenants", async () => {
  const { cloud } = ctx;
  await startWithTenants(ctx, "res");
  ctx.keep = (await cloud.api(ctx.member, "POST", "/v1/networks", { name: "net-keep" })).network;
  await cloud.waitStatus(ctx.member, "/v1/networks/" + ctx.keep.id, "network", "ACTIVE");
});

step("Chromium (Debian's, headless, no downloads)", async () => {
  ctx.browser = await launchChromium();
  ctx.page = await newPage(ctx);
});


// The row of `kind`'s list whose name is `name` (and, given, whose status is `status`).
function row(kind, name, status) {
  const { page } = ctx;
  const sel = `#${kind} tr` + (status ? `[data-status="${status}"]` : "");
  return page.locator(sel, { has: page.locator("td:first-child a", { hasText: new RegExp("^" + name + "$") }) });
}

// Until `kind`'s list has answered: a row, or its "No <kind> yet."
async function listed(kind) {
  await ctx.page.locator(`#${kind}-body tr, main .status:text-matches("^No ${kind} yet")`).first().waitFor();
}

async function create(kind, one, fill) {
  const { page } = ctx;
  await page.locator("#nav-" + kind).click();
  await page.locator("#new-" + one).click();
  await page.locator("#create-" + one + " #create-submit").waitFor();
  await labelled(ctx.page);
  // `fill` may submit by itself (returning true): by keyboard.
  if (!(await fill(page))) await page.locator("#create-submit").click();
}

step("a member makes a network, a subnet (a bad cidr refused at its field) and a port through the forms", async () => {
  const { page, cloud } = ctx;
  await signIn(ctx, ctx.member);
  await page.evaluate(() => (window.__notReloaded = true));
  // By keyboard: the form starts with the focus on its first field; Enter submits.
  await create("networks", "network", async (p) => {
    if ((await p.evaluate(() => document.activeElement?.id)) !== "name") fail("the form's focus is not on its name");
    await p.keyboard.type("net-res");
    await p.keyboard.press("Enter");
    return true;
  });
  await row("networks", "net-res", "ACTIVE").waitFor();
  ctx.net = (await cloud.api(ctx.member, "GET", "/v1/networks?name=net-res")).networks[0];
  await shot(page, "networks");

  await create("subnets", "subnet", async (p) => {
    await p.locator("#network_id").selectOption({ label: "net-res" });
    await p.locator("#cidr").fill("10.0.0.0/33");
    await p.locator("#name").fill("sub-res");
  });
  await page.locator('#cidr[aria-invalid="true"]').waitFor();
  const note = await page.locator("#cidr-error").textContent();
  if (!/cidr|prefix/i.test(note)) fail("the cidr field says: " + note);
  if (!/not created/.test(await page.locator("#create-error").textContent())) fail("no refusal above the button");
  const made = (await cloud.api(ctx.member, "GET", "/v1/subnets?network_id=" + ctx.net.id)).subnets;
  if (made.length) fail("a refused subnet exists: " + JSON.stringify(made));
  await page.locator("#cidr").fill("10.77.0.0/24");
  await page.locator("#create-submit").click();
  await row("subnets", "sub-res", "ACTIVE").waitFor();
  const cells = await row("subnets", "sub-res").locator("td").allTextContents();
  if (!cells.includes("net-res") || !cells.includes("10.77.0.0/24") || !cells.includes("10.77.0.1")) fail("subnet row: " + cells);

  await create("ports", "port", async (p) => {
    await p.locator("#network_id").selectOption({ label: "net-res" });
    await p.locator("#name").fill("port-res");
  });
  await row("ports", "port-res", "ACTIVE").waitFor();
  const port = (await cloud.api(ctx.member, "GET", "/v1/ports?network_id=" + ctx.net.id)).ports[0];
  if (!(await row("ports", "port-res").locator("td").allTextContents()).includes(port.fixed_ip)) fail("no address shown");
  if (!(await page.evaluate(() => window.__notReloaded === true))) fail("the page reloaded");
});

step("the network's page: details, its subnet and port, its events; a delete while in use refused", async () => {
  const { page } = ctx;
  await page.locator("#nav-networks").click();
  await row("networks", "net-res").locator("td:first-child a").click();
  await page.locator('#details[data-status="ACTIVE"]').waitFor();
  await page.locator('#net-subnets-body tr[data-status="ACTIVE"]').waitFor();
  await page.locator('#net-ports-body tr[data-status="ACTIVE"]').waitFor();
  await page.locator('#events-body tr[data-type="created"]').waitFor();
  await page.locator('#events-body tr[data-type="active"]').waitFor();
  await shot(page, "network");
  await page.locator("#action-delete").click();
  await page.locator("#confirm").waitFor({ state: "visible" });
  if (!(await page.locator("#confirm-text").textContent()).includes("net-res")) fail("the confirmation names no network");
  await page.locator("#confirm-ok").click();
  const status = page.locator("main .status.error");
  await status.waitFor();
  const said = await status.textContent();
  if (!/Delete refused/.test(said) || !/subnets or ports/.test(said)) fail("the 409 shown: " + said);
});

step("a volume made through its form becomes available", async () => {
  const { page } = ctx;
  await create("volumes", "volume", async (p) => {
    await p.locator("#name").fill("vol-res");
    await p.locator("#size_gb").fill("1");
  });
  await row("volumes", "vol-res", "available").waitFor();
  await shot(page, "volumes");
});

step("the port, the subnet and the network deleted through the dialog leave their lists", async () => {
  const { page, cloud } = ctx;
  for (const [kind, name] of [["ports", "port-res"], ["subnets", "sub-res"], ["networks", "net-res"]]) {
    await page.locator("#nav-" + kind).click();
    await row(kind, name).locator("td:first-child a").click();
    await page.locator("#details[data-status]").waitFor();
    await page.locator("#action-delete").click();
    await page.locator("#confirm").waitFor({ state: "visible" });
    await page.locator("#confirm-ok").click();
    await page.locator('#details[data-status="GONE"]').waitFor({ state: "attached" });
    await page.locator("#nav-" + kind).click();
    await listed(kind);
    await row(kind, name).waitFor({ state: "detached" });
  }
  await cloud.api(ctx.member, "GET", "/v1/networks/" + ctx.net.id, undefined, 404);
  if (!(await page.evaluate(() => window.__notReloaded === true))) fail("the page reloaded");
  await page.locator("#signout").click();
});

step("a reader gets no New and no Delete on any of the pages", async () => {
  const { page, cloud } = ctx;
  await signIn(ctx, ctx.reader);
  for (const kind of KINDS) {
    await page.locator("#nav-" + kind).click();
    await listed(kind);
    await labelled(ctx.page);
    if (await page.locator("main .title a.button").count()) fail("a reader is offered New on " + kind);
  }
  await page.locator("#nav-volumes").click();
  await row("volumes", "vol-res").locator("td:first-child a").click();
  await page.locator('#details[data-status="available"]').waitFor();
  if (await page.locator("#action-delete").count()) fail("a reader is offered Delete");
  await page.goto(cloud.url + "/ui/#/networks/" + ctx.keep.id);
  await page.locator('#details[data-status="ACTIVE"]').waitFor();
  if (await page.locator("#action-delete").count()) fail("a reader is offered Delete on a network");
  await page.goto(cloud.url + "/ui/#/networks/new");
  await page.locator("text=A reader cannot create networks.").waitFor();
  if (await page.locator("#create-submit").count()) fail("a reader is given the form");
  await page.locator("#signout").click();
});

step("another project's member sees none of demo's networks, and no catalog writes", async () => {
  const { page, cloud } = ctx;
  await signIn(ctx, ctx.otherMember);
  await page.locator("#nav-networks").click();
  await page.locator("text=No networks yet.").waitFor();
  if (await page.locator("#networks-body tr").count()) fail("another project's network is listed");
  await page.goto(cloud.url + "/ui/#/networks/" + ctx.keep.id);
  await page.locator('#details[data-status="GONE"]').waitFor({ state: "attached" });
  await page.locator("text=This network does not exist").waitFor();
  await page.locator("#nav-flavors").click();
  await page.locator("#flavors-body tr").first().waitFor();
  if (await page.locator("#new-flavor").count()) fail("a member is offered New flavor");
  await page.locator("#nav-images").click();
  await page.locator("#images-body tr").first().waitFor();
  if (await page.locator("#new-image").count()) fail("a member is offered New image");
  await page.locator("#signout").click();
});

step("an admin sees every project's networks by project, makes an image and a flavor, deletes the flavor; a long list pages", async () => {
  const { page, cloud } = ctx;
  await signIn(ctx, cloud.adminToken);
  await page.locator("#nav-networks").click();
  await row("networks", "net-keep").waitFor(); // the list drawn, its headers with it
  const heads = await page.locator("#networks thead th").allTextContents();
  const cells = await row("networks", "net-keep").locator("td").allTextContents();
  if (cells[heads.indexOf("Project")] !== "demo") fail(`net-keep's project shown: ${heads} / ${cells}`);
  await create("flavors", "flavor", async (p) => {
    await p.locator("#name").fill("f.res");
    await p.locator("#vcpus").fill("1");
    await p.locator("#ram_mb").fill("64");
    await p.locator("#disk_gb").fill("1");
  });
  await create("images", "image", async (p) => {
    await p.locator("#name").fill("img-res");
    await p.locator("#os").fill("linux");
  });
  await row("images", "img-res", "queued").waitFor(); // no content yet: uploaded below
  await page.locator("#nav-flavors").click();
  await row("flavors", "f\\.res").locator("td:first-child a").click();
  await page.locator("#action-delete").click();
  await page.locator("#confirm-ok").click();
  await page.locator('#details[data-status="GONE"]').waitFor({ state: "attached" });
  for (let i = 0; i < 60; i++) {
    const name = "bulk-" + String(i).padStart(2, "0");
    await cloud.api(cloud.adminToken, "POST", "/v1/flavors", { name, vcpus: 1, ram_mb: 64, disk_gb: 1 });
  }
  const total = (await cloud.api(cloud.adminToken, "GET", "/v1/flavors?limit=1000")).flavors.length;
  await page.locator("#nav-flavors").click();
  await waitFor("50 rows and a next page", DEADLINE_MS, async () =>
    (await page.locator("#flavors-body tr").count()) === 50 && (await page.locator("#page-next").isEnabled()));
  await page.locator("#page-next").click();
  await waitFor("the rest on page 2", DEADLINE_MS, async () => (await page.locator("#flavors-body tr").count()) === total - 50);
});

step("the admin uploads an image's root filesystem on its page: active, its size and sha256; a file not gzip refused", async () => {
  const { page, cloud } = ctx;
  const admin = cloud.adminToken;
  // A small root filesystem as `tar -czf` makes it, and a file that is not one (in the data
  // directory, removed with it).
  const dir = fs.mkdtempSync(path.join(cloud.dir, "rootfs-"));
  fs.mkdirSync(path.join(dir, "root", "etc"), { recursive: true });
  fs.writeFileSync(path.join(dir, "root", "etc", "hostname"), "img-res\n");
  const tgz = path.join(dir, "rootfs.tar.gz");
  execFileSync("tar", ["-czf", tgz, "-C", path.join(dir, "root"), "."]);
  const bytes = fs.readFileSync(tgz);
  const sha = crypto.createHash("sha256").update(bytes).digest("hex");
  const text = path.join(dir, "rootfs.txt");
  fs.writeFileSync(text, "not an archive\n");

  const image = (await cloud.api(admin, "GET", "/v1/images?name=img-res")).images[0] || fail("no image img-res");
  await page.locator("#nav-images").click();
  await row("images", "img-res").locator("td:first-child a").click();
  await page.locator('#details[data-status="queued"]').waitFor();
  await page.locator("#image-file").waitFor();
  await labelled(ctx.page);
  await page.locator("#image-file").setInputFiles(tgz);
  await page.locator("#upload-submit").click();
  await page.locator('#details[data-status="active"]').waitFor();
  const up = (await cloud.api(admin, "GET", "/v1/images/" + image.id)).image;
  if (up.status !== "active" || up.size_bytes !== bytes.length || up.sha256 !== sha) {
    fail(`the API says ${JSON.stringify(up)}; the file: ${bytes.length} bytes, sha256 ${sha}`);
  }
  // The page shows them, and sent the file's sha256 for cogsd to check.
  const shown = await page.locator("#details dd").allTextContents();
  if (!shown.includes(String(bytes.length)) || !shown.includes(sha)) fail("the page shows: " + shown);
  if (!ctx.urls.some((u) => u.endsWith(`/v1/images/${image.id}/file?sha256=${sha}`))) fail("no upload with ?sha256= of the file");
  if (await page.locator("#upload-image").isVisible()) fail("an upload is still offered for an active image");

  // Not gzip: refused at the file field with the API's words; the image still queued, no content.
  const bad = (await cloud.api(admin, "POST", "/v1/images", { name: "img-bad" })).image;
  ctx.queuedImage = bad;
  await page.goto(cloud.url + "/ui/#/images/" + bad.id);
  await page.locator('#details[data-status="queued"]').waitFor();
  await page.locator("#image-file").setInputFiles(text);
  await page.locator("#upload-submit").click();
  await page.locator('#image-file[aria-invalid="true"]').waitFor();
  const note = await page.locator("#image-file-error").textContent();
  if (!/gzip/.test(note)) fail("the file field says: " + note);
  if (!/upload was refused/.test(await page.locator("#upload-error").textContent())) fail("no refusal above the button");
  await shot(page, "image-upload");
  const still = (await cloud.api(admin, "GET", "/v1/images/" + bad.id)).image;
  if (still.status !== "queued" || still.size_bytes || still.sha256) fail("a refused upload changed the image: " + JSON.stringify(still));
  await page.locator("#signout").click();
});

step("a member is offered no upload of a queued image", async () => {
  const { page, cloud } = ctx;
  await signIn(ctx, ctx.member);
  await page.goto(cloud.url + "/ui/#/images/" + ctx.queuedImage.id);
  await page.locator('#details[data-status="queued"]').waitFor();
  if (await page.locator("#image-file, #upload-submit, #upload-image").count()) fail("a member is offered the upload");
  await page.locator("#signout").click();
});

main(ctx, steps, ["--hosts", "1", "--boot-ms", "50"]);
