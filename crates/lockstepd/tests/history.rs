//! `lockstepd history` on a real database file: paging past the store's page size, and the
//! CSV export the history window writes too.

mod common;
use common::cli;
use lockstep_fhircast::summary::ContextSummary;
use lockstep_store::{HistoryRecord, Store, StoreOptions};
use serde_json::{Value, json};
use std::collections::HashSet;

fn config(db: &std::path::Path) -> String {
    format!(
        "[hub]\nport = 0\n\n[history]\ndatabase = \"{}\"\n",
        db.display()
    )
}

/// A database of `count` opens, `e0` the oldest; `summary(n)` describes entry n.
fn seed(db: &std::path::Path, count: usize, summary: impl Fn(usize) -> ContextSummary) {
    let store = Store::open(db, StoreOptions::default()).unwrap();
    let writer = store.writer().unwrap();
    for n in 0..count {
        let event = json!({ "timestamp": "2026-01-01T00:00:00Z", "id": format!("e{n}"),
            "event": { "hub.topic": "T", "hub.event": "Patient-open", "context": [] } });
        writer.record_history(
            HistoryRecord::new(
                "T",
                "Patient-open",
                format!("e{n}"),
                "RIS",
                event.to_string(),
            )
            .with_summary(summary(n)),
        );
    }
    writer.shutdown().unwrap();
}

#[test]
fn history_pages_past_the_store_s_page_size_instead_of_cutting_it_short() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lockstep.db");
    seed(&db, 2500, |_| ContextSummary::default());
    let text = config(&db);
    for (limit, expected) in [(1200, 1200), (5000, 2500)] {
        let history = cli(&text, &["history", "--json", &format!("limit={limit}")]);
        assert!(history.status.success());
        let ids: Vec<String> = String::from_utf8_lossy(&history.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["event_id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids.len(), expected, "limit={limit}");
        assert_eq!(
            ids.iter().collect::<HashSet<_>>().len(),
            expected,
            "no row twice"
        );
        assert_eq!(ids[0], "e2499", "newest first");
    }
}

#[test]
fn csv_export_writes_every_matching_entry_quoted_and_defused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lockstep.db");
    seed(&db, 1500, |n| ContextSummary {
        event: "Patient-open".into(),
        patient_name: Some(if n % 2 == 0 { "DOE, Jane" } else { "ROE, Rich" }.into()),
        patient_mrn: Some(format!("MRN-{n}")),
        study_description: Some("=HYPERLINK(\"http://x\")".into()),
        ..ContextSummary::default()
    });
    let text = config(&db);
    let out = dir.path().join("export.csv");
    // `limit` is only the page size: the export is every entry the filters match.
    let export = cli(
        &text,
        &[
            "history",
            "--csv",
            "--output",
            out.to_str().unwrap(),
            "text=doe",
            "limit=10",
        ],
    );
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(String::from_utf8_lossy(&export.stderr).contains("750 history entries exported"));
    let csv = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(
        lines[0],
        "time (UTC),event,patient,birth date,MRN,accession,modality,study,report status,app,\
         event id,history id"
    );
    assert_eq!(lines.len(), 1 + 750);
    let newest = lines[1];
    assert!(
        newest.contains(
            ",Patient-open,\"DOE, Jane\",,MRN-1498,,,\"'=HYPERLINK(\"\"http://x\"\")\",,RIS,e1498,"
        ),
        "{newest}"
    );
    // Standard output when no file is named; the same rows.
    let to_stdout = cli(&text, &["history", "--csv", "text=doe"]);
    assert_eq!(String::from_utf8(to_stdout.stdout).unwrap(), csv);
    // --csv and --json are one or the other.
    assert!(!cli(&text, &["history", "--csv", "--json"]).status.success());
}
