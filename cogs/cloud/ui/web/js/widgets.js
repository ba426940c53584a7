// What several pages draw alike: a status line, a list table, a titled section, a pager, a record's
// events, a form's fields and refusal, and a volume's attach and (confirmed) detach.
import { api, query } from "./api.js";
import { confirmAction } from "./confirm.js";
import { clock, h } from "./dom.js";

// A status line (role=status) with show(text) and error(text); `el` is the paragraph.
export function statusLine(id) {
  const el = h("p", { class: "status", role: "status", "aria-live": "polite", id });
  return {
    el,
    show(text) {
      el.textContent = text;
      el.classList.remove("error");
    },
    error(text) {
      el.textContent = text;
      el.classList.add("error");
    },
  };
}

// A table of class `cls` (id, a visually hidden caption unless none, column headers) around `body`.
export function listTable(id, caption, headers, body, cls = "list") {
  return h(
    "table",
    { class: cls, id },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    body,
  );
}

// A section titled by an h2 of id "h-<key>" (its aria-labelledby), then `children`.
export function section(key, title, ...children) {
  return h("section", { "aria-labelledby": "h-" + key }, h("h2", { id: "h-" + key }, title), ...children);
}

// Previous / Next over a list the API pages with limit/marker (update) or one the page cuts itself
// (cut). `onMove()` is called after the page changed; `ids` optionally names the two buttons.
export function pager(name, onMove, ids = {}) {
  const markers = [""]; // the marker of each page seen so far: Previous goes back one
  let page = 0;
  let next = "";
  const prev = h("button", { type: "button", id: ids.prev, class: "page-prev", disabled: true }, "Previous page");
  const nextButton = h("button", { type: "button", id: ids.next, class: "page-next", disabled: true }, "Next page");
  const label = h("span", { class: "page" }, "Page 1");
  prev.addEventListener("click", () => {
    if (page === 0) return;
    page -= 1;
    onMove();
  });
  nextButton.addEventListener("click", () => {
    if (!next) return;
    page += 1;
    markers[page] = next;
    onMove();
  });
  const show = (text) => {
    prev.disabled = page === 0;
    nextButton.disabled = !next;
    label.textContent = text;
  };
  return {
    el: h("nav", { class: "pager", "aria-label": "Pages of " + name }, prev, label, nextButton),
    marker: () => markers[page],
    page: () => page,
    reset() {
      markers.length = 1;
      page = 0;
      next = "";
    },
    // The API's answer came: `nextMarker` is its next_marker.
    update(nextMarker) {
      next = nextMarker || "";
      show("Page " + (page + 1));
    },
    // The page's own cut of `list`, `size` a page ("Page N of M").
    cut(list, size) {
      const pages = Math.max(1, Math.ceil(list.length / size));
      page = Math.min(page, pages - 1);
      next = page < pages - 1 ? String(page + 1) : "";
      show(`Page ${page + 1} of ${pages}`);
      return list.slice(page * size, (page + 1) * size);
    },
  };
}

// A record's Events section (`path`/events); follow() adds the events after the last seen
// (?after=) on top, newest first, and returns them.
export function eventLog(path) {
  let after = 0;
  const body = h("tbody", { id: "events-body" });
  return {
    el: section("events", "Events", listTable("events", null, ["Time", "Type", "Message"], body)),
    async follow() {
      const answer = await api(path + "/events" + query({ after, limit: 1000 }));
      const events = answer.events || [];
      after = answer.next_after ?? after;
      for (const ev of events) {
        body.prepend(
          h("tr", { "data-type": ev.type }, h("td", {}, clock(ev.time)), h("td", {}, ev.type), h("td", {}, ev.message || "")),
        );
      }
      return events;
    },
  };
}

// A form's field: its label, the control, its help (if any) and its "<id>-error" note.
export function field(id, label, control, help) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    help ? h("p", { class: "help", id: id + "-help" }, help) : null,
    h("p", { id: id + "-error", class: "field-error", hidden: true }),
  );
}

// A form's error line (#create-error, or `id`): clear() before a submit, show(text, err) for the
// API's refusal, also marked at the field err.details.field names (invalid, its note, focus).
export function refusal(form, id = "create-error") {
  const el = h("p", { id, class: "error", role: "alert", tabindex: "-1", hidden: true });
  return {
    el,
    clear() {
      for (const c of form.querySelectorAll("[aria-invalid]")) c.removeAttribute("aria-invalid");
      for (const c of form.querySelectorAll(".field-error")) c.hidden = true;
      el.hidden = true;
    },
    show(text, err) {
      el.textContent = text;
      el.hidden = false;
      // "allocation_pools[0].start" names the form's field "allocation_pools".
      const named = String(err.details?.field || "").replace(/[[.].*$/, "");
      const control = named ? form.querySelector(`[name="${CSS.escape(named)}"]`) : null;
      if (control) {
        control.setAttribute("aria-invalid", "true");
        const note = document.getElementById(control.id + "-error");
        note.textContent = err.message;
        note.hidden = false;
        control.focus();
      } else {
        el.focus();
      }
    },
  };
}

// Which server statuses a volume may be attached to or detached from (docs/api.md, Volumes).
export const ATTACHABLE = ["ACTIVE", "SHUTOFF"];

// POST /v1/volumes/<id>/attach {server_id}: rejects with the API's ApiError (a 409: not now).
export function attachVolume(volumeId, serverId) {
  return api("/volumes/" + encodeURIComponent(volumeId) + "/attach", { method: "POST", body: { server_id: serverId } });
}

// Detaches a volume once the user confirmed it (`volumeName` from `serverName`): true when asked,
// false when the user cancelled; rejects with the API's ApiError (a 409: not now).
export async function detachVolume(volumeId, volumeName, serverName) {
  const text = "Detach volume " + volumeName + " from server " + serverName + "? It is unmounted first.";
  if (!(await confirmAction("Detach volume", text, "Detach"))) return false;
  await api("/volumes/" + encodeURIComponent(volumeId) + "/detach", { method: "POST", body: {} });
  return true;
}
