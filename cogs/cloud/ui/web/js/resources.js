// The pages of networks, subnets, ports, volumes, images and flavors, one generic module driven by
// KINDS (a spec per kind): a list (#/<kind>: limit/marker pages, polled, revalidated by api.js), a
// record's page (#/<kind>/<id>: its fields, Delete confirmed, its events followed with ?after=,
// a network's subnets and ports, a volume's server with Attach / Detach, a queued image's upload)
// and a create form (#/<kind>/new: the API's refusal at the field `details.field` names). What a
// role may not do is not offered: a reader gets no New, Delete, Attach or Detach, and the catalog's
// writes (flavors, images, an image's content) are offered to admins only.
import { ApiError, api, query, sha256Hex, upload } from "./api.js";
import { badge, clear, clock, every, h } from "./dom.js";
import { confirmAction } from "./confirm.js";
import {
  ATTACHABLE,
  attachVolume,
  detachVolume,
  eventLog,
  field,
  listTable,
  pager,
  refusal,
  section,
  statusLine,
} from "./widgets.js";

export const PAGE_SIZE = 50;
const POLL_MS = 2000;

// Cell and field formats. `net` names a network id with the names the page has read.
const mono = (v) => h("span", { class: "mono" }, v ?? "");
const gb = (v) => (v === undefined || v === null ? "" : v + " GB");
const net = (v, names) => (v ? h("a", { href: "#/networks/" + encodeURIComponent(v) }, names.get(v) || v) : "");
const server = (v, names) => (v ? h("a", { href: "#/servers/" + encodeURIComponent(v) }, names?.get(v) || v) : "");
const pools = (v) => (v || []).map((p) => p.start + "–" + p.end).join(", ");
const named = (v, names) => (v ? names.get(v) || v : "");

// kind: {one, title, columns: [[label, key, format?]], fields (the record's page, after name,
// status and id), form: [[name, label, type, required?, help?]], admin (its writes are an
// admin's), events (it has GET /v1/<kind>/<id>/events), busy (why a delete is refused)}.
export const KINDS = {
  networks: {
    one: "network",
    title: "Networks",
    columns: [["Status", "status", badge], ["Created", "created_at", clock]],
    fields: [["Project", "project_id", named], ["Created", "created_at"], ["Workflow", "workflow_id", mono]],
    form: [["name", "Name", "text", true]],
    events: true,
    busy: "it still has subnets or ports",
  },
  subnets: {
    one: "subnet",
    title: "Subnets",
    columns: [
      ["Network", "network_id", net],
      ["CIDR", "cidr", mono],
      ["Gateway", "gateway_ip", mono],
      ["Status", "status", badge],
    ],
    fields: [
      ["Network", "network_id", net],
      ["CIDR", "cidr", mono],
      ["Gateway", "gateway_ip", mono],
      ["Allocation pools", "allocation_pools", pools],
      ["Project", "project_id", named],
      ["Created", "created_at"],
    ],
    form: [
      ["network_id", "Network", "network", true],
      ["cidr", "CIDR", "text", true, "An IPv4 block, prefix 8–30: 10.0.0.0/24"],
      ["gateway_ip", "Gateway (optional)", "text", false, "Default: the block's first host address"],
      ["name", "Name (optional)", "text", false],
    ],
    events: true,
    busy: "ports still use it",
  },
  ports: {
    one: "port",
    title: "Ports",
    columns: [
      ["Network", "network_id", net],
      ["Address", "fixed_ip", mono],
      ["MAC", "mac_address", mono],
      ["Status", "status", badge],
    ],
    fields: [
      ["Network", "network_id", net],
      ["Subnet", "subnet_id", (v) => (v ? h("a", { href: "#/subnets/" + encodeURIComponent(v) }, v) : "")],
      ["Address", "fixed_ip", mono],
      ["MAC", "mac_address", mono],
      ["Server", "device_id", server],
      ["Project", "project_id", named],
      ["Created", "created_at"],
    ],
    form: [
      ["network_id", "Network", "network", true],
      ["name", "Name (optional)", "text", false],
      ["fixed_ip", "Address (optional)", "text", false, "An address in a subnet's allocation pools; default: the next free one"],
    ],
    events: true,
    busy: "it is attached to a server",
  },
  volumes: {
    one: "volume",
    title: "Volumes",
    columns: [["Size", "size_gb", gb], ["Status", "status", badge], ["Server", "server_id", server]],
    fields: [
      ["Size", "size_gb", gb],
      ["Server", "server_id", server],
      ["Project", "project_id", named],
      ["Created", "created_at"],
    ],
    form: [["name", "Name", "text", true], ["size_gb", "Size (GB)", "number", true]],
    events: true,
    busy: "it is in use by a server",
  },
  images: {
    one: "image",
    title: "Images",
    columns: [
      ["OS", "os"],
      ["Status", "status", badge],
      ["Size", "size_bytes", (v) => (v ? Math.ceil(v / 1048576) + " MiB" : "")],
    ],
    fields: [["OS", "os"], ["Minimum disk", "min_disk_gb", gb], ["Size (bytes)", "size_bytes"], ["SHA-256", "sha256", mono]],
    // Metadata: the image is `queued` until its content is uploaded (its page's upload, an
    // admin's; `cogs image create NAME --file rootfs.tar.gz`; or PUT /v1/images/<id>/file).
    form: [
      ["name", "Name", "text", true],
      ["os", "OS (optional)", "text", false],
      ["min_disk_gb", "Minimum disk (GB, optional)", "number", false],
    ],
    admin: true,
    busy: "its upload is in flight",
    note: "This image is queued: it has no content yet (an admin uploads it once, on this page or with cogs image create NAME --file rootfs.tar.gz).",
  },
  flavors: {
    one: "flavor",
    title: "Flavors",
    columns: [["vCPUs", "vcpus"], ["RAM", "ram_mb", (v) => v + " MB"], ["Disk", "disk_gb", gb]],
    fields: [["vCPUs", "vcpus"], ["RAM", "ram_mb", (v) => v + " MB"], ["Disk", "disk_gb", gb]],
    form: [
      ["name", "Name", "text", true],
      ["vcpus", "vCPUs", "number", true],
      ["ram_mb", "RAM (MB)", "number", true],
      ["disk_gb", "Disk (GB)", "number", true],
    ],
    admin: true,
  },
};

