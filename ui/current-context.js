// The current-context window: asks the shell for everything once, then follows the changes the
// agent pushes (context, connected apps, state). Nothing here polls.

import { $, el, invoke, listen, describeError, formatWhen } from "./lib.js";

// Hidden rows stay out of the layout; a value of null hides its row.
function setField(id, value) {
  const element = $(id);
  element.textContent = value ?? "";
  const row = element.closest("div");
  if (row) row.hidden = value == null;
}

const VERBS = { open: "Opened", close: "Closed", update: "Updated", select: "Selected" };

function verbOf(event) {
  const kind = event.split("-")[1]?.toLowerCase();
  return VERBS[kind] ?? "Changed";
}

function renderContext(context) {
  const { patient, study, report, change } = context;
  const main = $("context");
  main.dataset.state = patient ? "patient" : "empty";
  $("eyebrow").textContent = patient ? "Patient in context" : "Current context";
  $("patient-name").textContent = patient ? (patient.name ?? "Unnamed patient") : context.headline;

  $("patient-facts").hidden = !patient;
  setField("patient-birth-date", patient?.birthDate);
  setField("patient-sex", patient?.sex);

  const identifiers = $("identifiers");
  identifiers.replaceChildren(
    ...(patient?.identifiers ?? []).map((identifier) => {
      const item = el("li");
      // Always three cells, so the grid's columns stay aligned when an issuer is unknown.
      item.append(
        el("span", "label", identifier.label),
        el("strong", "value", identifier.value),
        el("small", "issuer", identifier.issuer ?? ""),
      );
      return item;
    }),
  );
  identifiers.hidden = identifiers.children.length === 0;

  $("study").hidden = !study;
  setField("study-accession", study?.accession);
  setField("study-modality", study?.modality);
  setField("study-date", study?.date);
  setField("study-description", study?.description);

  $("report").hidden = !report;
  setField("report-status", report?.status);

  $("change").hidden = !change;
  if (change) {
    const at = new Date(change.at);
    $("change-verb").textContent = verbOf(change.event);
    $("change-at").textContent = formatWhen(at);
    $("change-at").dateTime = change.at;
    $("change-app").textContent = change.app;
    $("change-event").textContent = `(${change.event})`;
  }

  $("hub-url").textContent = context.hubUrl;
  $("problem").hidden = true;
}

function renderLinks(links) {
  const list = $("links");
  list.replaceChildren(
    ...links.map((link) => {
      const item = el("li", "link-row");
      item.dataset.state = link.state;
      item.dataset.problem = String(link.problem);
      const head = el("div", "link-head");
      head.append(el("span", "link-name", link.name));
      // What the app calls itself, where site IT registered it under another name.
      if (link.ownName) head.append(el("span", "own-name", `“${link.ownName}”`));
      if (link.kind === "bridge") head.append(el("span", "kind", "bridge"));
      if (link.kind === "upstream") head.append(el("span", "kind", "site hub"));
      if (link.via) head.append(el("span", "kind", `via ${link.via}`));
      head.append(el("span", "pill", link.stateLabel));
      item.append(head);
      if (link.detail) item.append(el("p", "link-detail", link.detail));
      const since = el("p", "link-since", `since ${formatWhen(new Date(link.since))}`);
      item.append(since);
      if (link.kind === "app" && !link.via) {
        // The app's report card, on request: what the agent observed of it.
        const more = el("button", "link-report-toggle", "Report card");
        more.type = "button";
        more.addEventListener("click", () => showReport(item, link));
        item.append(more);
      }
      return item;
    }),
  );
  $("no-links").hidden = links.length > 0;
}

/// Shows (or hides) an app's report card under its row.
async function showReport(item, link) {
  const shown = item.querySelector(".link-report");
  if (shown) {
    shown.remove();
    return;
  }
  let cards;
  try {
    cards = await invoke("app_reports");
  } catch (error) {
    renderProblem(error);
    return;
  }
  const card = cards.find(
    (c) => c.client_id === link.clientId && (c.own_name ?? null) === (link.ownName ?? null),
  );
  const report = el("dl", "link-report");
  const row = (term, value) => report.append(el("dt", "", term), el("dd", "", value));
  if (!card) {
    row("Observed", "nothing yet");
  } else {
    const ms = (v) => (v == null ? "–" : `${v.toFixed(1)} ms`);
    const statuses = Object.entries(card.statuses).map(([s, n]) => `${s}×${n}`).join(" ");
    row("Subscriptions", `${card.subscribed} granted, ${card.connected} connected`);
    row("Answers", `${card.acknowledged} acknowledged, ${card.refused} refused, ${card.timed_out} missed`);
    row("Answer time", `p50 ${ms(card.answer_p50_ms)}, p99 ${ms(card.answer_p99_ms)}`);
    row("Statuses", statuses || "none yet");
    const least = card.least_lease_left_seconds;
    row(
      "Leases",
      `${card.renewals} renewed${least == null ? "" : ` (at least ${least} s left)`}, ${card.lease_expired} ran out`,
    );
    row("Dropped by the hub", String(card.dropped));
    const refusedRequests = Object.entries(card.requests_refused)
      .map(([s, n]) => `${s}×${n}`)
      .join(" ");
    row("Its requests refused", refusedRequests || "none");
    if (card.last_refusal) row("Last refused because", card.last_refusal);
  }
  item.append(report);
}

const BANNERS = {
  paused: "Paused: context changes are refused until you resume.",
  problem: "An app did not follow the last change: see Connected apps below.",
};

function renderStatus(status) {
  const banner = $("status-banner");
  // History that cannot be written: the agent says why and what follows, in full.
  const text = status.detail ?? BANNERS[status.status];
  banner.hidden = !text;
  banner.dataset.status = status.status;
  $("status-text").textContent = text ?? "";
  $("resume").hidden = status.status !== "paused";
  document.body.dataset.status = status.status;
}

// A failure must not leave the last patient on screen looking current.
function renderProblem(error) {
  $("context").dataset.state = "problem";
  $("eyebrow").textContent = "Current context";
  $("patient-name").textContent = "Context unknown";
  for (const id of ["patient-facts", "identifiers", "study", "report", "change"]) $(id).hidden = true;
  const problem = $("problem");
  problem.textContent = describeError(error);
  problem.hidden = false;
}

async function start() {
  $("resume").addEventListener("click", () => invoke("set_paused", { paused: false }).catch(renderProblem));
  for (const button of document.querySelectorAll("[data-open]")) {
    button.addEventListener("click", () => invoke("open_window", { kind: button.dataset.open }));
  }
  try {
    // Listen before asking, so a change that lands between the two is not lost; a change
    // heard before the answer arrives is newer than the answer, so it wins.
    const heard = new Set();
    const follow = (event, render) =>
      listen(event, (payload) => {
        heard.add(event);
        render(payload);
      });
    await follow("context-changed", renderContext);
    await follow("links-changed", renderLinks);
    await follow("status-changed", renderStatus);
    const view = await invoke("current_view");
    if (!heard.has("context-changed")) renderContext(view.context);
    if (!heard.has("links-changed")) renderLinks(view.links);
    if (!heard.has("status-changed")) renderStatus(view.status);
  } catch (error) {
    renderProblem(error);
  }
}

start();
