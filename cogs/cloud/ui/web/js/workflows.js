// #/workflows (admin; #/workflows?state=failed and so on): the cloud's workflows, filtered by the
// API's ?state= and ?type=, 25 a page with limit/marker, polled every 2 s. Each row: type, the
// resource it works on, state, started, finished, steps done (from GET /v1/workflows/{id}, asked
// again only while the workflow runs: an ended one never changes), the reason. A running one may be
// cancelled, a failed one retried (POST /v1/workflows/{id}/retry: its unfinished compensations run
// again, once what stopped them is fixed), each confirmed.
import { api, query } from "./api.js";
import { badge, clear, clock, every, h } from "./dom.js";
import { confirmAction } from "./confirm.js";
import { select } from "./ops_common.js";
import { listTable, pager, statusLine } from "./widgets.js";

const POLL_MS = 2000;
const PAGE_SIZE = 25;
const STATES = [
  ["running", "In flight (running)"],
  ["compensating", "Rolling back (compensating)"],
  ["failed", "Failed"],
  ["succeeded", "Succeeded"],
  ["rolled_back", "Rolled back"],
  ["", "All states"],
];
const TYPES = [
  ["", "All types"],
  ["server.evacuate", "server.evacuate"],
  ["server.migrate", "server.migrate"],
  ["server.repair", "server.repair"],
  ["server.create", "server.create"],
  ["server.delete", "server.delete"],
];
const ENDED = new Set(["succeeded", "rolled_back", "failed"]);

// `params`: the hash's query (state, type).
export function renderWorkflows(main, session, params) {
  let state = params.get("state") ?? "running";
  let type = params.get("type") ?? "";
  if (!STATES.some(([v]) => v === state)) state = "running";
  let last = "";
  let notice = null; // {text, error}: the last action's outcome, kept until the filters change
  const steps = new Map(); // workflow id -> {done, total, state}, kept for ended workflows only

  const status = statusLine("workflows-status");
  const tbody = h("tbody", { id: "workflows-body" });
  const pages = pager("workflows", () => refresh());
  const choose = () => {
    // The filters live in the hash, so a filtered view can be linked and survives a reload.
    history.replaceState(null, "", "#/workflows" + query({ state: state || "all", type }));
    pages.reset();
    last = "";
    notice = null;
    refresh();
  };
  if (params.get("state") === "all") state = "";

  clear(main).append(
    h("div", { class: "title" }, h("h1", {}, "Workflows")),
    h(
      "div",
      { class: "toolbar" },
      select("State", "workflows-state", STATES, state, (v) => {
        state = v;
        choose();
      }),
      select("Type", "workflows-type", TYPES, type, (v) => {
        type = v;
        choose();
      }),
    ),
    h(
      "p",
      { class: "help" },
      "Oldest first. A failed workflow's compensation could not finish: fix what stopped it (its reason), then Retry.",
    ),
    status.el,
    listTable(
      "workflows",
      "Workflows",
      ["Type", "Resource", "State", "Started", "Finished", "Steps done", "Reason", "Actions"],
      tbody,
    ),
    pages.el,
  );

  async function stepsOf(w) {
    const kept = steps.get(w.id);
    if (kept) return kept;
    try {
      const full = (await api("/workflows/" + encodeURIComponent(w.id))).workflow;
      const all = full.steps || [];
      const s = { done: all.filter((x) => x.state === "succeeded" || x.state === "skipped").length, total: all.length };
      if (ENDED.has(full.state)) steps.set(w.id, s);
      if (steps.size > 500) steps.delete(steps.keys().next().value); // bounded: oldest first
      return s;
    } catch {
      return null; // pruned meanwhile: the row says nothing rather than fail the page
    }
  }

  async function refresh() {
    try {
      const answer = await api("/workflows" + query({ state, type, limit: PAGE_SIZE, marker: pages.marker() }));
      const list = answer.workflows || [];
      pages.update(answer.next_marker);
      const done = await Promise.all(list.map(stepsOf));
      const text = JSON.stringify([list, done]);
      if (text !== last) {
        last = text;
        draw(list, done);
      }
      if (notice) {
        (notice.error ? status.error : status.show)(notice.text);
      } else if (list.length === 0 && pages.page() === 0) {
        status.show("No workflow " + (STATES.find(([v]) => v === state)?.[1] || "").toLowerCase() + ".");
      } else {
        status.show("");
      }
    } catch (e) {
      status.error("Cannot list workflows: " + e.message);
    }
  }

  function resource(w) {
    if (!w.resource_id) return "";
    const label = `${w.resource_kind} ${w.resource_id}`;
    if (w.resource_kind === "server") {
      return h("a", { href: "#/servers/" + encodeURIComponent(w.resource_id), class: "mono" }, label);
    }
    return h("span", { class: "mono" }, label);
  }

  function draw(list, done) {
    const focused = document.activeElement?.id;
    tbody.replaceChildren(
      ...list.map((w, i) =>
        h(
          "tr",
          { "data-id": w.id, "data-type": w.type, "data-state": w.state, "data-resource": w.resource_id || "" },
          h("td", {}, w.type),
          h("td", {}, resource(w)),
          h("td", {}, badge(w.state)),
          h("td", { class: "time", title: w.created_at || "" }, clock(w.created_at)),
          h("td", { class: "time", title: w.finished_at || "" }, clock(w.finished_at)),
          h("td", { class: "num" }, done[i] ? `${done[i].done} / ${done[i].total}` : ""),
          h("td", { class: w.state === "failed" ? "fault" : "" }, w.reason || ""),
          h(
            "td",
            {},
            w.state === "running"
              ? h("button", { type: "button", class: "danger", id: "cancel-" + w.id, onclick: () => cancel(w) }, "Cancel")
              : null,
            w.state === "failed"
              ? h("button", { type: "button", id: "retry-" + w.id, onclick: () => retry(w) }, "Retry")
              : null,
          ),
        ),
      ),
    );
    if (focused) document.getElementById(focused)?.focus();
  }

  async function cancel(w) {
    const what = `${w.type} of ${w.resource_kind} ${w.resource_id}`;
    if (!(await confirmAction("Cancel workflow", `Cancel ${what}? Its done steps are compensated.`, "Cancel workflow"))) {
      return;
    }
    try {
      await api("/workflows/" + encodeURIComponent(w.id) + "/cancel", { method: "POST" });
      notice = { text: "Cancelling " + what + "." };
    } catch (e) {
      notice = { text: `Cancel refused: ${e.message} (${e.code})`, error: true };
    }
    refresh();
  }

  async function retry(w) {
    const what = `${w.type} of ${w.resource_kind} ${w.resource_id}`;
    const text = `Retry ${what}? Its unfinished compensations run again; do it once what stopped them is fixed.`;
    if (!(await confirmAction("Retry workflow", text, "Retry"))) return;
    try {
      await api("/workflows/" + encodeURIComponent(w.id) + "/retry", { method: "POST" });
      notice = { text: "Retry requested: " + what + "." };
      last = "";
    } catch (e) {
      notice = { text: `Retry refused: ${e.message} (${e.code})`, error: true };
    }
    refresh();
  }

  return every(POLL_MS, refresh);
}
