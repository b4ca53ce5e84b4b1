//! Audit: an append-only, hash-chained trail that shows tampering, and its exports.

mod common;

use common::{db_path, fresh, open};
use lockstep_store::{
    AuditEntry, AuditFormat, AuditKind, AuditQuery, AuditRecord, ChainBreak, Store, StoreOptions,
};
use rusqlite::Connection;
use time::macros::datetime;

fn append(store: &Store, records: impl IntoIterator<Item = AuditRecord>) {
    let writer = store.writer().unwrap();
    for r in records {
        assert!(writer.record_audit(r));
    }
    writer.shutdown().unwrap();
}

fn delivery(i: usize) -> AuditRecord {
    AuditRecord::new(AuditKind::DeliveryAcknowledged, "PACS", "200")
        .topic("DrXRay")
        .subject(format!("evt-{i}"))
}

/// A raw connection, as someone with the file and a SQL shell would have, with the guard
/// triggers dropped so the test reaches the chain itself.
fn tamper(store: &Store) -> Connection {
    let conn = Connection::open(store.path()).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    conn
}

fn all(store: &Store) -> Vec<AuditEntry> {
    store
        .audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
}

#[test]
fn kinds_have_stable_strings() {
    // These strings are in files and exports in the field: changing one is a breaking change.
    let pinned: Vec<&str> = AuditKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        pinned,
        [
            "token.issued",
            "token.refused",
            "subscription.granted",
            "subscription.denied",
            "subscription.expired",
            "subscription.unsubscribed",
            "delivery.acknowledged",
            "delivery.refused",
            "delivery.timed_out",
            "sync_error",
            "config.changed",
            "history.reopened",
            "store.overflow",
            "store.write_failed",
            "store.pruned",
            "bridge.link",
            "bridge.action",
            "bridge.rejected",
        ]
    );
}

#[test]
fn acknowledgements_of_one_event_written_together_share_a_row() {
    let (_dir, store) = fresh();
    let ack = |who: &str, event: &str, status: &str| {
        AuditRecord::new(
            AuditKind::DeliveryAcknowledged,
            who,
            format!("Patient-open: {status}"),
        )
        .topic("DrXRay")
        .subject(event)
    };
    let writer = store.writer().unwrap();
    for record in [
        ack("PACS", "evt-1", "200"),
        ack("RIS", "evt-1", "200"),
        AuditRecord::new(AuditKind::DeliveryRefused, "EHR", "Patient-open: 409")
            .topic("DrXRay")
            .subject("evt-1"),
        ack("PACS", "evt-2", "200"),
        ack("Dictation, east", "evt-1", "200"),
        ack("Viewer", "evt-1", "202"),
        // A client id that merely looks like a list stays one actor.
        ack("[not json", "evt-3", "200"),
    ] {
        assert!(writer.record_audit(record));
    }
    writer.flush_blocking().unwrap();
    assert_eq!(writer.stats().committed, 7);

    let rows = all(&store);
    let summary: Vec<(String, Vec<String>, String)> = rows
        .iter()
        .rev()
        .map(|r| (r.subject.clone().unwrap(), r.actors(), r.detail.clone()))
        .collect();
    let names = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        [
            (
                "evt-1".into(),
                names(&["PACS", "RIS", "Dictation, east"]),
                "Patient-open: 200".into()
            ),
            ("evt-1".into(), names(&["EHR"]), "Patient-open: 409".into()),
            ("evt-2".into(), names(&["PACS"]), "Patient-open: 200".into()),
            (
                "evt-1".into(),
                names(&["Viewer"]),
                "Patient-open: 202".into()
            ),
            (
                "evt-3".into(),
                names(&["[not json"]),
                "Patient-open: 200".into()
            ),
        ]
    );
    assert!(store.verify_audit().unwrap().is_intact());

    // Asking for one app finds the rows it shares with others, and only those.
    let by_actor = |actor: &str| {
        store
            .audit(&AuditQuery {
                actor: Some(actor.into()),
                ..Default::default()
            })
            .unwrap()
            .iter()
            .map(|r| r.subject.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(by_actor("PACS"), ["evt-2", "evt-1"]);
    assert_eq!(by_actor("Dictation, east"), ["evt-1"]);
    assert_eq!(by_actor("[not json"), ["evt-3"]);
    assert!(by_actor("Dictation").is_empty());
}

#[test]
fn rows_are_stored_as_given_and_read_newest_first() {
    let (_dir, store) = fresh();
    let at = datetime!(2025-02-03 04:05:06.789 UTC);
    append(
        &store,
        [
            AuditRecord::new(AuditKind::TokenIssued, "ris-client", "scopes: user/*.read").at(at),
            AuditRecord::new(AuditKind::SubscriptionGranted, "ris-client", "events: *")
                .topic("DrXRay")
                .subject("RIS"),
            delivery(1),
        ],
    );
    let rows = all(&store);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        [3, 2, 1],
        "newest first, ids count from 1"
    );
    let first = &rows[2];
    assert_eq!(first.kind(), Some(AuditKind::TokenIssued));
    assert_eq!(first.kind, "token.issued");
    assert_eq!(first.at, "2025-02-03T04:05:06.789Z");
    assert_eq!(first.actor, "ris-client");
    assert_eq!(first.topic, None);
    assert_eq!(first.subject, None);
    assert_eq!(first.detail, "scopes: user/*.read");
    assert_eq!(first.hash.len(), 64);
    assert_eq!(rows[1].topic.as_deref(), Some("DrXRay"));
    assert_eq!(rows[1].subject.as_deref(), Some("RIS"));

    let by_kind = store
        .audit(&AuditQuery {
            kind: Some(AuditKind::DeliveryAcknowledged),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_kind.len(), 1);
    assert_eq!(by_kind[0].subject.as_deref(), Some("evt-1"));
    let by_subject = store
        .audit(&AuditQuery {
            subject: Some("RIS".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_subject.len(), 1);
    let page = store
        .audit(&AuditQuery {
            before_id: Some(3),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
}

#[test]
fn an_untouched_chain_verifies() {
    let (_dir, store) = fresh();
    let empty = store.verify_audit().unwrap();
    assert!(empty.is_intact());
    assert_eq!(empty.rows_checked, 0);
    assert_eq!(empty.head_hash, "0".repeat(64));

    append(&store, (0..50).map(delivery));
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.rows_checked, 50);
    assert_eq!(report.last_id, Some(50));
    assert_eq!(report.checkpoint_id, None);
    assert_eq!(report.head_hash, all(&store)[0].hash);
}

#[test]
fn the_chain_continues_across_writers_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir, StoreOptions::default());
        append(&store, (0..5).map(delivery));
        append(&store, (5..10).map(delivery));
    }
    let store = open(&dir, StoreOptions::default());
    append(&store, (10..15).map(delivery));
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.rows_checked, 15);
}

