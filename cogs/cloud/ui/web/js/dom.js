// A small element builder. Text is always set with textContent (API data is never parsed as HTML).

// h("a", {href: "#/x", class: "c"}, "text", child, ...): attributes set with setAttribute, except
// `on<event>` (a listener) and `hidden`/`disabled` (booleans). Children: nodes, strings, null.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v);
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

// A status word as a badge: its class is its lower-case value (status-active, status-error, ...).
export function badge(status) {
  const s = String(status || "unknown");
  return h("span", { class: "badge status-" + s.toLowerCase() }, s);
}

// "12:03:04" in the user's time zone, or "" for nothing.
export function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleTimeString();
}

// A timer that calls `fn` every `ms` until stopped; waits for each call to end before the next.
export function every(ms, fn) {
  let stopped = false;
  let timer = 0;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
