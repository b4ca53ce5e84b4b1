// The current-context window: asks the shell for the context once, then follows its changes.

const { invoke } = window.__TAURI__.core;
const { listen } = window.__TAURI__.event;

const CHANGED_EVENT = "context-changed";

const $ = (id) => document.getElementById(id);

// Every value is set with textContent, never as markup: names and descriptions come from
// other applications and must not be able to inject anything into this page.
function setField(id, value) {
  const element = $(id);
  element.textContent = value ?? "";
  const row = element.closest("div");
  if (row) row.hidden = value == null;
}

function render(context) {
  const { patient, study } = context;
  $("context").dataset.state = patient ? "patient" : "empty";
  $("eyebrow").textContent = patient ? "Patient in context" : "Current context";
  $("patient-name").textContent = patient ? (patient.name ?? "Unnamed patient") : context.headline;

  $("patient-facts").hidden = !patient;
  setField("patient-birth-date", patient?.birthDate);
  setField("patient-sex", patient?.sex);
  setField("patient-mrn", patient?.mrn);
  $("patient-mrn-issuer").textContent = patient?.mrnIssuer ?? "";

  $("study").hidden = !study;
  setField("study-accession", study?.accession);
  setField("study-modality", study?.modality);
  setField("study-description", study?.description);
  setField("study-report-status", study?.reportStatus);

  $("hub-url").textContent = context.hubUrl;
  $("problem").hidden = true;
}

// A failure must not leave the last patient on screen looking current.
function renderProblem(error) {
  $("context").dataset.state = "problem";
  $("eyebrow").textContent = "Current context";
  $("patient-name").textContent = "Context unknown";
  $("patient-facts").hidden = true;
  $("study").hidden = true;
  const problem = $("problem");
  problem.textContent = error?.message ?? String(error);
  problem.hidden = false;
}

async function start() {
  try {
    // Listen before asking, so a change that lands between the two is not lost.
    await listen(CHANGED_EVENT, (event) => render(event.payload));
    render(await invoke("current_context"));
  } catch (error) {
    renderProblem(error);
  }
}

start();
