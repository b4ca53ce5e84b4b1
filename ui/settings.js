// The settings window. The agent checks and stores every change (and refuses what site policy
// locks); this page shows the result, or the agent's reason in its own words.

import { $, el, invoke, describeError, copyText, flashCopied } from "./lib.js";

let current = null;
let removing = null;

function showMessage(text, isError = false) {
  const message = $("message");
  message.textContent = text ?? "";
  message.hidden = !text;
  message.classList.toggle("error", isError);
}

// Site policy on a key (or on a table above or below it), enforced or recommended.
const policyOn = (key, level) =>
  current?.policy.find(
    (p) =>
      p.level === level &&
      (p.key === key || key.startsWith(`${p.key}.`) || p.key.startsWith(`${key}.`)),
  );
const lockOf = (key) => policyOn(key, "enforced");

function render(settings) {
  current = settings;
  $("port").value = settings.hubPort;
  $("hub-url").textContent = settings.hubUrl;
  $("start-at-login").checked = settings.startAtLogin;
  $("notifications").checked = settings.notifications;
  $("log-dir").textContent = settings.logDir ?? "—";
  $("database").textContent = settings.database ?? "—";
  $("config-file").textContent = settings.configFile ?? "—";

  // A locked setting stays visible, disabled, with where the lock comes from; a recommended
  // one stays the user's to change, and says whose default it is.
  for (const note of document.querySelectorAll("[data-lock]")) {
    const lock = lockOf(note.dataset.lock);
    const recommended = policyOn(note.dataset.lock, "recommended");
    note.hidden = !lock && !recommended;
    note.classList.toggle("recommended", !lock && Boolean(recommended));
    note.textContent = lock
      ? `Locked by site policy (${lock.source})`
      : recommended
        ? `Recommended by site policy (${recommended.source}); yours to change`
        : "";
  }
  const portLocked = Boolean(lockOf("hub.port"));
  $("port").disabled = portLocked;
  $("port-save").disabled = portLocked;
  $("start-at-login").disabled = Boolean(lockOf("desktop.start_at_login"));
  $("notifications").disabled = Boolean(lockOf("desktop.notifications"));
  const appsLocked = Boolean(lockOf("apps"));
  $("add-app").hidden = appsLocked;

  $("apps").replaceChildren(
    ...settings.apps.map((app) => {
      const tr = el("tr");
      tr.dataset.clientId = app.clientId;
      const scopes = el("td", "scopes");
      scopes.append(...app.scopes.map((scope) => el("code", null, scope)));
      const actions = el("td");
      if (!appsLocked && !app.lockedBy) {
        const remove = el("button", "danger", "Remove");
        remove.type = "button";
        remove.addEventListener("click", () => confirmRemove(app));
        actions.append(remove);
      }
      tr.append(
        el("td", "name", app.name),
        el("td", "mono", app.clientId),
        scopes,
        el("td", "muted secret", app.secretInKeyring ? "OS keyring" : "settings file"),
        actions,
      );
      return tr;
    }),
  );
  $("no-apps").hidden = settings.apps.length > 0;

  $("policy").hidden = settings.policy.length === 0;
  $("locked").replaceChildren(
    ...settings.policy.map((p) => {
      const item = el("li");
      item.dataset.level = p.level;
      item.append(
        el("span", `badge ${p.level}`, p.level === "enforced" ? "Enforced" : "Recommended"),
        " ",
        el("code", null, p.key),
        ` from ${p.source}`,
      );
      return item;
    }),
  );
}

async function change(key, value, done) {
  try {
    render(await invoke("set_setting", { key, value }));
    showMessage(done);
  } catch (error) {
    showMessage(describeError(error), true);
    render(current);
  }
}

async function addApp(event) {
  event.preventDefault();
  const name = $("app-name").value.trim();
  const scopes = [
    ...[...document.querySelectorAll("input[name=scope]:checked")].map((box) => box.value),
    ...$("app-scopes").value.split(/[\s,]+/).filter(Boolean),
  ];
  $("add").disabled = true;
  try {
    const added = await invoke("add_app", { name, scopes });
    render(added.settings);
    $("new-name").textContent = name;
    $("new-client-id").textContent = added.clientId;
    $("new-secret").textContent = added.clientSecret;
    $("new-token-url").textContent = new URL("/auth/token", added.settings.hubUrl).href;
    $("new-where").textContent = added.secretInKeyring
      ? "Lockstep keeps it in the OS keyring."
      : "The OS keyring is not available: Lockstep keeps it in your settings file.";
    $("new-app").hidden = false;
    $("new-app").scrollIntoView({ block: "nearest" });
    $("add-app").reset();
    showMessage(null);
  } catch (error) {
    showMessage(describeError(error), true);
  } finally {
    $("add").disabled = false;
  }
}

function confirmRemove(app) {
  removing = app;
  $("remove-name").textContent = app.name;
  $("confirm-remove").showModal();
}

async function removeApp() {
  if (!removing) return;
  const app = removing;
  removing = null;
  try {
    render(await invoke("remove_app", { clientId: app.clientId }));
    showMessage(`${app.name} removed: its tokens no longer work.`);
  } catch (error) {
    showMessage(describeError(error), true);
  }
}

async function start() {
  $("port-form").addEventListener("submit", (event) => {
    event.preventDefault();
    change("hub.port", Number($("port").value), "Port saved: it applies when Lockstep next starts.");
  });
  $("start-at-login").addEventListener("change", (event) =>
    change(
      "desktop.start_at_login",
      event.target.checked,
      event.target.checked ? "Lockstep will start when you sign in." : "Lockstep will not start at sign-in.",
    ),
  );
  $("notifications").addEventListener("change", (event) =>
    change(
      "desktop.notifications",
      event.target.checked,
      event.target.checked ? "Sync problems will be notified." : "Sync problems will not be notified.",
    ),
  );
  $("add-app").addEventListener("submit", addApp);
  $("new-done").addEventListener("click", () => {
    // The secret leaves the page: it is never shown again.
    $("new-secret").textContent = "";
    $("new-app").hidden = true;
  });
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.addEventListener("click", async () =>
      flashCopied(button, await copyText($(button.dataset.copy).textContent)),
    );
  }
  $("remove-cancel").addEventListener("click", () => {
    removing = null;
    $("confirm-remove").close();
  });
  $("remove-confirm").addEventListener("click", () => {
    $("confirm-remove").close();
    removeApp();
  });
  try {
    render(await invoke("settings_view"));
  } catch (error) {
    showMessage(describeError(error), true);
  }
}

start();
