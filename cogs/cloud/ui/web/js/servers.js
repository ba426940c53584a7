// The servers page: a page of GET /v1/servers (limit/marker), refreshed every few seconds without
// reloading. Each poll is revalidated with the list's ETag (api.js: a 304 while nothing changed)
// and the table is redrawn only when the page's data changed (so focus and selection survive a
// poll that brings nothing new). A status and a name narrow the list: they are the API's own
// filters (?status=, ?name=, an exact match), kept in the hash (#/servers?status=ERROR&name=web-1)
// so a filtered view can be linked; changing one goes back to the first page.
import { api, query } from "./api.js";
import { badge, clear, every, h } from "./dom.js";
import { select } from "./ops_common.js";
import { listTable, pager, statusLine } from "./widgets.js";

export const PAGE_SIZE = 50;
export const POLL_MS = 2000;
// docs/api.md "Server statuses" (cogs/cloud/core/status.cc).
export const STATUSES = [
  "ACTIVE", "BUILD", "SHUTOFF", "ERROR", "STARTING", "STOPPING", "REBOOT", "DELETING", "REBUILD", "MIGRATING",
];

// `params`: the hash's query (status, name); anything else in it is ignored.
export function renderServers(main, session, params = new URLSearchParams()) {
  let last = "";
  let status = STATUSES.includes(params.get("status")) ? params.get("status") : "";
  let name = params.get("name") || "";
  let asked = 0; // the latest refresh started: an older one's answer (another page, other filters) is dropped

  const line = statusLine();
  const tbody = h("tbody", { id: "servers-body" });
  const headers = ["Name", "Status", "Address"].concat(session.admin ? ["Host"] : []).concat(["Fault"]);
  const caption = "Servers of " + (session.admin ? "every project" : "your project");
  const table = listTable("servers", caption, headers, tbody);
  const pages = pager("servers", () => refresh(), { prev: "page-prev", next: "page-next" });

  const nameInput = h("input", {
    id: "servers-name",
    type: "search",
    value: name,
    maxlength: "64",
    autocomplete: "off",
    spellcheck: "false",
    "aria-describedby": "servers-name-help",
  });
  const choose = () => {
    // The filters live in the hash (replaced, not pushed: no hashchange, no new history entry).
    history.replaceState(null, "", "#/servers" + query({ status, name }));
    pages.reset();
    last = "";
    refresh();
  };
  const applyName = () => {
    const v = nameInput.value.trim();
    if (v === name) return;
    name = v;
    choose();
  };
  nameInput.addEventListener("change", applyName);
  const nameForm = h(
    "form",
    { class: "filter", role: "search", "aria-label": "Servers by name", id: "servers-name-form" },
    h("label", { for: "servers-name" }, "Name "),
    nameInput,
    h("p", { class: "help", id: "servers-name-help" }, "The whole name, exactly (the API matches no part of a name). Enter applies it; empty: every name."),
  );
  nameForm.addEventListener("submit", (e) => {
    e.preventDefault();
    applyName();
  });

  clear(main).append(
    h(
      "div",
      { class: "title" },
      h("h1", {}, "Servers"),
      // What a reader may not do is not offered (the API would refuse it anyway).
      session.writer ? h("a", { class: "button", href: "#/servers/new", id: "new-server" }, "New server") : null,
    ),
    h(
      "div",
      { class: "toolbar" },
      select("Status", "servers-status", [["", "All statuses"]].concat(STATUSES.map((s) => [s, s])), status, (v) => {
        status = v;
        choose();
      }),
      nameForm,
    ),
    line.el,
    table,
    pages.el,
  );

  async function refresh() {
    const mine = ++asked;
    try {
      const answer = await api("/servers" + query({ status, name, limit: PAGE_SIZE, marker: pages.marker() }));
      if (mine !== asked) return;
      const servers = answer.servers || [];
      pages.update(answer.next_marker);
      const text = JSON.stringify(servers);
      if (text !== last) {
        last = text;
        draw(servers);
      }
      const filtered = status !== "" || name !== "";
      line.show(servers.length === 0 && pages.page() === 0 ? (filtered ? "No server matches." : "No servers yet.") : "");
    } catch (e) {
      if (mine === asked) line.error("Cannot list servers: " + e.message);
    }
  }

  function draw(servers) {
    tbody.replaceChildren(
      ...servers.map((s) =>
        h(
          "tr",
          { "data-id": s.id, "data-status": s.status },
          h("td", {}, h("a", { href: "#/servers/" + encodeURIComponent(s.id) }, s.name)),
          h("td", {}, badge(s.status)),
          h("td", { class: "mono" }, s.ip_address || ""),
          session.admin ? h("td", {}, s.host || "") : null,
          h("td", { class: "fault" }, s.fault?.message || ""),
        ),
      ),
    );
  }

  return every(POLL_MS, refresh);
}
