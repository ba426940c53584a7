// A workflow's steps as bars on one time axis (GET /v1/workflows/{id}: each step's started_ms and
// finished_ms). A bar's class is its state (succeeded, failed, running, waiting_retry, polling,
// compensating, compensated, compensation_failed, skipped, pending); a step tried more than once is
// marked `retried`, one compensated drawn in the rollback colours. Its title (the hover text) holds
// the state, the attempts, the times and the error. A wait on a circuit breaker (the engine's
// `step_waiting` event: the step or its compensation held back, unsent, while its service's circuit
// is open) is a mark on the step's track where the wait began.
import { clock, h } from "./dom.js";

const ROLLBACK = new Set(["compensating", "compensated", "compensation_failed"]);

function seconds(ms) {
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

// The waits on a circuit breaker of workflow `id` among `events` (GET .../events: their
// `step_waiting`, whose message names the step: "step boot (compute.create_instance) waits: circuit
// of compute is open"), by step name: [{time_ms, message}].
export function circuitWaits(events, id) {
  const waits = new Map();
  for (const ev of events) {
    if (ev.type !== "step_waiting" || ev.workflow_id !== id) continue;
    const named = /^(?:compensation of )?step (\S+) \(/.exec(ev.message || "");
    if (!named) continue;
    if (!waits.has(named[1])) waits.set(named[1], []);
    waits.get(named[1]).push({ time_ms: ev.time_ms, message: ev.message });
  }
  return waits;
}

// `waits`: circuitWaits()'s map for this workflow (none by default).
export function renderTimeline(workflow, now = Date.now(), waits = new Map()) {
  const steps = workflow.steps || [];
  const waited = [...waits.values()].flat().map((w) => w.time_ms);
  const starts = steps.filter((s) => s.started_ms).map((s) => s.started_ms).concat(waited);
  const t0 = starts.length ? Math.min(...starts) : now;
  const ends = steps.map((s) => s.finished_ms || (s.started_ms ? now : 0)).concat(waited);
  const t1 = Math.max(t0 + 1, ...ends);
  const span = t1 - t0;
  const at = (ms) => ((100 * (ms - t0)) / span).toFixed(2) + "%";

  const rows = steps.map((s) => {
    const attempts = s.attempts || 0;
    const label = h("span", { class: "step-name" }, s.name);
    const notes = [];
    const held = waits.get(s.name) || [];
    if (attempts > 1) notes.push(attempts + " attempts");
    if (s.compensation_attempts > 0) notes.push("compensated ×" + s.compensation_attempts);
    if (held.length) notes.push("waited on a circuit breaker" + (held.length > 1 ? " ×" + held.length : ""));
    const bar = h("span", {
      class:
        "bar state-" + s.state + (attempts > 1 ? " retried" : "") + (ROLLBACK.has(s.state) ? " rollback" : ""),
      "data-step": s.name,
      "data-state": s.state,
    });
    const marks = held.map((w) => {
      const mark = h("span", { class: "wait-mark", "data-step": s.name, title: clock(w.time_ms) + ": " + w.message });
      mark.style.left = at(w.time_ms);
      return mark;
    });
    const track = h("span", { class: "track" }, bar, marks);
    if (s.started_ms) {
      const end = s.finished_ms || now;
      // CSSOM, not a style attribute: the Content-Security-Policy allows no inline style.
      bar.style.left = at(s.started_ms);
      bar.style.width = Math.max(0.6, (100 * (end - s.started_ms)) / span).toFixed(2) + "%";
    } else {
      bar.classList.add("unstarted");
    }
    const title = [
      s.name + " (" + (s.action || "") + "): " + s.state,
      attempts ? "attempts: " + attempts : "",
      s.started_at ? "started " + s.started_at : "not started",
      s.finished_at ? "finished " + s.finished_at + " (" + seconds(s.finished_ms - s.started_ms) + ")" : "",
      ...held.map((w) => clock(w.time_ms) + ": " + w.message),
      s.error ? "error: " + s.error : "",
    ]
      .filter(Boolean)
      .join("\n");
    bar.title = title;
    return h(
      "li",
      { class: "step", tabindex: "0", title, "aria-label": title.replaceAll("\n", "; ") },
      h("span", { class: "step-label" }, label, notes.length ? h("span", { class: "note" }, notes.join(", ")) : null),
      track,
    );
  });

  const axis = h(
    "div",
    { class: "axis", "aria-hidden": "true" },
    [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { class: "tick tick-" + f * 100 }, seconds(Math.round(f * span)))),
  );
  return h(
    "figure",
    { class: "timeline", id: "timeline", "data-workflow": workflow.id, "data-state": workflow.state },
    h(
      "figcaption",
      {},
      workflow.type + " — " + workflow.state + (workflow.reason ? " (" + workflow.reason + ")" : "") + ", " + seconds(span),
    ),
    h("ol", { class: "steps" }, rows),
    axis,
  );
}