// What app.js asks for #/<kind>[/new|/<id>]: a page's render(main), or null for another route.
export function resourcePage(parts, session) {
  const kind = KINDS[parts[0]] ? parts[0] : "";
  if (!kind) return null;
  if (parts[1] === "new") return (main) => renderCreate(main, session, kind);
  if (parts[1]) return (main) => renderRecord(main, session, kind, decodeURIComponent(parts[1]));
  return (main) => renderList(main, session, kind);
}

// May this session create and delete `kind`? (The API decides; this only leaves out what it would refuse.)
function mayWrite(session, kind) {
  return session.writer && (!KINDS[kind].admin || session.admin);
}

// An admin sees every project's records: their lists get a Project column.
const byProject = (session, kind) => session.admin && !KINDS[kind].admin;
function columns(session, kind) {
  return KINDS[kind].columns.concat(byProject(session, kind) ? [["Project", "project_id", named]] : []);
}

// Names by id for what a page shows as ids: networks (the caller's; an admin's: all) where `kind`
// names one, projects for an admin. Read at each poll (a 304 while nothing changed).
async function namesFor(session, kind, networks = KINDS[kind].columns.some((c) => c[2] === net)) {
  const names = new Map();
  const [nets, projects] = await Promise.all([
    networks ? api("/networks?limit=1000") : {},
    byProject(session, kind) ? api("/projects?limit=1000") : {},
  ]);
  for (const n of [...(nets.networks || []), ...(projects.projects || [])]) names.set(n.id, n.name);
  return names;
}

let flash = ""; // what the create form says on the list it returns to

// A table of `items` with the kind's columns after its name; rows carry data-id and data-status.
function table(session, kind, id, caption, items, names) {
  const cols = columns(session, kind);
  const body = h("tbody", { id: id + "-body" });
  const t = listTable(id, caption, ["Name", ...cols.map((c) => c[0])], body);
  let shown = "";
  // Redrawn only when the data changed, so focus survives a poll that brings nothing new.
  const draw = (list, names) => {
    const text = JSON.stringify([list, [...names]]);
    if (text === shown) return;
    shown = text;
    body.replaceChildren(
      ...list.map((it) =>
        h(
          "tr",
          { "data-id": it.id, "data-status": it.status },
          h("td", {}, h("a", { href: "#/" + kind + "/" + encodeURIComponent(it.id) }, it.name || it.id)),
          cols.map(([, key, fmt]) => h("td", {}, fmt ? fmt(it[key], names) : String(it[key] ?? ""))),
        ),
      ),
    );
  };
  draw(items, names);
  return { table: t, draw };
}

