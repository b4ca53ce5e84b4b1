//! History: what is stored for a context change, and finding it again.

mod common;

use common::{accession, event_json, fresh, mrn, record, study_uid};
use lockstep_fhircast::summary::ContextSummary;
use lockstep_store::{HistoryQuery, HistoryRecord, Store, StoreWriter};
use std::collections::HashSet;
use time::OffsetDateTime;
use time::macros::datetime;

fn write_all(store: &Store, records: impl IntoIterator<Item = HistoryRecord>) -> StoreWriter {
    let writer = store.writer().unwrap();
    for r in records {
        assert!(writer.record_history(r));
    }
    writer.flush_blocking().unwrap();
    writer
}

fn ids(entries: &[lockstep_store::HistoryEntry]) -> Vec<i64> {
    entries.iter().map(|e| e.id).collect()
}

#[test]
fn a_change_is_stored_with_its_summary_and_exact_json() {
    let (_dir, store) = fresh();
    let at = datetime!(2025-05-06 07:08:09.123 UTC);
    let rec = record(7).at(at);
    let json = rec.event_json.clone();
    write_all(&store, [rec]);

    let entries = store.history(&HistoryQuery::default()).unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.at, "2025-05-06T07:08:09.123Z");
    assert_eq!(e.at_ms, 1_746_515_289_123);
    assert_eq!(e.topic, "DrXRay");
    assert_eq!(e.event, "ImagingStudy-open");
    assert_eq!(e.event_id, "evt-7");
    assert_eq!(e.app, "RIS");
    assert_eq!(e.event_json, json, "event JSON is kept byte for byte");
    let s = &e.summary;
    assert_eq!(s.event, "ImagingStudy-open");
    assert_eq!(s.patient_name.as_deref(), Some("NGUYEN, Linh Q"));
    assert_eq!(s.patient_mrn.as_deref(), Some(mrn(7).as_str()));
    assert_eq!(s.patient_mrn_issuer.as_deref(), Some("General Hospital"));
    assert_eq!(s.patient_birth_date.as_deref(), Some("1937-08-17"));
    assert_eq!(s.patient_sex.as_deref(), Some("male"));
    assert_eq!(s.study_accession.as_deref(), Some(accession(7).as_str()));
    assert_eq!(s.study_uid.as_deref(), Some(study_uid(7).as_str()));
    assert_eq!(s.study_modality.as_deref(), Some("CR"));
    assert_eq!(s.study_description.as_deref(), Some("XR chest 2 views"));
    assert_eq!(s.report_status, None);

    assert_eq!(store.history_entry(e.id).unwrap().as_ref(), Some(e));
    assert_eq!(store.history_entry(e.id + 1).unwrap(), None);
}

#[test]
fn events_without_context_are_stored_with_an_empty_summary() {
    let (_dir, store) = fresh();
    let json = r#"{"timestamp":"t","id":"x1","event":{"hub.topic":"T","hub.event":"UserLogout","context":[]}}"#;
    write_all(
        &store,
        [HistoryRecord::new("T", "UserLogout", "x1", "Tray", json)],
    );
    let e = store.history(&HistoryQuery::default()).unwrap().remove(0);
    assert_eq!(
        e.summary,
        ContextSummary {
            event: "UserLogout".into(),
            ..Default::default()
        }
    );
    assert_eq!(e.event_json, json);
}

#[test]
fn pages_newest_first_without_gaps_or_repeats() {
    let (_dir, store) = fresh();
    write_all(&store, (0..35).map(record));

    let mut query = HistoryQuery {
        limit: 10,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.history(&query).unwrap();
        pages += 1;
        seen.extend(page.iter().map(|e| e.event_id.clone()));
        match query.next_page(&page) {
            Some(next) => query = next,
            None => break,
        }
    }
    assert_eq!(pages, 4);
    let expected: Vec<String> = (0..35).rev().map(|i| format!("evt-{i}")).collect();
    assert_eq!(seen, expected);
}

#[test]
fn next_page_is_none_after_a_short_page_and_limit_is_clamped() {
    let (_dir, store) = fresh();
    write_all(&store, (0..3).map(record));
    let q = HistoryQuery {
        limit: 0,
        ..Default::default()
    };
    let page = store.history(&q).unwrap();
    assert_eq!(page.len(), 1, "a zero limit means one row, not all of them");
    let q = HistoryQuery {
        limit: 5,
        ..Default::default()
    };
    let page = store.history(&q).unwrap();
    assert_eq!(page.len(), 3);
    assert!(q.next_page(&page).is_none());
}

#[test]
fn filters_by_patient_accession_uid_event_and_app() {
    let (_dir, store) = fresh();
    let mut records: Vec<HistoryRecord> = (0..20).map(record).collect();
    records[3].app = "PACS".into();
    records[4].event = "ImagingStudy-close".into();
    write_all(&store, records);

    let q = |f: &dyn Fn(&mut HistoryQuery)| {
        let mut q = HistoryQuery::default();
        f(&mut q);
        store.history(&q).unwrap()
    };
    // mrn(i) repeats every 500 events, so each MRN is one patient here.
    let by_patient = q(&|q| q.patient_identifier = Some(mrn(5)));
    assert_eq!(by_patient.len(), 1);
    assert_eq!(by_patient[0].event_id, "evt-5");

    let by_accession = q(&|q| q.accession = Some(accession(11)));
    assert_eq!(by_accession[0].event_id, "evt-11");
    assert_eq!(by_accession.len(), 1);

    let by_uid = q(&|q| q.study_uid = Some(format!("urn:oid:{}", study_uid(12))));
    assert_eq!(ids(&by_uid).len(), 1);
    assert_eq!(by_uid[0].event_id, "evt-12");

    let by_event = q(&|q| q.event = Some("imagingstudy-CLOSE".into()));
    assert_eq!(by_event.len(), 1, "event names match ignoring case");
    assert_eq!(by_event[0].event_id, "evt-4");

    let by_app = q(&|q| q.app = Some("PACS".into()));
    assert_eq!(by_app.len(), 1);
    assert_eq!(by_app[0].event_id, "evt-3");

    let none = q(&|q| {
        q.app = Some("PACS".into());
        q.accession = Some(accession(4));
    });
    assert!(none.is_empty(), "filters combine with AND");

    let blank = q(&|q| q.app = Some("  ".into()));
    assert_eq!(blank.len(), 20, "a blank filter is no filter");
}

