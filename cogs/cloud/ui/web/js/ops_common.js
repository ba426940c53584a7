// What the operators' pages (hosts.js, workflows.js, heal.js, quotas.js, charts.js) share: a
// capacity bar, a labelled select (servers.js's status filter too), and "how long ago" (their pager
// and status line: widgets.js).
import { h } from "./dom.js";

// A bar of `used` out of `total` (total < 0: unlimited). The fill's width is set through the CSSOM,
// which the console's CSP allows (no style attribute is ever written). Above 90 % it turns red,
// above 75 % amber. The text beside it says the numbers, so colour is never the only cue.
export function bar(label, used, total, unit = "") {
  const unlimited = total < 0;
  const pct = unlimited || total === 0 ? 0 : Math.min(100, Math.round((used / total) * 100));
  const fill = h("span", { class: "fill" });
  fill.style.width = pct + "%";
  const level = pct >= 90 ? "high" : pct >= 75 ? "warn" : "ok";
  const text = unlimited ? `${used}${unit} (no limit)` : `${used}${unit} / ${total}${unit}`;
  return h(
    "span",
    { class: "capacity level-" + level, "data-used": used, "data-total": total, "data-label": label },
    h("span", { class: "track", role: "img", "aria-label": `${label}: ${text}, ${pct}%` }, fill),
    h("span", { class: "amount" }, text),
  );
}

// A labelled <select> (label text, id, [[value, text]...], chosen value, onChange(value)).
export function select(label, id, options, value, onChange) {
  const el = h("select", { id }, options.map(([v, t]) => h("option", { value: v, selected: v === value }, t)));
  el.addEventListener("change", () => onChange(el.value));
  return h("span", { class: "filter" }, h("label", { for: id }, label + " "), el);
}

// "12 s ago", "3 min ago", "2 h ago" from an RFC 3339 time; "" for none.
export function ago(iso, now = Date.now()) {
  if (!iso) return "";
  const t = Date.parse(iso);
  if (isNaN(t)) return String(iso);
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 120) return s + " s ago";
  if (s < 7200) return Math.round(s / 60) + " min ago";
  if (s < 172800) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}