function renderList(main, session, kind) {
  const spec = KINDS[kind];
  const status = statusLine();
  const caption = spec.title + " of " + (session.admin ? "every project" : "your project");
  const { table: list, draw } = table(session, kind, kind, caption, [], new Map());
  const pages = pager(kind, () => refresh(), { prev: "page-prev", next: "page-next" });
  const notice = h("p", { class: "notice", id: "flash", hidden: !flash }, flash);
  flash = "";
  clear(main).append(
    h(
      "div",
      { class: "title" },
      h("h1", {}, spec.title),
      mayWrite(session, kind)
        ? h("a", { class: "button", href: "#/" + kind + "/new", id: "new-" + spec.one }, "New " + spec.one)
        : null,
    ),
    notice,
    status.el,
    list,
    pages.el,
  );

  async function refresh() {
    try {
      const [answer, names] = await Promise.all([
        api("/" + kind + query({ limit: PAGE_SIZE, marker: pages.marker() })),
        namesFor(session, kind),
      ]);
      const items = answer[kind] || [];
      pages.update(answer.next_marker);
      draw(items, names);
      status.show(items.length === 0 && pages.page() === 0 ? "No " + kind + " yet." : "");
    } catch (e) {
      status.error("Cannot list " + kind + ": " + e.message);
    }
  }
  return every(POLL_MS, refresh);
}

function renderRecord(main, session, kind, id) {
  const spec = KINDS[kind];
  const path = "/" + kind + "/" + encodeURIComponent(id);
  let record = null;
  let gone = false;
  const title = h("h1", {}, spec.title.slice(0, -1));
  const status = statusLine();
  const details = h("dl", { class: "details", id: "details" });
  const remove = mayWrite(session, kind)
    ? h("button", { type: "button", id: "action-delete", class: "danger", onclick: () => del() }, "Delete")
    : null;
  const events = spec.events ? eventLog(path) : null;
  const sections = [section("details", "Details", details)];
  // A volume's Attach (to one of its project's idle servers) or Detach, a writer's.
  const volume = kind === "volumes" && session.writer ? volumeActions(path, status, () => record, () => refresh()) : null;
  // A queued image's upload, an admin's.
  const uploader = kind === "images" && session.admin ? imageUpload(path, status, () => refresh()) : null;
  if (uploader) sections.push(uploader.el);
  // A network's subnets and ports (?network_id=), each a small table like the lists.
  const children = (kind === "networks" ? ["subnets", "ports"] : []).map((k) => ({
    k,
    ...table(session, k, "net-" + k, KINDS[k].title + " of this network", [], new Map()),
  }));
  for (const p of children) {
    sections.push(section(p.k, KINDS[p.k].title, p.table));
  }
  if (events) sections.push(events.el);
  clear(main).append(
    h("p", {}, h("a", { href: "#/" + kind }, "← " + spec.title)),
    h(
      "div",
      { class: "title" },
      title,
      h("div", { class: "actions", id: "actions", role: "group", "aria-label": "Actions" }, volume?.el, remove),
    ),
    status.el,
    ...sections,
  );

  async function del() {
    const name = record?.name || id;
    const text = "Delete " + spec.one + " " + name + "? This cannot be undone.";
    const ok = await confirmAction("Delete " + spec.one, text, "Delete");
    if (!ok) return;
    try {
      await api(path, { method: "DELETE" });
      status.show("Delete requested.");
      await refresh();
    } catch (e) {
      // A 409 is the API saying why not now (in use); say it as it says it.
      const why = e instanceof ApiError && e.status === 409 && spec.busy ? " (" + spec.busy + ")" : "";
      status.error("Delete refused: " + e.message + why);
      status.el.setAttribute("role", "alert");
    }
  }

  let lastText = "";
  async function refresh() {
    if (gone) return;
    let names = new Map();
    let servers = [];
    try {
      record = (await api(path))[spec.one];
      names = await namesFor(session, kind, kind === "networks" || spec.fields.some((f) => f[2] === net));
      if (kind === "volumes") {
        // A volume's server by name, and those a writer may attach it to.
        servers = (await api("/servers?limit=1000")).servers || [];
        for (const s of servers) names.set(s.id, s.name);
      }
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        gone = true;
        status.show("This " + spec.one + " does not exist (any more).");
        if (remove) remove.disabled = true;
        volume?.gone();
        uploader?.gone();
        details.dataset.status = "GONE";
        return;
      }
      status.error("Cannot read the " + spec.one + ": " + e.message);
      return;
    }
    const text = JSON.stringify([record, [...names]]);
    if (text !== lastText) {
      lastText = text;
      title.textContent = spec.title.slice(0, -1) + " " + (record.name || record.id);
      const rows = [
        record.status !== undefined ? ["Status", badge(record.status)] : null,
        ["ID", mono(record.id)],
        ...spec.fields.map(([label, key, fmt]) => [label, fmt ? fmt(record[key], names) : String(record[key] ?? "")]),
        record.fault?.message ? ["Fault", record.fault.message] : null,
      ].filter(Boolean);
      details.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
      details.dataset.status = record.status ?? "";
      if (remove) remove.disabled = /^deleting$/i.test(record.status || ""); // asked already
      if (spec.note && record.status === "queued") status.show(spec.note);
    }
    volume?.draw(servers);
    uploader?.draw(record);
    for (const p of children) {
      try {
        p.draw((await api("/" + p.k + query({ network_id: id, limit: 1000 })))[p.k] || [], names);
      } catch (e) {
        status.error("Cannot list its " + p.k + ": " + e.message);
      }
    }
    if (events) {
      try {
        await events.follow();
      } catch (e) {
        status.error("Cannot read the events: " + e.message);
      }
    }
  }
  return every(POLL_MS, refresh);
}

