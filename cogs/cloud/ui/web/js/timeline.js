// A workflow's steps as bars on one time axis (GET /v1/workflows/{id}: each step's started_ms and
// finished_ms). A bar's class is its state (succeeded, failed, running, waiting_retry, polling,
// compensating, compensated, compensation_failed, skipped, pending); a step tried more than once is
// marked `retried`, one compensated drawn in the rollback colours. Its title (the hover text) holds
// the state, the attempts, the times and the error.
import { h } from "./dom.js";

const ROLLBACK = new Set(["compensating", "compensated", "compensation_failed"]);

function seconds(ms) {
  return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

export function renderTimeline(workflow, now = Date.now()) {
  const steps = workflow.steps || [];
  const starts = steps.filter((s) => s.started_ms).map((s) => s.started_ms);
  const t0 = starts.length ? Math.min(...starts) : now;
  const ends = steps.map((s) => s.finished_ms || (s.started_ms ? now : 0));
  const t1 = Math.max(t0 + 1, ...ends);
  const span = t1 - t0;

  const rows = steps.map((s) => {
    const attempts = s.attempts || 0;
    const label = h("span", { class: "step-name" }, s.name);
    const notes = [];
    if (attempts > 1) notes.push(attempts + " attempts");
    if (s.compensation_attempts > 0) notes.push("compensated ×" + s.compensation_attempts);
    const bar = h("span", {
      class:
        "bar state-" + s.state + (attempts > 1 ? " retried" : "") + (ROLLBACK.has(s.state) ? " rollback" : ""),
      "data-step": s.name,
      "data-state": s.state,
    });
    const track = h("span", { class: "track" }, bar);
    if (s.started_ms) {
      const end = s.finished_ms || now;
      // CSSOM, not a style attribute: the Content-Security-Policy allows no inline style.
      bar.style.left = ((100 * (s.started_ms - t0)) / span).toFixed(2) + "%";
      bar.style.width = Math.max(0.6, (100 * (end - s.started_ms)) / span).toFixed(2) + "%";
    } else {
      bar.classList.add("unstarted");
    }
    const title = [
      s.name + " (" + (s.action || "") + "): " + s.state,
      attempts ? "attempts: " + attempts : "",
      s.started_at ? "started " + s.started_at : "not started",
      s.finished_at ? "finished " + s.finished_at + " (" + seconds(s.finished_ms - s.started_ms) + ")" : "",
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
