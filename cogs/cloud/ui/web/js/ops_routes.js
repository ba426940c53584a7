// The operators' pages (admin only): #/hosts, #/workflows[?state=&type=], #/heal, #/quotas, #/charts.
// app.js asks opsPage() for the page a hash names; null means "not an operator's page, or not an
// admin": app.js then goes on as for any unknown hash (to #/servers), so a member never sees them
// (the API refuses their data to a member anyway: GET /v1/hosts is admin only).
import { renderHosts } from "./hosts.js";
import { renderWorkflows } from "./workflows.js";
import { renderHeal } from "./heal.js";
import { renderQuotas } from "./quotas.js";
import { renderCharts } from "./charts.js";

const PAGES = {
  hosts: renderHosts,
  workflows: renderWorkflows,
  heal: renderHeal,
  quotas: renderQuotas,
  charts: renderCharts,
};

// `first`: the hash's first path part, maybe with a query ("workflows?state=failed").
// Returns (main) => stop, or null.
export function opsPage(first, session) {
  if (!session?.admin) return null;
  const [name, q] = first.split("?");
  const render = PAGES[name];
  if (!render) return null;
  const params = new URLSearchParams(q || "");
  return (main) => render(main, session, params);
}