#[test]
fn two_writers_on_one_file_keep_one_chain() {
    // Two processes (the agent and a CLI verb) may append at once; each batch chains from
    // the file's head, not from what its writer last wrote.
    let (dir, store) = fresh();
    let other = open(&dir, StoreOptions::default());
    let a = store.writer().unwrap();
    let b = other.writer().unwrap();
    for i in 0..400 {
        assert!(a.record_audit(delivery(i)));
        assert!(b.record_audit(delivery(i + 1000)));
        if i % 50 == 0 {
            a.flush_blocking().unwrap();
        }
    }
    a.shutdown().unwrap();
    b.shutdown().unwrap();
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.rows_checked, 800);
    assert_eq!(db_path(&dir), store.path());
}

#[test]
fn the_file_refuses_casual_updates_and_deletes() {
    let (_dir, store) = fresh();
    append(&store, (0..3).map(delivery));
    let conn = Connection::open(store.path()).unwrap();
    let update = conn.execute("UPDATE audit SET detail = 'x' WHERE id = 2", []);
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = conn.execute("DELETE FROM audit WHERE id = 1", []);
    assert!(delete.unwrap_err().to_string().contains("pruning"));
    assert!(store.verify_audit().unwrap().is_intact());
}

#[test]
fn an_altered_row_is_reported_as_the_first_broken_one() {
    let (_dir, store) = fresh();
    append(&store, (0..20).map(delivery));
    tamper(&store)
        .execute("UPDATE audit SET detail = '500' WHERE id = 7", [])
        .unwrap();
    let report = store.verify_audit().unwrap();
    let broken = report.broken.clone().expect("tampering must show");
    assert_eq!(broken.id, 7);
    assert_eq!(broken.reason, ChainBreak::HashMismatch);
    assert_eq!(report.rows_checked, 6);
    assert_eq!(report.last_id, Some(6));
    assert_eq!(broken.to_string(), "audit row 7 does not match its hash");
}

