// #/heal (admin): what the cloud repaired by itself (docs/healing.md), newest first, and the
// evacuation-paused alert as a banner while the latest alert says paused.
//
// GET /v1/events answers oldest first and follows with ?after=; it has no type filter and no
// "newest" order. So the page finds the newest seq (doubling then halving ?after=N&limit=1: about
// 2·log2(N) tiny requests), reads the last WINDOW events from there in pages of 1000, keeps the
// healing ones (at most KEEP), and then follows with after= every 2 s. The alert's own history
// (kind alert, id evacuation) is short and is followed from the start, so an old pause still shows.
import { api, query } from "./api.js";
import { badge, clear, every, h } from "./dom.js";
import { select } from "./ops_common.js";
import { listTable, statusLine } from "./widgets.js";

const POLL_MS = 2000;
const WINDOW = 5000; // events read back at the first load
const KEEP = 300; // healing events kept in memory (newest)
const PAGE = 1000;
const MAX_PAGES_PER_POLL = 10;

// Event type -> category (docs/api.md "Events": hosts, healing on servers, healing elsewhere).
const HOST_TYPES = {
  suspect: "host failure",
  down: "host failure",
  up: "host back",
  draining: "drain",
  drained: "drain",
};
const HEAL_TYPES = {
  evacuate_requested: "evacuation",
  evacuated: "evacuation",
  evacuation_retry: "evacuation",
  rescheduled: "evacuation",
  migrate_requested: "migration",
  migrated: "migration",
  crashed: "restart",
  restarted: "restart",
  restart_gave_up: "restart",
  repair_requested: "repair",
  repaired: "repair",
  repair_failed: "repair",
  orphan_removed: "orphan removal",
  evacuation_paused: "alert",
  evacuation_resumed: "alert",
};
const CATEGORIES = [["", "Everything"]].concat(
  [...new Set(Object.values(HOST_TYPES).concat(Object.values(HEAL_TYPES)))].map((c) => [c, c]),
);

export function category(e) {
  if (e.resource_kind === "host") return HOST_TYPES[e.type] || "";
  return HEAL_TYPES[e.type] || "";
}

// The newest event seq (0 when there is none): a seq > lo exists, none > hi.
async function newestSeq() {
  const after = async (n) => ((await api("/events" + query({ after: n, limit: 1 }))).events || []).length > 0;
  if (!(await after(0))) return 0;
  let lo = 0;
  let hi = 1024;
  while (await after(hi)) {
    lo = hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await after(mid)) lo = mid;
    else hi = mid;
  }
  return hi;
}

export function renderHeal(main, session) {
  let after = -1; // -1: not placed yet
  let alertAfter = 0;
  let latestAlert = null;
  let kept = []; // healing events, oldest first
  let shownCategory = "";
  let last = "";

  const status = statusLine("heal-status");
  const banner = h("div", { id: "evacuation-banner", class: "banner", role: "alert", hidden: true });
  const tbody = h("tbody", { id: "heal-body" });
  const counts = h("p", { class: "summary", id: "heal-summary" });

  clear(main).append(
    h("div", { class: "title" }, h("h1", {}, "Heal activity")),
    banner,
    h(
      "p",
      { class: "help" },
      "Host failures, evacuations, migrations, restarts, repairs and orphan removals the cloud made by itself, newest first.",
    ),
    h(
      "div",
      { class: "toolbar" },
      select("Show", "heal-filter", CATEGORIES, shownCategory, (v) => {
        shownCategory = v;
        last = "";
        draw();
      }),
    ),
    counts,
    status.el,
    listTable("heal", "Healing events, newest first", ["Time", "What", "Event", "Resource", "Message"], tbody),
  );

  async function follow() {
    if (after < 0) after = Math.max(0, (await newestSeq()) - WINDOW);
    for (let i = 0; i < MAX_PAGES_PER_POLL; i++) {
      const answer = await api("/events" + query({ after, limit: PAGE }));
      const events = answer.events || [];
      for (const e of events) if (category(e)) kept.push(e);
      after = Math.max(after, answer.next_after ?? after);
      if (events.length < PAGE) break;
    }
    if (kept.length > KEEP) kept = kept.slice(-KEEP);
  }

  async function followAlert() {
    for (let i = 0; i < MAX_PAGES_PER_POLL; i++) {
      const answer = await api(
        "/events" + query({ resource_kind: "alert", resource_id: "evacuation", after: alertAfter, limit: PAGE }),
      );
      const events = answer.events || [];
      if (events.length) latestAlert = events[events.length - 1];
      alertAfter = Math.max(alertAfter, answer.next_after ?? alertAfter);
      if (events.length < PAGE) break;
    }
    const paused = latestAlert?.type === "evacuation_paused";
    banner.hidden = !paused;
    banner.dataset.paused = String(paused);
    if (paused) {
      const since = new Date(latestAlert.time).toLocaleString();
      banner.textContent =
        `Evacuation is paused since ${since}: ${latestAlert.message || ""}. ` +
        "Hosts are still marked; servers move again when enough hosts are back (docs/healing.md).";
    }
  }

  async function refresh() {
    try {
      await Promise.all([follow(), followAlert()]);
      draw();
      status.show(kept.length ? "" : "Nothing healed in the last " + WINDOW + " events.");
    } catch (e) {
      status.error("Cannot read events: " + e.message);
    }
  }

  function draw() {
    const list = kept.filter((e) => !shownCategory || category(e) === shownCategory).reverse();
    const text = list.length ? list[0].seq + ":" + list.length + ":" + shownCategory : shownCategory;
    if (text === last) return;
    last = text;
    const by = {};
    for (const e of kept) by[category(e)] = (by[category(e)] || 0) + 1;
    counts.textContent = Object.entries(by)
      .map(([c, n]) => `${n} ${c}`)
      .join(", ");
    tbody.replaceChildren(
      ...list.map((e) =>
        h(
          "tr",
          { "data-seq": e.seq, "data-type": e.type, "data-kind": e.resource_kind, "data-id": e.resource_id },
          h("td", { class: "time", title: e.time }, new Date(e.time).toLocaleTimeString()),
          h("td", {}, category(e)),
          h("td", {}, badge(e.type)),
          h(
            "td",
            { class: "mono" },
            e.resource_kind === "server"
              ? h("a", { href: "#/servers/" + encodeURIComponent(e.resource_id) }, "server " + e.resource_id)
              : `${e.resource_kind} ${e.resource_id}`,
          ),
          h("td", {}, e.message || ""),
        ),
      ),
    );
  }

  return every(POLL_MS, refresh);
}
