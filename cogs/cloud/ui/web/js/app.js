// The console's shell: who is signed in, the header, and which page the location's hash names.
// Pages: #/signin, #/servers[?status=&name=], #/servers/new, #/servers/<id>. Each page is a module whose render(main, session)
// draws into <main> and returns a function that stops its polling. Networks, subnets, ports, volumes,
// images and flavors (#/<kind>[/new|/<id>]): resources.js.
import { clearToken, token, whoami } from "./api.js";
import { renderSignin } from "./signin.js";
import { renderServers } from "./servers.js";
import { renderServer } from "./server.js";
import { renderCreateServer } from "./create_server.js";
import { opsPage } from "./ops_routes.js";
import { resourcePage } from "./resources.js";

let session = null; // {who, admin, writer}
let stopPage = () => {};
let signinNotice = ""; // why the last sign-out happened, when it was not the user's choice

export function sessionOf(who) {
  return { who, admin: who.role === "admin", writer: who.role === "admin" || who.role === "member" };
}

function showWho() {
  const signedIn = session !== null;
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  document.getElementById("nav-ops").hidden = !(signedIn && session.admin); // the operators' pages
  if (!signedIn) return;
  document.getElementById("who-project").textContent = "project " + (session.who.project_name || session.who.project_id);
  document.getElementById("who-role").textContent = session.who.role;
}

export function signedIn(who) {
  session = sessionOf(who);
  showWho();
}

// `notice`: why, when it was not the user's choice (shown on the sign-in page).
export function signOut(notice = "") {
  clearToken();
  session = null;
  signinNotice = notice;
  showWho();
  if (location.hash !== "#/signin") {
    location.hash = "#/signin"; // hashchange routes
  } else {
    route();
  }
}

async function route() {
  stopPage();
  stopPage = () => {};
  const main = document.getElementById("main");
  const hash = location.hash || "#/servers";
  if (session === null && token()) {
    try {
      signedIn(await whoami());
    } catch {
      clearToken();
    }
  }
  if (session === null) {
    if (hash !== "#/signin") {
      history.replaceState(null, "", "#/signin");
    }
    stopPage = renderSignin(
      main,
      (who) => {
        signedIn(who);
        location.hash = "#/servers";
      },
      signinNotice,
    );
    signinNotice = "";
    return;
  }
  const parts = hash.replace(/^#\/?/, "").split("/");
  const ops = opsPage(parts[0], session); // #/hosts, #/workflows, #/heal, #/quotas, #/charts (admins)
  const resource = resourcePage(parts, session); // #/networks, #/subnets, ... [/new | /<id>] (resources.js)
  if (parts[0] === "servers" && parts[1] === "new") {
    stopPage = renderCreateServer(main, session);
  } else if (parts[0] === "servers" && parts[1]) {
    stopPage = renderServer(main, session, decodeURIComponent(parts[1]));
  } else if (ops) {
    stopPage = ops(main);
  } else if (resource) {
    stopPage = resource(main);
  } else {
    const [first, q] = parts[0].split("?"); // #/servers?status=ERROR&name=web-1 (servers.js)
    if (first !== "servers" || parts.length > 1) history.replaceState(null, "", "#/servers");
    stopPage = renderServers(main, session, new URLSearchParams(first === "servers" && parts.length === 1 ? q || "" : ""));
  }
  for (const a of document.querySelectorAll("#nav a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === "#/" + parts[0].split("?")[0]);
  }
}

document.getElementById("signout").addEventListener("click", () => signOut());
window.addEventListener("cogs:unauthorized", (e) => {
  if (session !== null) signOut("You were signed out: the token no longer works (" + e.detail + ").");
});
window.addEventListener("hashchange", route);
route();
