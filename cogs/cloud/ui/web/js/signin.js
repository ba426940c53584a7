// The sign-in page: a token, checked with GET /v1/whoami before it is kept.
import { ApiError, setToken, whoami } from "./api.js";
import { clear, h } from "./dom.js";

export function renderSignin(main, onSignedIn, notice = "") {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help",
  });
  const error = h("p", { id: "signin-error", class: "error", role: "alert", hidden: true });
  const button = h("button", { type: "submit", id: "signin-submit" }, "Sign in");
  const form = h(
    "form",
    { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to cogs"),
    notice ? h("p", { id: "signin-notice", class: "notice", role: "status" }, notice) : null,
    h("label", { for: "token" }, "API token"),
    input,
    h("p", { id: "token-help", class: "help" }, "A cogs token (cogs_…). It is kept in this tab only and never put in a URL."),
    error,
    button,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const t = input.value.trim();
    button.disabled = true;
    error.hidden = true;
    try {
      const who = await whoami(t);
      setToken(t);
      input.value = "";
      onSignedIn(who);
    } catch (err) {
      error.textContent =
        err instanceof ApiError && err.status === 401
          ? "This token is not valid (" + err.message + ")."
          : "Cannot sign in: " + err.message;
      error.hidden = false;
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(main).append(form);
  input.focus();
  return () => {};
}
