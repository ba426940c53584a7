// One server's page: its record, the actions a writer may take (each confirmed), its volumes (a
// writer attaches the project's available ones and detaches, confirmed), the timeline of one of its
// workflows (the latest by default; any other its events name), its events followed with ?after=,
// and its console output where the host's driver keeps one.
import { ApiError, api, query } from "./api.js";
import { badge, clear, every, h } from "./dom.js";
import { confirmAction } from "./confirm.js";
import { circuitWaits, renderTimeline } from "./timeline.js";
import { ATTACHABLE, attachVolume, detachVolume, eventLog, listTable, section, statusLine } from "./widgets.js";

const POLL_MS = 2000;
// Which action a status allows (docs/api.md, Servers).
const ACTIONS = [
  { name: "start", label: "Start", when: ["SHUTOFF"], text: "Start server {name}?" },
  { name: "stop", label: "Stop", when: ["ACTIVE"], text: "Stop server {name}? Its instance is shut down." },
  { name: "reboot", label: "Reboot", when: ["ACTIVE"], text: "Reboot server {name}?" },
  { name: "delete", label: "Delete", when: ["ACTIVE", "SHUTOFF", "ERROR"], text: "Delete server {name}? This cannot be undone." },
];

export function renderServer(main, session, id) {
  const path = "/servers/" + encodeURIComponent(id);
  let server = null;
  let chosen = ""; // the workflow the user picked; "" follows the server's latest
  const workflowsSeen = new Map(); // id -> first event type seen
  const waitEvents = []; // its step_waiting events (the timeline's circuit breaker waits), the last 200

  const title = h("h1", {}, "Server");
  const status = statusLine();
  const details = h("dl", { class: "details", id: "details" });
  const actions = h("div", { class: "actions", id: "actions", role: "group", "aria-label": "Actions" });
  const picker = h("select", { id: "workflow-pick" });
  const timelineBox = h("div", { id: "timeline-box" });
  const events = eventLog(path);
  const consoleOut = h("pre", { class: "console", id: "console", tabindex: "0" });
  const volumes = volumeSection(session, status, () => server, () => refresh());

  picker.addEventListener("change", () => {
    chosen = picker.value;
    refreshTimeline();
  });

  clear(main).append(
    h("p", {}, h("a", { href: "#/servers" }, "← Servers")),
    h("div", { class: "title" }, title, actions),
    status.el,
    section("details", "Details", details),
    volumes.el,
    section("timeline", "Workflow", h("label", { for: "workflow-pick" }, "Show workflow "), picker, timelineBox),
    events.el,
    section("console", "Console", consoleOut),
  );

  // Names for the ids a server record holds, read once per page (a name is shown beside its id).
  const names = new Map();
  const naming = (async () => {
    const lists = await Promise.allSettled([
      api("/flavors?limit=1000"),
      api("/images?limit=1000"),
      api("/networks?limit=1000"),
    ]);
    for (const l of lists) {
      if (l.status !== "fulfilled") continue;
      for (const items of Object.values(l.value)) {
        if (Array.isArray(items)) for (const it of items) names.set(it.id, it.name);
      }
    }
  })();
  const named = (id) => (names.has(id) ? names.get(id) + " (" + id + ")" : id);

  function drawDetails() {
    const s = server;
    title.textContent = "Server " + s.name;
    const rows = [
      ["Status", badge(s.status)],
      ["ID", s.id],
      ["Address", s.ip_address || ""],
      ["MAC", s.mac_address || ""],
      ["Flavor", named(s.flavor_id)],
      ["Image", named(s.image_id)],
      ["Network", named(s.network_id)],
      ["Availability zone", s.availability_zone || ""],
      session.admin ? ["Host", s.host || ""] : null,
      ["Created", s.created_at],
      ["Updated", s.updated_at],
      s.fault?.message ? ["Fault", s.fault.message] : null,
    ].filter(Boolean);
    details.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    details.dataset.status = s.status;
  }

  // The buttons are made once and only enabled or disabled by each poll, so focus stays on them.
  const buttons = session.writer
    ? ACTIONS.map((a) =>
        h(
          "button",
          { type: "button", id: "action-" + a.name, class: a.name === "delete" ? "danger" : undefined, onclick: () => act(a) },
          a.label,
        ),
      )
    : [];
  actions.replaceChildren(...buttons);

  function drawActions() {
    ACTIONS.forEach((a, i) => {
      if (buttons[i]) buttons[i].disabled = !a.when.includes(server.status);
    });
  }

  async function act(a) {
    const ok = await confirmAction(a.label + " server", a.text.replace("{name}", server.name), a.label);
    if (!ok) return;
    try {
      if (a.name === "delete") {
        await api(path, { method: "DELETE" });
      } else {
        await api(path + "/" + a.name, { method: "POST", body: {} });
      }
      status.show(a.label + " requested.");
      chosen = "";
      await refresh();
    } catch (e) {
      status.error(a.label + " refused: " + e.message);
    }
  }

  async function refreshTimeline() {
    const wf = chosen || server?.workflow_id;
    if (!wf) return;
    try {
      const answer = await api("/workflows/" + encodeURIComponent(wf));
      timelineBox.replaceChildren(renderTimeline(answer.workflow, Date.now(), circuitWaits(waitEvents, wf)));
    } catch (e) {
      timelineBox.replaceChildren(h("p", { class: "help" }, "No timeline for workflow " + wf + ": " + e.message));
    }
  }

  function drawPicker() {
    const latest = server?.workflow_id;
    if (latest && !workflowsSeen.has(latest)) workflowsSeen.set(latest, "latest");
    const want = [...workflowsSeen.entries()].reverse();
    if (picker.options.length === want.length) return;
    picker.replaceChildren(
      h("option", { value: "" }, "latest"),
      ...want.map(([wid, type]) => h("option", { value: wid, selected: wid === chosen }, type + " " + wid.slice(0, 8))),
    );
  }

  async function refreshEvents() {
    for (const ev of await events.follow()) {
      if (ev.workflow_id && !workflowsSeen.has(ev.workflow_id)) workflowsSeen.set(ev.workflow_id, ev.type);
      if (ev.type === "step_waiting" && waitEvents.push(ev) > 200) waitEvents.shift();
    }
  }

  async function refreshConsole() {
    try {
      const answer = await api(path + "/console" + query({ length: 200 }));
      consoleOut.textContent = answer.console?.output || "(empty)";
    } catch (e) {
      consoleOut.textContent = "No console output: " + e.message;
    }
  }

  let consoleTick = 0;
  async function refresh() {
    try {
      server = (await api(path)).server;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        status.el.textContent = "This server does not exist (any more).";
        buttons.forEach((b) => (b.disabled = true));
        details.dataset.status = "GONE";
        return;
      }
      status.error("Cannot read the server: " + e.message);
      return;
    }
    await naming;
    drawDetails();
    drawActions();
    try {
      await volumes.refresh();
    } catch (e) {
      status.error("Cannot list the volumes: " + e.message);
    }
    try {
      await refreshEvents();
    } catch (e) {
      status.el.textContent = "Cannot read the events: " + e.message;
    }
    drawPicker();
    await refreshTimeline();
    if (consoleTick++ % 5 === 0) await refreshConsole();
  }

  return every(POLL_MS, refresh);
}

