// The context-history window: newest first, grouped by day, searched and filtered by the
// agent's own history query, paged by row id (so the thousandth page is as fast as the first).

import { $, el, invoke, listen, describeError, dayKey, dayLabel, formatTime } from "./lib.js";

const PAGE_SIZE = 100;

const state = {
  // `before` cursors of the pages walked so far; the last one is the page on screen.
  cursors: [null],
  nextBefore: null,
  selected: null,
  detail: null,
  loading: 0,
};

function filters() {
  const dayStart = (value, plusDays = 0) => {
    if (!value) return null;
    const [year, month, day] = value.split("-").map(Number);
    return new Date(year, month - 1, day + plusDays).toISOString();
  };
  return {
    text: $("search").value.trim() || null,
    app: $("app").value || null,
    event: $("event").value || null,
    from: dayStart($("from").value),
    // The "to" day is included: the query's end is exclusive, so it is the next midnight.
    to: dayStart($("to").value, 1),
  };
}

// One line for what just happened (an export, a reopen) or what went wrong. `source` says who
// wrote it, so reloading the list clears only its own errors, not the news of a reopen.
function showMessage(text, isError = false, source = "action") {
  const message = $("message");
  message.textContent = text ?? "";
  message.hidden = !text;
  message.classList.toggle("error", isError);
  message.dataset.source = source;
}

async function load() {
  const ticket = ++state.loading;
  const before = state.cursors.at(-1);
  try {
    const page = await invoke("history_page", {
      filter: { ...filters(), before, limit: PAGE_SIZE },
    });
    // A newer request was made meanwhile (typing): its answer is the one to show.
    if (ticket !== state.loading) return;
    state.nextBefore = page.nextBefore;
    renderRows(page.rows);
    if ($("message").dataset.source === "load") showMessage(null);
  } catch (error) {
    if (ticket === state.loading) showMessage(describeError(error), true, "load");
  }
}

function firstPage() {
  state.cursors = [null];
  return load();
}

function studyText(row) {
  return [row.accession, row.modality, row.description].filter(Boolean).join(" · ");
}

function renderRows(rows) {
  const body = $("rows");
  const children = [];
  let day = null;
  for (const row of rows) {
    const at = new Date(row.at);
    if (dayKey(at) !== day) {
      day = dayKey(at);
      const header = el("tr", "day");
      const cell = el("th", null, dayLabel(at));
      cell.colSpan = 5;
      header.append(cell);
      children.push(header);
    }
    const tr = el("tr", "row");
    tr.dataset.id = row.id;
    tr.tabIndex = 0;
    tr.classList.toggle("selected", row.id === state.selected);
    const time = el("td", "time", formatTime(at));
    const event = el("td", "event", row.event);
    event.dataset.kind = (row.event.split("-")[1] ?? "other").toLowerCase();
    const patient = el("td", "patient");
    patient.append(el("span", "name", row.patientName ?? (row.patientMrn ? "Unnamed patient" : "—")));
    if (row.patientMrn) patient.append(el("small", null, `MRN ${row.patientMrn}`));
    const study = el("td", "study", studyText(row) || "—");
    const app = el("td", "app", row.app);
    tr.append(time, event, patient, study, app);
    tr.addEventListener("click", () => select(row.id));
    children.push(tr);
  }
  body.replaceChildren(...children);
  $("no-rows").hidden = rows.length > 0;
  $("table").hidden = rows.length === 0;
  const index = state.cursors.length;
  $("page-info").textContent = `Page ${index}`;
  $("newer").disabled = index === 1;
  $("newest").disabled = index === 1;
  $("older").disabled = state.nextBefore == null;
}

async function select(id) {
  state.selected = id;
  for (const tr of document.querySelectorAll("#rows tr.row")) {
    tr.classList.toggle("selected", Number(tr.dataset.id) === id);
  }
  try {
    const detail = await invoke("history_detail", { id });
    if (state.selected !== id) return;
    state.detail = detail;
    renderDetail(detail);
  } catch (error) {
    showMessage(describeError(error), true);
  }
}

const OUTCOMES = {
  acknowledged: "Followed",
  refused: "Refused",
  "timed-out": "No answer",
  reopened: "Reopened",
};

