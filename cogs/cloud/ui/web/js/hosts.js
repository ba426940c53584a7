// #/hosts (admin): every host with its lease state (up / suspect / down), whether it takes new
// servers (enabled, disabled or draining, with the reason), its capacity used of total (vCPU, RAM,
// disk) and its server count; Drain / Disable / Enable, each confirmed. GET /v1/hosts answers every
// host at once (no pages): the page polls it every 2 s, counts the states, and draws one page of
// 50 rows, replacing only the rows whose host changed (so 1,000 hosts cost a diff, not a redraw,
// and focus stays on a button whose row did not change).
import { api } from "./api.js";
import { badge, clear, every, h } from "./dom.js";
import { confirmAction } from "./confirm.js";
import { ago, bar, select } from "./ops_common.js";
import { listTable, pager, statusLine } from "./widgets.js";

export const POLL_MS = 2000;
const PAGE_SIZE = 50;
const FILTERS = [
  ["", "All hosts"],
  ["up", "Up"],
  ["suspect", "Suspect"],
  ["down", "Down"],
  ["disabled", "Disabled or draining"],
];
// docs/api.md "Hosts": drain disables and migrates every server off; disable only stops placement.
const ACTIONS = [
  {
    name: "drain",
    label: "Drain",
    when: (x) => x.enabled && !x.draining,
    text: "Drain host {name}? It takes no new servers and every server on it is migrated elsewhere.",
  },
  { name: "disable", label: "Disable", when: (x) => x.enabled, text: "Disable host {name}? It takes no new servers." },
  { name: "enable", label: "Enable", when: (x) => !x.enabled, text: "Enable host {name}? It takes new servers again." },
];

function schedulable(x) {
  if (x.draining) return "draining" + (x.disabled_reason ? ": " + x.disabled_reason : "");
  if (!x.enabled) return "disabled" + (x.disabled_reason ? ": " + x.disabled_reason : "");
  return "enabled";
}

