// One server's page: its record, the actions a writer may take (each confirmed), the timeline of
// one of its workflows (the latest by default; any other its events name), its events followed
// with ?after=, and its console output where the host's driver keeps one.
import { ApiError, api, query } from "./api.js";
import { badge, clear, every, h } from "./dom.js";
import { confirmAction } from "./confirm.js";
import { renderTimeline } from "./timeline.js";
import { eventLog, section, statusLine } from "./widgets.js";

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

  const title = h("h1", {}, "Server");
  const status = statusLine();
  const details = h("dl", { class: "details", id: "details" });
  const actions = h("div", { class: "actions", id: "actions", role: "group", "aria-label": "Actions" });
  const picker = h("select", { id: "workflow-pick" });
  const timelineBox = h("div", { id: "timeline-box" });
  const events = eventLog(path);
  const consoleOut = h("pre", { class: "console", id: "console", tabindex: "0" });

  picker.addEventListener("change", () => {
    chosen = picker.value;
    refreshTimeline();
  });

  clear(main).append(
    h("p", {}, h("a", { href: "#/servers" }, "← Servers")),
    h("div", { class: "title" }, title, actions),
    status.el,
    section("details", "Details", details),
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
      ["Volumes", (s.volume_ids || []).join(", ") || "none"],
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
      timelineBox.replaceChildren(renderTimeline(answer.workflow));
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