#[test]
fn filters_by_time_range_from_inclusive_to_exclusive() {
    let (_dir, store) = fresh();
    let base = datetime!(2025-01-01 00:00 UTC);
    write_all(
        &store,
        (0..10).map(|i| record(i).at(base + time::Duration::minutes(i as i64))),
    );
    let q = HistoryQuery {
        from: Some(base + time::Duration::minutes(3)),
        to: Some(base + time::Duration::minutes(6)),
        ..Default::default()
    };
    let got: Vec<String> = store
        .history(&q)
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(got, ["evt-5", "evt-4", "evt-3"]);
}

#[test]
fn free_text_matches_words_in_any_field_ignoring_case() {
    let (_dir, store) = fresh();
    write_all(&store, (0..20).map(record));
    let text = |t: &str| {
        let q = HistoryQuery {
            text: Some(t.into()),
            limit: 100,
            ..Default::default()
        };
        store
            .history(&q)
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect::<HashSet<_>>()
    };
    let expect = |ids: &[usize]| {
        ids.iter()
            .map(|i| format!("evt-{i}"))
            .collect::<HashSet<_>>()
    };

    // Family names cycle every 10 patients: 1 and 11 are Müller.
    assert_eq!(text("müller"), expect(&[1, 11]));
    assert_eq!(text("MÜLLER"), expect(&[1, 11]), "non-ASCII case folds too");
    assert_eq!(text("o'brien"), expect(&[3, 13]));
    assert_eq!(text(&accession(17).to_lowercase()), expect(&[17]));
    assert_eq!(text(&mrn(8)), expect(&[8]));
    assert_eq!(text("brain"), expect(&[1, 6, 11, 16]));
    assert_eq!(
        text("brain müller"),
        expect(&[1, 11]),
        "every word must match"
    );
    // Jane is the given name of patients 0, 8 and 16; only 16 had a brain MR.
    assert_eq!(text("Jane brain"), expect(&[16]));
    assert_eq!(text("nobody"), expect(&[]));
}

#[test]
fn like_wildcards_in_free_text_match_only_themselves() {
    let (_dir, store) = fresh();
    let mut plain = record(1);
    plain.summary.as_mut().unwrap().study_description = Some("Chest 2 views".into());
    let mut percent = record(2);
    percent.summary.as_mut().unwrap().study_description = Some("dose 100% of protocol".into());
    write_all(&store, [plain, percent]);
    let find = |t: &str| {
        store
            .history(&HistoryQuery {
                text: Some(t.into()),
                ..Default::default()
            })
            .unwrap()
            .len()
    };
    assert_eq!(find("100%"), 1);
    assert_eq!(find("%"), 1);
    assert_eq!(find("_"), 0);
    assert_eq!(find("chest"), 1);
}

#[test]
fn reads_see_new_records_while_the_writer_runs() {
    let (_dir, store) = fresh();
    let writer = write_all(&store, (0..5).map(record));
    assert_eq!(store.history(&HistoryQuery::default()).unwrap().len(), 5);
    assert!(writer.record_history(record(5)));
    writer.flush_blocking().unwrap();
    let newest = store.history(&HistoryQuery::default()).unwrap();
    assert_eq!(newest.len(), 6);
    assert_eq!(newest[0].event_id, "evt-5");
    assert!(newest[0].at_ms <= OffsetDateTime::now_utc().unix_timestamp() * 1000 + 1000);
    assert_eq!(event_json(5), newest[0].event_json);
}

#[test]
fn time_windows_are_exact_whichever_way_the_query_walks() {
    // Wide and narrow windows take different query plans; a clock that stepped back makes
    // ids and times disagree. The rows returned must not depend on either.
    let (_dir, store) = fresh();
    let base = datetime!(2025-01-01 00:00 UTC);
    let minutes = |i: usize| -> i64 {
        match i {
            150..=159 => 10 + i as i64 - 150, // the clock stepped back for a while
            _ => i as i64,
        }
    };
    write_all(
        &store,
        (0..300).map(|i| record(i).at(base + time::Duration::minutes(minutes(i)))),
    );
    for (from, to) in [
        (0, 300),
        (5, 295),
        (100, 110),
        (0, 20),
        (280, 400),
        (10, 20),
    ] {
        let mut query = HistoryQuery {
            from: Some(base + time::Duration::minutes(from)),
            to: Some(base + time::Duration::minutes(to)),
            limit: 7,
            ..Default::default()
        };
        let mut got = Vec::new();
        loop {
            let page = store.history(&query).unwrap();
            got.extend(page.iter().map(|e| e.event_id.clone()));
            match query.next_page(&page) {
                Some(next) => query = next,
                None => break,
            }
        }
        let expected: Vec<String> = (0..300)
            .rev()
            .filter(|i| (from..to).contains(&minutes(*i)))
            .map(|i| format!("evt-{i}"))
            .collect();
        assert_eq!(got, expected, "window {from}..{to}");
    }
}