// The server's Volumes: a table of those attached (each linked, its size and status; a writer's
// Detach, confirmed) and, for a writer, "Attach a volume": the project's available volumes.
// `current()` is the server as last read; `changed()` refreshes the page after a request.
function volumeSection(session, status, current, changed) {
  const body = h("tbody", { id: "server-volumes-body" });
  const heads = ["Name", "Size", "Status"].concat(session.writer ? ["Action"] : []);
  const table = listTable("server-volumes", "Volumes attached to this server", heads, body);
  const none = h("p", { class: "help", id: "server-volumes-none", hidden: true }, "No volume is attached.");
  const pick = h("select", { id: "attach-volume", name: "volume_id" });
  const attachButton = h("button", { type: "button", id: "action-attach", onclick: () => attach() }, "Attach");
  const attachRow = session.writer
    ? h("div", { class: "toolbar" }, h("label", { for: "attach-volume" }, "Attach a volume "), pick, attachButton)
    : null;
  let shown = "";

  async function attach() {
    const volume = pick.value;
    if (!volume) return;
    const name = pick.selectedOptions[0]?.textContent || volume;
    try {
      await attachVolume(volume, current().id);
      status.show("Attach of volume " + name + " requested.");
    } catch (e) {
      status.error("Attach refused: " + e.message);
    }
    await changed();
  }

  async function detach(v) {
    try {
      if (!(await detachVolume(v.id, v.name || v.id, current().name))) return;
      status.show("Detach of volume " + (v.name || v.id) + " requested.");
    } catch (e) {
      status.error("Detach refused: " + e.message);
    }
    await changed();
  }

  return {
    el: section("volumes", "Volumes", table, none, attachRow),
    // One list of volumes a poll (a 304 while none changed): redrawn only when what it shows changed.
    async refresh() {
      const s = current();
      const all = (await api("/volumes?limit=1000")).volumes || [];
      const ids = s.volume_ids || [];
      const attached = all.filter((v) => v.server_id === s.id || ids.includes(v.id));
      // An id the list did not bring (past its first 1000) still gets a row.
      for (const vid of ids) if (!attached.some((v) => v.id === vid)) attached.push({ id: vid });
      const free = all.filter((v) => v.status === "available" && !v.server_id && v.project_id === s.project_id);
      const idle = ATTACHABLE.includes(s.status);
      const text = JSON.stringify([attached, free, idle]);
      if (text === shown) return;
      shown = text;
      body.replaceChildren(
        ...attached.map((v) =>
          h(
            "tr",
            { "data-id": v.id, "data-status": v.status },
            h("td", {}, h("a", { href: "#/volumes/" + encodeURIComponent(v.id) }, v.name || v.id)),
            h("td", {}, v.size_gb ? v.size_gb + " GB" : ""),
            h("td", {}, v.status ? badge(v.status) : ""),
            session.writer
              ? h(
                  "td",
                  {},
                  h(
                    "button",
                    {
                      type: "button",
                      class: "detach",
                      "aria-label": "Detach " + (v.name || v.id),
                      disabled: !idle || v.status !== "in-use",
                      onclick: () => detach(v),
                    },
                    "Detach",
                  ),
                )
              : null,
          ),
        ),
      );
      table.hidden = attached.length === 0;
      none.hidden = attached.length > 0;
      const was = pick.value;
      pick.replaceChildren(
        ...(free.length ? [] : [h("option", { value: "" }, "(no available volume)")]),
        ...free.map((v) => h("option", { value: v.id, selected: v.id === was }, (v.name || v.id) + " (" + v.size_gb + " GB)")),
      );
      attachButton.disabled = !idle || free.length === 0;
    },
  };
}
