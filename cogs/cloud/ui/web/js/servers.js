// The servers page: a page of GET /v1/servers (limit/marker), refreshed every few seconds without
// reloading. Each poll is revalidated with the list's ETag (api.js: a 304 while nothing changed)
// and the table is redrawn only when the page's data changed (so focus and selection survive a
// poll that brings nothing new).
import { api, query } from "./api.js";
import { badge, clear, every, h } from "./dom.js";
import { listTable, pager, statusLine } from "./widgets.js";

export const PAGE_SIZE = 50;
export const POLL_MS = 2000;

export function renderServers(main, session) {
  let last = "";

  const status = statusLine();
  const tbody = h("tbody", { id: "servers-body" });
  const headers = ["Name", "Status", "Address"].concat(session.admin ? ["Host"] : []).concat(["Fault"]);
  const caption = "Servers of " + (session.admin ? "every project" : "your project");
  const table = listTable("servers", caption, headers, tbody);
  const pages = pager("servers", () => refresh(), { prev: "page-prev", next: "page-next" });

  clear(main).append(
    h(
      "div",
      { class: "title" },
      h("h1", {}, "Servers"),
      // What a reader may not do is not offered (the API would refuse it anyway).
      session.writer ? h("a", { class: "button", href: "#/servers/new", id: "new-server" }, "New server") : null,
    ),
    status.el,
    table,
    pages.el,
  );

  async function refresh() {
    try {
      const answer = await api("/servers" + query({ limit: PAGE_SIZE, marker: pages.marker() }));
      const servers = answer.servers || [];
      pages.update(answer.next_marker);
      const text = JSON.stringify(servers);
      if (text !== last) {
        last = text;
        draw(servers);
      }
      status.show(servers.length === 0 && pages.page() === 0 ? "No servers yet." : "");
    } catch (e) {
      status.error("Cannot list servers: " + e.message);
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