export function renderHosts(main, session) {
  let hosts = [];
  let filter = "";
  const rows = new Map(); // name -> {text, tr}: the row drawn and the host it was drawn from
  let busy = false; // one action at a time: confirmed, then sent

  const status = statusLine("hosts-status");
  const summary = h("p", { class: "summary", id: "hosts-summary", "aria-live": "polite" });
  const reason = h("input", { id: "host-reason", type: "text", maxlength: "255", autocomplete: "off" });
  const tbody = h("tbody", { id: "hosts-body" });
  const pages = pager("hosts", () => draw(), { prev: "hosts-prev", next: "hosts-next" });

  clear(main).append(
    h("div", { class: "title" }, h("h1", {}, "Hosts"), h("a", { href: "#/charts" }, "Charts")),
    summary,
    h(
      "div",
      { class: "toolbar" },
      select("Show", "hosts-filter", FILTERS, filter, (v) => {
        filter = v;
        pages.reset();
        draw();
      }),
      h(
        "span",
        { class: "field-inline" },
        h("label", { for: "host-reason" }, "Reason for drain or disable "),
        reason,
      ),
    ),
    status.el,
    listTable(
      "hosts",
      "Compute hosts, their state and capacity",
      ["Host", "State", "Placement", "vCPU", "RAM", "Disk", "Servers", "Actions"],
      tbody,
    ),
    pages.el,
  );

  function shown() {
    return hosts.filter((x) => {
      if (!filter) return true;
      if (filter === "disabled") return !x.enabled || x.draining;
      return x.state === filter;
    });
  }

  function draw() {
    const slice = pages.cut(shown(), PAGE_SIZE);
    const focused = document.activeElement?.id;
    const wanted = [];
    const keep = new Set();
    for (const x of slice) {
      // A renewal (every second or so per host) changes last_renewal_at: it is shown in place, as
      // "how long ago", rather than by a new row.
      const text = JSON.stringify({ ...x, last_renewal_at: "" });
      let r = rows.get(x.name);
      if (!r || r.text !== text) {
        r = { text, tr: row(x) };
        rows.set(x.name, r);
      }
      const since = r.tr.querySelector(".since");
      since.textContent = "changed " + ago(x.state_since);
      since.title = "last lease renewal " + (x.last_renewal_at ? ago(x.last_renewal_at) : "never");
      keep.add(x.name);
      wanted.push(r.tr);
    }
    for (const name of rows.keys()) if (!keep.has(name)) rows.delete(name);
    // Move only what is out of place: an unchanged row keeps its node (and the focus in it).
    wanted.forEach((tr, i) => {
      if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
    });
    while (tbody.children.length > wanted.length) tbody.lastElementChild.remove();
    if (focused && document.activeElement?.id !== focused) document.getElementById(focused)?.focus();
  }

  function row(x) {
    const gb = (mb) => Math.round((mb / 1024) * 10) / 10;
    const used = x.used || {};
    return h(
      "tr",
      {
        "data-name": x.name,
        "data-state": x.state,
        "data-enabled": String(x.enabled),
        "data-draining": String(x.draining),
        "data-servers": x.servers,
      },
      h("th", { scope: "row" }, x.name, h("span", { class: "sub" }, x.availability_zone || "")),
      h(
        "td",
        {},
        badge(x.state),
        h("span", { class: "sub since" }),
      ),
      h("td", { class: x.enabled && !x.draining ? "" : "placement-off" }, schedulable(x)),
      h("td", {}, bar("vCPU", used.vcpus ?? 0, x.vcpus)),
      h("td", {}, bar("RAM", gb(used.ram_mb ?? 0), gb(x.ram_mb), " GiB")),
      h("td", {}, bar("Disk", used.disk_gb ?? 0, x.disk_gb, " GB")),
      h("td", { class: "num" }, String(x.servers ?? 0)),
      h(
        "td",
        {},
        h(
          "div",
          { class: "row-actions", role: "group", "aria-label": "Actions on " + x.name },
          ACTIONS.filter((a) => a.when(x)).map((a) =>
            h(
              "button",
              {
                type: "button",
                id: `${a.name}-${x.name}`,
                class: a.name === "enable" ? "" : "danger",
                onclick: () => act(a, x),
              },
              a.label,
            ),
          ),
        ),
      ),
    );
  }

  async function act(a, x) {
    if (busy) return;
    busy = true;
    try {
      if (!(await confirmAction(a.label + " " + x.name, a.text.replace("{name}", x.name), a.label))) return;
      const body = a.name === "enable" || !reason.value ? {} : { reason: reason.value };
      await api(`/hosts/${encodeURIComponent(x.name)}/${a.name}`, { method: "POST", body });
      status.show(`${a.label}: ${x.name} done.`);
      await refresh();
    } catch (e) {
      status.error(`${a.label} ${x.name} refused: ${e.message}` + (e.code ? ` (${e.code})` : ""));
    } finally {
      busy = false;
    }
  }

  async function refresh() {
    try {
      const answer = await api("/hosts");
      hosts = (answer.hosts || []).slice().sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
      const count = { up: 0, suspect: 0, down: 0, off: 0 };
      for (const x of hosts) {
        count[x.state] = (count[x.state] || 0) + 1;
        if (!x.enabled || x.draining) count.off += 1;
      }
      summary.textContent =
        `${hosts.length} hosts: ${count.up} up, ${count.suspect} suspect, ${count.down} down; ` +
        `${count.off} disabled or draining.`;
      summary.dataset.up = count.up;
      summary.dataset.suspect = count.suspect;
      summary.dataset.down = count.down;
      summary.dataset.polls = Number(summary.dataset.polls || 0) + 1; // answers drawn (tests wait on it)
      draw();
      const said = status.el.textContent;
      if (hosts.length === 0) {
        status.show("No host has registered yet.");
      } else if (said.startsWith("Cannot list") || said.startsWith("No host")) {
        status.show("");
      }
    } catch (e) {
      status.error("Cannot list hosts: " + e.message);
    }
  }

  return every(POLL_MS, refresh);
}