#[test]
fn every_column_is_covered_by_the_hash() {
    for (column, value) in [
        ("at_ms", "at_ms + 1"),
        ("at", "'2000-01-01T00:00:00.000Z'"),
        ("kind", "'token.issued'"),
        ("actor", "'someone else'"),
        ("topic", "NULL"),
        ("subject", "'evt-999'"),
        ("detail", "detail || ' '"),
        ("hash", "zeroblob(32)"),
    ] {
        let (_dir, store) = fresh();
        append(&store, (0..5).map(delivery));
        tamper(&store)
            .execute(
                &format!("UPDATE audit SET {column} = {value} WHERE id = 3"),
                [],
            )
            .unwrap();
        let broken = store.verify_audit().unwrap().broken;
        assert_eq!(broken.map(|b| b.id), Some(3), "changing {column} must show");
    }
}

#[test]
fn a_deleted_row_is_reported_missing() {
    let (_dir, store) = fresh();
    append(&store, (0..20).map(delivery));
    tamper(&store)
        .execute("DELETE FROM audit WHERE id IN (12, 13)", [])
        .unwrap();
    let broken = store.verify_audit().unwrap().broken.unwrap();
    assert_eq!(broken.id, 12);
    assert_eq!(broken.reason, ChainBreak::OutOfSequence { found: 14 });
}

#[test]
fn a_deleted_row_with_renumbered_successors_still_shows() {
    let (_dir, store) = fresh();
    append(&store, (0..10).map(delivery));
    let conn = tamper(&store);
    conn.execute("DELETE FROM audit WHERE id = 4", []).unwrap();
    conn.execute("UPDATE audit SET id = id - 1 WHERE id > 4", [])
        .unwrap();
    let broken = store.verify_audit().unwrap().broken.unwrap();
    assert_eq!(broken.id, 4);
    assert_eq!(broken.reason, ChainBreak::HashMismatch);
}

#[test]
fn csv_export_has_a_header_and_quotes_what_needs_it() {
    let (_dir, store) = fresh();
    let at = datetime!(2025-02-03 04:05:06.789 UTC);
    append(
        &store,
        [
            AuditRecord::new(
                AuditKind::TokenRefused,
                "app,with comma",
                "bad \"secret\"\nretry",
            )
            .at(at),
            AuditRecord::new(AuditKind::ConfigChanged, "user", "hub.port").at(at),
        ],
    );
    let rows = all(&store);
    let mut out = Vec::new();
    assert_eq!(store.export_audit(AuditFormat::Csv, &mut out).unwrap(), 2);
    let csv = String::from_utf8(out).unwrap();
    let expected = format!(
        "id,at,at_ms,kind,actor,topic,subject,detail,hash\r\n\
         1,2025-02-03T04:05:06.789Z,1738555506789,token.refused,\"app,with comma\",,,\
         \"bad \"\"secret\"\"\nretry\",{}\r\n\
         2,2025-02-03T04:05:06.789Z,1738555506789,config.changed,user,,,hub.port,{}\r\n",
        rows[1].hash, rows[0].hash
    );
    assert_eq!(csv, expected);
}

#[test]
fn json_lines_export_has_one_object_per_row_matching_the_store() {
    let (_dir, store) = fresh();
    append(&store, (0..10).map(delivery));
    append(
        &store,
        [AuditRecord::new(
            AuditKind::SyncError,
            "hub",
            "tab\t \"quoted\" ünïcode",
        )],
    );
    let mut out = Vec::new();
    assert_eq!(
        store
            .export_audit(AuditFormat::JsonLines, &mut out)
            .unwrap(),
        11
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with('\n'));
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 11);
    let mut stored = all(&store);
    stored.reverse();
    for (line, row) in lines.iter().zip(&stored) {
        assert_eq!(line, &serde_json::to_value(row).unwrap());
    }
    assert_eq!(lines[10]["detail"], "tab\t \"quoted\" ünïcode");
    assert_eq!(lines[0]["kind"], "delivery.acknowledged");
    assert_eq!(lines[0]["topic"], "DrXRay");
    assert_eq!(
        lines[10]["hash"],
        store.verify_audit().unwrap().head_hash.as_str()
    );
}

#[test]
fn export_fails_cleanly_when_the_output_does() {
    struct Broken;
    impl std::io::Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let (_dir, store) = fresh();
    append(&store, (0..3).map(delivery));
    let err = store.export_audit(AuditFormat::Csv, Broken).unwrap_err();
    assert!(matches!(err, lockstep_store::StoreError::Io(_)), "{err}");
}