function renderCreate(main, session, kind) {
  const spec = KINDS[kind];
  const status = statusLine();
  const form = h("form", { class: "create", id: "create-" + spec.one, "aria-labelledby": "create-title", novalidate: true });
  clear(main).append(
    h("p", {}, h("a", { href: "#/" + kind }, "← " + spec.title)),
    h("h1", { id: "create-title" }, "New " + spec.one),
    status.el,
    form,
  );
  if (!mayWrite(session, kind)) {
    status.show(spec.admin ? "Only an admin may create " + kind + "." : "A reader cannot create " + kind + ".");
    return () => {};
  }
  let stopped = false;
  (async () => {
    let networks = [];
    if (spec.form.some((f) => f[2] === "network")) {
      status.show("Loading networks…");
      try {
        networks = (await api("/networks?limit=1000&status=ACTIVE")).networks || [];
      } catch (e) {
        status.error("Cannot load the networks: " + e.message);
        return;
      }
      status.show(networks.length ? "" : "There is no ACTIVE network yet: create one first.");
    }
    if (!stopped) draw(networks);
  })();

  function draw(networks) {
    const controls = spec.form.map(([name, label, type, required, help]) => {
      const describedBy = [help ? name + "-help" : "", name + "-error"].filter(Boolean).join(" ");
      const attrs = { id: name, name, required, "aria-describedby": describedBy };
      const control =
        type === "network"
          ? h("select", attrs, networks.map((n) => h("option", { value: n.id }, n.name)))
          : h("input", { ...attrs, type, min: type === "number" ? "0" : undefined, autocomplete: "off" });
      return { name, type, control, row: field(name, label, control, help) };
    });
    const submit = h("button", { type: "submit", id: "create-submit" }, "Create " + spec.one);
    const error = refusal(form);
    form.replaceChildren(...controls.map((c) => c.row), error.el, h("div", { class: "buttons" }, submit));
    controls[0].control.focus();

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.clear();
      const body = {};
      for (const c of controls) {
        const v = c.control.value.trim();
        // Left empty: not sent (the API names a missing required field, or takes its default).
        if (v !== "") body[c.name] = c.type === "number" ? Number(v) : v;
      }
      submit.disabled = true;
      try {
        const made = (await api("/" + kind, { method: "POST", body }))[spec.one];
        const done = made.workflow_id ? " requested: its status follows below." : " created.";
        flash = spec.title.slice(0, -1) + " " + (made.name || made.id) + done;
        location.hash = "#/" + kind;
      } catch (err) {
        error.show("The " + spec.one + " was not created: " + err.message, err);
      } finally {
        submit.disabled = false;
      }
    });
  }

  return () => {
    stopped = true;
  };
}

