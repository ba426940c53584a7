// #/quotas (admin): each project's quotas, in use of limit, as bars (GET /v1/projects, 20 a page
// with limit/marker, and GET /v1/projects/{id}/quotas for each project of the page), polled every
// 5 s. A limit of -1 is unlimited.
import { api, query } from "./api.js";
import { clear, every, h } from "./dom.js";
import { bar } from "./ops_common.js";
import { listTable, pager, statusLine } from "./widgets.js";

const POLL_MS = 5000;
const PAGE_SIZE = 20;
// docs/api.md "Projects, tokens, quotas": the resources a quota answer names, in this order.
const RESOURCES = [
  ["servers", "Servers", ""],
  ["vcpus", "vCPUs", ""],
  ["ram_mb", "RAM", " MB"],
  ["volumes", "Volumes", ""],
  ["volume_gb", "Volume storage", " GB"],
  ["ports", "Ports", ""],
  ["networks", "Networks", ""],
  ["subnets", "Subnets", ""],
  ["server_groups", "Server groups", ""],
];

export function renderQuotas(main, session) {
  let last = "";
  const status = statusLine("quotas-status");
  const box = h("div", { id: "quotas", class: "quota-grid" });
  const pages = pager("projects", () => refresh());

  clear(main).append(
    h("div", { class: "title" }, h("h1", {}, "Quotas")),
    h(
      "p",
      { class: "help" },
      "In use of the limit, per project. Change a limit with cogs project quota set PROJECT --vcpus N " +
        "(or PUT /v1/projects/{id}/quotas).",
    ),
    status.el,
    box,
    pages.el,
  );

  async function refresh() {
    try {
      const answer = await api("/projects" + query({ limit: PAGE_SIZE, marker: pages.marker() }));
      const projects = answer.projects || [];
      pages.update(answer.next_marker);
      const quotas = await Promise.all(
        projects.map((p) =>
          api("/projects/" + encodeURIComponent(p.id) + "/quotas").then(
            (q) => q.quotas || {},
            (e) => ({ error: e.message }),
          ),
        ),
      );
      const text = JSON.stringify([projects, quotas]);
      if (text !== last) {
        last = text;
        draw(projects, quotas);
      }
      status.show(projects.length === 0 ? "No project." : "");
    } catch (e) {
      status.error("Cannot list projects: " + e.message);
    }
  }

  function draw(projects, quotas) {
    box.replaceChildren(
      ...projects.map((p, i) => {
        const q = quotas[i];
        const hid = "quota-h-" + p.id;
        const known = RESOURCES.filter(([k]) => q[k]);
        // Kinds declared in configuration have quotas too (named by their plural): shown after.
        const extra = Object.keys(q)
          .filter((k) => k !== "error" && !RESOURCES.some(([r]) => r === k))
          .map((k) => [k, k, ""]);
        return h(
          "section",
          { class: "quota", "aria-labelledby": hid, "data-project": p.name },
          h("h2", { id: hid }, p.name, h("span", { class: "sub mono" }, p.id)),
          q.error
            ? h("p", { class: "error" }, "Cannot read its quotas: " + q.error)
            : listTable(
                undefined,
                "Quotas of project " + p.name,
                ["Resource", "In use of limit"],
                h(
                  "tbody",
                  {},
                  known.concat(extra).map(([k, label, unit]) =>
                    h(
                      "tr",
                      { "data-resource": k },
                      h("th", { scope: "row" }, label),
                      h("td", {}, bar(label, q[k].in_use ?? 0, q[k].limit ?? -1, unit)),
                    ),
                  ),
                ),
              ),
        );
      }),
    );
  }

  return every(POLL_MS, refresh);
}