function renderDetail(detail) {
  const { row } = detail;
  $("detail-empty").hidden = true;
  $("detail-body").hidden = false;
  $("detail-event").textContent = row.event;
  $("detail-patient").textContent = row.patientName ?? (row.patientMrn ? "Unnamed patient" : "No patient");
  $("detail-facts").textContent = [row.birthDate, row.patientMrn && `MRN ${row.patientMrn}`]
    .filter(Boolean)
    .join(" · ");
  $("detail-study").textContent = [studyText(row), row.reportStatus && `report ${row.reportStatus}`]
    .filter(Boolean)
    .join(" · ");
  $("detail-when").textContent = `${new Date(row.at).toLocaleString()} · by ${row.app}`;
  $("reopen").hidden = !detail.canReopen;

  $("outcomes").replaceChildren(
    ...detail.outcomes.map((outcome) => {
      const tr = el("tr");
      tr.dataset.outcome = outcome.outcome;
      const pill = el("span", "pill", OUTCOMES[outcome.outcome] ?? outcome.outcome);
      const state = el("td");
      state.append(pill);
      tr.append(
        el("td", "actor", outcome.actor),
        state,
        el("td", "muted", outcome.detail),
        el("td", "muted time", formatTime(new Date(outcome.at))),
      );
      return tr;
    }),
  );
  $("no-outcomes").hidden = detail.outcomes.length > 0;
  $("event-json").textContent = detail.eventJson;
}

function confirmReopen() {
  const detail = state.detail;
  if (!detail) return;
  const { row } = detail;
  $("confirm-patient").textContent = [
    row.patientName ?? "Unnamed patient",
    row.birthDate,
    row.patientMrn && `MRN ${row.patientMrn}`,
    studyText(row),
  ]
    .filter(Boolean)
    .join(" · ");
  $("confirm").showModal();
}

async function reopen() {
  const id = state.detail?.row.id;
  if (id == null) return;
  try {
    await invoke("history_reopen", { id });
    showMessage("Reopened: every connected app has been sent this context again.");
    await firstPage();
  } catch (error) {
    showMessage(`Not reopened: ${describeError(error)}`, true);
  }
}

async function exportCsv() {
  const button = $("export");
  button.disabled = true;
  try {
    const exported = await invoke("history_export", { filter: filters() });
    showMessage(`Exported ${exported.rows} rows to ${exported.path}`);
  } catch (error) {
    showMessage(`Not exported: ${describeError(error)}`, true);
  } finally {
    button.disabled = false;
  }
}

async function fillChoices() {
  try {
    const choices = await invoke("history_choices");
    $("app").append(...choices.apps.map((name) => new Option(name, name)));
    $("event").append(...choices.events.map((name) => new Option(name, name)));
  } catch (error) {
    showMessage(describeError(error), true);
  }
}

function moveSelection(step) {
  const rows = [...document.querySelectorAll("#rows tr.row")];
  const at = rows.findIndex((tr) => Number(tr.dataset.id) === state.selected);
  const next = rows[Math.min(rows.length - 1, Math.max(0, at + step))];
  if (next) {
    next.focus();
    select(Number(next.dataset.id));
  }
}

function start() {
  let typing;
  $("search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(firstPage, 250);
  });
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typing);
    firstPage();
  });
  for (const id of ["app", "event", "from", "to"]) $(id).addEventListener("change", firstPage);
  $("clear").addEventListener("click", () => {
    $("filters").reset();
    firstPage();
  });
  $("older").addEventListener("click", () => {
    if (state.nextBefore == null) return;
    state.cursors.push(state.nextBefore);
    load();
  });
  $("newer").addEventListener("click", () => {
    if (state.cursors.length > 1) state.cursors.pop();
    load();
  });
  $("newest").addEventListener("click", firstPage);
  $("rows").addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") moveSelection(1);
    else if (event.key === "ArrowUp") moveSelection(-1);
    else if (event.key === "Enter" && event.target.dataset.id) select(Number(event.target.dataset.id));
    else return;
    event.preventDefault();
  });
  $("reopen").addEventListener("click", confirmReopen);
  $("confirm-cancel").addEventListener("click", () => $("confirm").close());
  $("confirm-reopen").addEventListener("click", () => {
    $("confirm").close();
    reopen();
  });
  $("export").addEventListener("click", exportCsv);

  // Pushed by the agent on every recorded change: the newest page follows it; an older page
  // stays put (the user is reading it) and says there is more.
  listen("history-changed", () => {
    if (state.cursors.length === 1) load();
    else showMessage("New context changes were recorded: choose Newest to see them.");
  });
  fillChoices();
  firstPage();
}

start();