// A volume's Attach (a picker of its project's ACTIVE and SHUTOFF servers) while it is available,
// or Detach (confirmed) while it is in use; made once, shown and hidden by each poll (draw), so
// focus stays. The API's refusal (a 409: not now) is said in the page's status line as it says it.
function volumeActions(path, status, current, changed) {
  const pick = h("select", { id: "attach-server", name: "server_id" });
  const attachButton = h("button", { type: "button", id: "action-attach", onclick: () => attach() }, "Attach");
  const attach_ = h("span", { class: "attach", hidden: true }, h("label", { for: "attach-server" }, "Attach to server "), pick, attachButton);
  const detachButton = h("button", { type: "button", id: "action-detach", hidden: true, onclick: () => detach() }, "Detach");
  let servers = [];
  let shown = "";

  async function attach() {
    const v = current();
    if (!pick.value) return;
    try {
      await attachVolume(v.id, pick.value);
      status.show("Attach requested.");
    } catch (e) {
      status.error("Attach refused: " + e.message);
    }
    await changed();
  }

  async function detach() {
    const v = current();
    const to = servers.find((s) => s.id === v.server_id);
    try {
      if (!(await detachVolume(v.id, v.name || v.id, to?.name || v.server_id))) return;
      status.show("Detach requested.");
    } catch (e) {
      status.error("Detach refused: " + e.message);
    }
    await changed();
  }

  return {
    el: h("span", { class: "volume-actions" }, attach_, detachButton),
    draw(all) {
      const v = current();
      servers = all;
      attach_.hidden = v.status !== "available";
      detachButton.hidden = v.status !== "in-use";
      const idle = all.filter((s) => s.project_id === v.project_id && ATTACHABLE.includes(s.status));
      const text = JSON.stringify(idle.map((s) => [s.id, s.name]));
      if (text !== shown) {
        shown = text;
        const was = pick.value;
        pick.replaceChildren(
          ...(idle.length ? [] : [h("option", { value: "" }, "(no ACTIVE or SHUTOFF server)")]),
          ...idle.map((s) => h("option", { value: s.id, selected: s.id === was }, s.name)),
        );
      }
      attachButton.disabled = idle.length === 0;
    },
    gone() {
      attach_.hidden = true;
      detachButton.hidden = true;
    },
  };
}

// Above this an image's sha256 is not computed in the page (crypto.subtle reads the file whole
// into memory); cogsd still computes and keeps it.
const HASH_MAX_BYTES = 256 * 1024 * 1024;

// An admin's upload of a queued image's root filesystem (PUT /v1/images/<id>/file, api.js upload():
// its progress shown; ?sha256= of the file when at most HASH_MAX_BYTES, so that a corrupted transfer
// is refused): shown while the image is queued (and while its upload runs); the API's refusal at
// the file field (400 naming `file`) or in its error line (413, 409, a sha256 mismatch).
function imageUpload(path, status, changed) {
  const input = h("input", {
    type: "file",
    id: "image-file",
    name: "file",
    accept: ".tar.gz,.tgz,application/gzip",
    "aria-describedby": "image-file-help image-file-error",
  });
  const submit = h("button", { type: "submit", id: "upload-submit" }, "Upload");
  const progress = statusLine("upload-status");
  const form = h("form", { class: "create", id: "upload-image", "aria-labelledby": "h-upload", novalidate: true });
  const error = refusal(form, "upload-error");
  const help = "A gzip-compressed tar archive of the root filesystem. It is uploaded once: the image is then active and immutable.";
  form.append(field("image-file", "Root filesystem (.tar.gz)", input, help), progress.el, error.el, h("div", { class: "buttons" }, submit));
  const el = section("upload", "Upload its content", form);
  el.hidden = true;
  let busy = false;
  const idle = (yes) => {
    busy = !yes;
    submit.disabled = !yes;
    input.disabled = !yes;
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.clear();
    const file = input.files[0];
    if (!file) {
      error.show("Choose the file to upload.", { message: "Choose a .tar.gz file.", details: { field: "file" } });
      return;
    }
    idle(false);
    try {
      let sha = "";
      if (file.size <= HASH_MAX_BYTES) {
        progress.show("Computing its SHA-256…");
        sha = await sha256Hex(file);
      }
      progress.show("Uploading… 0%");
      const answer = await upload(path + "/file" + query({ sha256: sha }), file, (sent, total) => {
        const pct = Math.floor((100 * sent) / total);
        progress.show(pct < 100 ? "Uploading… " + pct + "%" : "Uploaded; cogsd is checking it…");
      });
      progress.show("");
      const image = answer?.image || {};
      status.show("Uploaded: " + image.size_bytes + " bytes, SHA-256 " + image.sha256 + ".");
      idle(true);
    } catch (err) {
      progress.show("");
      idle(true);
      error.show("The upload was refused: " + err.message, err);
    }
    await changed();
  });

  return {
    el,
    draw(record) {
      el.hidden = !(record.status === "queued" || busy);
    },
    gone() {
      el.hidden = true;
    },
  };
}
