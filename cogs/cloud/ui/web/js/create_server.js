// The new-server form (#/servers/new): pickers filled from the API (flavors, images, the project's
// ACTIVE networks, its available volumes, its server groups), POST /v1/servers, and the API's
// refusal shown as it says it — the message, and the field it names marked invalid.
import { api } from "./api.js";
import { clear, h } from "./dom.js";
import { field, refusal, statusLine } from "./widgets.js";

// The picker of a field: options from `items` (value: the item's id, text: its name and `detail`).
function picker(id, label, items, { optional = false, multiple = false, detail = () => "" } = {}) {
  const select = h(
    "select",
    { id, name: id, required: !optional && !multiple, multiple, "aria-describedby": id + "-error" },
    optional ? h("option", { value: "" }, "none") : null,
    items.map((it) => h("option", { value: it.id }, it.name + detail(it))),
  );
  return { select, row: field(id, label, select) };
}

async function list(collection, params = "") {
  return (await api("/" + collection + params))[collection.replace("-", "_")] || [];
}

export function renderCreateServer(main, session) {
  const status = statusLine();
  status.show("Loading choices…");
  const form = h("form", { class: "create", id: "create-server", "aria-labelledby": "create-title", novalidate: true });
  clear(main).append(
    h("p", {}, h("a", { href: "#/servers" }, "← Servers")),
    h("h1", { id: "create-title" }, "New server"),
    status.el,
    form,
  );
  if (!session.writer) {
    status.show("A reader cannot create servers.");
    return () => {};
  }
  let stopped = false;
  (async () => {
    let choices;
    try {
      const [flavors, images, networks, volumes, groups] = await Promise.all([
        list("flavors", "?limit=1000"),
        list("images", "?limit=1000"),
        list("networks", "?limit=1000&status=ACTIVE"),
        list("volumes", "?limit=1000&status=available"),
        list("server-groups", "?limit=1000"),
      ]);
      choices = { flavors, images, networks, volumes, groups };
    } catch (e) {
      status.error("Cannot load the choices: " + e.message);
      return;
    }
    if (stopped) return;
    status.show(choices.networks.length ? "" : "Your project has no ACTIVE network yet: create one first.");
    draw(choices);
  })();

  function draw({ flavors, images, networks, volumes, groups }) {
    const name = h("input", { id: "name", name: "name", required: true, autocomplete: "off", "aria-describedby": "name-error" });
    const flavor = picker("flavor", "Flavor", flavors, {
      detail: (f) => ` (${f.vcpus} vCPU, ${f.ram_mb} MB RAM, ${f.disk_gb} GB disk)`,
    });
    const image = picker("image", "Image", images);
    const network = picker("network_id", "Network", networks);
    const vols = picker("volume_ids", "Volumes (optional; Ctrl or Shift to pick several)", volumes, {
      multiple: true,
      detail: (v) => ` (${v.size_gb} GB)`,
    });
    const group = picker("server_group_id", "Server group", groups, { optional: true, detail: (g) => ` (${g.policy})` });
    const submit = h("button", { type: "submit", id: "create-submit" }, "Create server");
    const error = refusal(form);
    form.replaceChildren(
      field("name", "Name", name),
      flavor.row,
      image.row,
      network.row,
      vols.row,
      group.row,
      error.el,
      h("div", { class: "buttons" }, submit),
    );
    name.focus();

    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      error.clear();
      const body = {
        name: name.value,
        // The API takes a flavor's and an image's name or id; the pickers give ids.
        flavor: flavor.select.value,
        image: image.select.value,
        network_id: network.select.value,
      };
      const volumeIds = [...vols.select.selectedOptions].map((o) => o.value);
      if (volumeIds.length) body.volume_ids = volumeIds;
      if (group.select.value) body.server_group_id = group.select.value;
      submit.disabled = true;
      try {
        const answer = await api("/servers", { method: "POST", body });
        location.hash = "#/servers/" + encodeURIComponent(answer.server.id);
      } catch (err) {
        error.show("The server was not created: " + err.message, err);
      } finally {
        submit.disabled = false;
      }
    });
  }

  return () => {
    stopped = true;
  };
}
