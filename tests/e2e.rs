//! The windows end to end, in the real app over WebDriver (tauri-driver + WebKitWebDriver):
//! what an app posts to the hub shows in the current-context window and in history, history
//! finds it and reopens it, settings register an app whose credentials then work, and history
//! pages through 100,000 rows. Windows are opened from the tray, over D-Bus, as a person would.
//!
//! `LOCKSTEP_SCREENSHOTS=docs/screenshots` saves each window as the README shows it.

mod common;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use common::webdriver::{App, webdriver_available};
use common::{PACS, RIS, Subscriber, jane_study, richard};
use lockstep_agent::client::HubClient;
use lockstep_fhircast::summary::ContextSummary;
use lockstep_store::{HistoryRecord, Store, StoreOptions};
use serde_json::json;

const CURRENT: &str = "Lockstep — Current context";
const HISTORY: &str = "Lockstep — Context history";
const SETTINGS: &str = "Lockstep — Settings";
const ABOUT: &str = "About Lockstep";

async fn sign_in(origin: &str, app: (&str, &str)) -> HubClient {
    HubClient::sign_in(origin, app.0, app.1, None)
        .await
        .expect("the app signs in")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_opened_by_an_app_is_shown_listed_found_and_reopened() {
    if !webdriver_available() {
        return;
    }
    let app = App::start("").await;
    app.window(CURRENT).await;
    app.until_text("#patient-name", |t| t == "No patient in context")
        .await;
    assert_eq!(app.text("#links").await.as_deref(), Some(""));

    // The viewer follows; the worklist drives.
    let _pacs = Subscriber::start(
        &app.origin,
        PACS,
        "Patient-open,Patient-close,ImagingStudy-open,ImagingStudy-close",
        200,
    );
    app.until_text("#links", |t| {
        t.contains("PACS viewer") && t.contains("Following")
    })
    .await;

    // How long from the request to the name on screen (reported, not asserted).
    app.run(
        "window.lockstepSeen = null;
         const name = document.getElementById('patient-name');
         new MutationObserver(() => {
           if (name.textContent === 'DOE, Jane' && window.lockstepSeen === null) {
             window.lockstepSeen = Date.now();
           }
         }).observe(name, { childList: true, characterData: true, subtree: true });",
        vec![],
    )
    .await;
    let ris = sign_in(&app.origin, RIS).await;
    let sent = now_ms();
    ris.publish("ImagingStudy-open", jane_study(), None)
        .await
        .expect("ImagingStudy-open accepted");

    app.until_text("#patient-name", |t| t == "DOE, Jane").await;
    let seen = app.run("return window.lockstepSeen;", vec![]).await;
    if let Some(seen) = seen.as_u64() {
        eprintln!(
            "context change on screen {} ms after the request",
            seen.saturating_sub(sent)
        );
    }
    assert_eq!(
        app.text("#eyebrow").await.as_deref(),
        Some("Patient in context")
    );
    assert_eq!(
        app.text("#patient-birth-date").await.as_deref(),
        Some("1970-01-02")
    );
    assert_eq!(app.text("#patient-sex").await.as_deref(), Some("Female"));
    let identifiers = app.texts("#identifiers li").await;
    assert_eq!(identifiers.len(), 2, "{identifiers:?}");
    assert!(
        identifiers[0].starts_with("MRN") && identifiers[0].contains("12345"),
        "{identifiers:?}"
    );
    assert!(
        identifiers[0].contains("St. Elsewhere General"),
        "{identifiers:?}"
    );
    assert!(identifiers[1].contains("999-123-456"), "{identifiers:?}");
    assert_eq!(
        app.text("#study-accession").await.as_deref(),
        Some("ACC-20260412-0042")
    );
    assert_eq!(app.text("#study-modality").await.as_deref(), Some("CT"));
    assert_eq!(
        app.text("#study-date").await.as_deref(),
        Some("2026-04-12 09:31")
    );
    assert_eq!(
        app.text("#study-description").await.as_deref(),
        Some("CT chest with contrast")
    );
    assert_eq!(
        app.text("#change-app").await.as_deref(),
        Some("Radiology worklist")
    );
    assert_eq!(app.text("#change-verb").await.as_deref(), Some("Opened"));
    app.until_text("#links", |t| {
        t.contains("PACS viewer") && t.contains("Following")
    })
    .await;
    app.screenshot("current-context").await;

    ris.publish("Patient-open", richard(), None)
        .await
        .expect("Patient-open accepted");
    app.until_text("#patient-name", |t| t == "ROE, Richard")
        .await;
    assert!(
        app.text("#study").await.is_none(),
        "the last patient's study is still shown"
    );

    // History, from the tray.
    app.tray().click("History…");
    app.window(HISTORY).await;
    let patients = app
        .until("both changes listed", || async {
            let names = app.texts("#rows td.patient .name").await;
            (names.len() == 2).then_some(names)
        })
        .await;
    assert_eq!(patients, ["ROE, Richard", "DOE, Jane"], "newest first");
    assert_eq!(
        app.texts("#rows tr.day th").await.len(),
        1,
        "both rows fall on one day"
    );
    assert!(
        app.text("#rows tr.day th")
            .await
            .unwrap()
            .starts_with("Today")
    );

    // Search by accession, MRN and name, and filter by app and event.
    for (search, expected) in [
        ("ACC-20260412-0042", vec!["DOE, Jane"]),
        ("12345", vec!["DOE, Jane"]),
        ("roe", vec!["ROE, Richard"]),
        ("nobody-by-this-name", vec![]),
    ] {
        app.type_into("#search", search).await;
        app.until(&format!("the rows found by {search:?}"), || async {
            let names = app.texts("#rows td.patient .name").await;
            (names == expected).then_some(())
        })
        .await;
    }
    app.click("#clear").await;
    app.select("#event", "Patient-open").await;
    app.until("Patient-open rows only", || async {
        let names = app.texts("#rows td.patient .name").await;
        (names == ["ROE, Richard"]).then_some(())
    })
    .await;
    app.select("#event", "").await;
    app.select("#app", "PACS viewer").await;
    app.until_text("#no-rows", |t| t == "No context changes match.")
        .await;
    app.select("#app", "Radiology worklist").await;
    app.until("the worklist's rows", || async {
        (app.texts("#rows td.patient .name").await.len() == 2).then_some(())
    })
    .await;
    app.click("#clear").await;
    app.until("both rows again", || async {
        (app.texts("#rows td.patient .name").await.len() == 2).then_some(())
    })
    .await;

    // The full event and how each app answered.
    app.click("#rows tr.row:nth-child(3) td.patient").await;
    app.until_text("#detail-patient", |t| t == "DOE, Jane")
        .await;
    let json = app
        .until_text("#event-json", |t| t.contains("ACC-20260412-0042"))
        .await;
    assert!(
        json.contains("\"hub.event\": \"ImagingStudy-open\""),
        "{json}"
    );
    let outcomes = app
        .until("the viewer's outcome", || async {
            let rows = app.texts("#outcomes tr").await;
            rows.iter()
                .any(|row| row.contains("PACS viewer") && row.contains("Followed"))
                .then_some(rows)
        })
        .await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    app.screenshot("history").await;

    // Reopen, confirmed: every app is sent Jane again, and the hub records who asked.
    app.click("#reopen").await;
    app.until_text("#confirm-patient", |t| {
        t.contains("DOE, Jane") && t.contains("MRN 12345")
    })
    .await;
    app.click("#confirm-reopen").await;
    app.until_text("#message", |t| t.starts_with("Reopened"))
        .await;
    let newest = app
        .until("the reopened row on top", || async {
            let apps = app.texts("#rows td.app").await;
            (apps.len() == 3).then_some(apps)
        })
        .await;
    assert!(
        newest[0].starts_with("Lockstep history (reopened by"),
        "{newest:?}"
    );
    assert_eq!(
        app.texts("#rows td.patient .name").await[0],
        "DOE, Jane",
        "the reopened patient is the newest row"
    );
    app.click("#rows tr.row:nth-child(4) td.patient").await;
    app.until("the reopen in the original's outcomes", || async {
        app.texts("#outcomes tr")
            .await
            .iter()
            .any(|row| row.contains("Reopened"))
            .then_some(())
    })
    .await;

    app.window(CURRENT).await;
    app.until_text("#patient-name", |t| t == "DOE, Jane").await;
    let by = app.text("#change-app").await.unwrap_or_default();
    assert!(by.starts_with("Lockstep history (reopened by"), "{by}");

    // Export: the view's rows, as CSV.
    app.window(HISTORY).await;
    app.click("#export").await;
    let message = app
        .until_text("#message", |t| t.starts_with("Exported"))
        .await;
    assert!(message.starts_with("Exported 3 rows to "), "{message}");
    let path = message.trim_start_matches("Exported 3 rows to ");
    let csv = std::fs::read_to_string(path).expect("the exported file");
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(csv.starts_with("time (UTC),event,patient,"), "{csv}");
    assert!(
        csv.contains("\"DOE, Jane\"") && csv.contains("\"ROE, Richard\""),
        "{csv}"
    );
    assert!(
        std::path::Path::new(path).starts_with(app.home.path()),
        "exported outside the user's folders: {path}"
    );

    // A sync problem: the worklist, now subscribed too, refuses the next change. The window
    // says so, and names the app and why.
    let _refusing = Subscriber::start(&app.origin, RIS, "Patient-open", 500);
    app.window(CURRENT).await;
    ris.publish("Patient-open", richard(), None)
        .await
        .expect("Patient-open accepted");
    app.until_text("#patient-name", |t| t == "ROE, Richard")
        .await;
    app.until_text("#status-text", |t| t.contains("did not follow"))
        .await;
    let refused = app
        .until("the refusing app in the list", || async {
            app.texts("#links li")
                .await
                .into_iter()
                .find(|row| row.contains("Radiology worklist") && row.contains("Refused"))
        })
        .await;
    assert!(
        refused.contains("500"),
        "the reason is not shown: {refused}"
    );
    app.screenshot("current-context-problem").await;

    app.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_register_an_app_whose_credentials_get_a_token() {
    if !webdriver_available() {
        return;
    }
    let app = App::start("").await;
    app.tray().click("Settings…");
    app.window(SETTINGS).await;
    app.until("the registered apps", || async {
        let names = app.texts("#apps td.name").await;
        names.contains(&"PACS viewer".to_owned()).then_some(())
    })
    .await;
    assert_eq!(
        app.text("#hub-url").await,
        Some(format!("{}/fhircast", app.origin))
    );
    assert!(
        app.text("[data-lock='hub.port']").await.is_none(),
        "nothing is locked without a site policy"
    );

    // Add an app that may follow and change the context.
    app.type_into("#app-name", "Reading room dictation").await;
    app.click("input[name=scope][value='fhircast/*.write']")
        .await;
    app.click("#add").await;
    let client_id = app
        .until_text("#new-client-id", |t| {
            t.starts_with("reading-room-dictation")
        })
        .await;
    let secret = app.until_text("#new-secret", |t| t.len() >= 32).await;
    assert!(
        app.texts("#apps td.name")
            .await
            .contains(&"Reading room dictation".to_owned())
    );
    app.screenshot("settings").await;

    let http = reqwest::Client::new();
    let token = http
        .post(format!("{}/auth/token", app.origin))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("the token endpoint answers");
    assert_eq!(token.status(), 200);
    let token: serde_json::Value = token.json().await.expect("a JSON token response");
    assert!(
        token["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let scope = token["scope"].as_str().unwrap_or_default();
    assert!(
        scope.contains("fhircast/*.read") && scope.contains("fhircast/*.write"),
        "{scope}"
    );

    // The secret is shown once: Done takes it off the page.
    app.click("#new-done").await;
    assert!(app.text("#new-secret").await.is_none());

    // Remove it: its credentials stop working at once.
    app.click(&format!(
        "#apps tr[data-client-id='{client_id}'] button.danger"
    ))
    .await;
    app.click("#remove-confirm").await;
    app.until("the app gone from the list", || async {
        let names = app.texts("#apps td.name").await;
        (!names.contains(&"Reading room dictation".to_owned())).then_some(())
    })
    .await;
    let refused = http
        .post(format!("{}/auth/token", app.origin))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("the token endpoint answers");
    assert!(
        refused.status().is_client_error(),
        "a removed app still gets a token: {}",
        refused.status()
    );

    // Start at login: the XDG autostart entry follows the setting.
    let entry = app
        .home
        .path()
        .join(".config/autostart/org.lockstep.agent.desktop");
    assert!(!entry.exists(), "start at login is off unless turned on");
    app.click("#start-at-login").await;
    app.until_text("#message", |t| t.contains("will start when you sign in"))
        .await;
    let desktop = std::fs::read_to_string(&entry).expect("an autostart entry");
    assert!(
        desktop.contains(env!("CARGO_BIN_EXE_lockstep")),
        "{desktop}"
    );
    app.click("#start-at-login").await;
    app.until_text("#message", |t| t.contains("will not start"))
        .await;
    assert!(!entry.exists(), "the autostart entry outlived the setting");

    // Notifications: on by default; turning them off is written to the user's file.
    assert_eq!(
        app.run(
            "return document.getElementById('notifications').checked;",
            vec![]
        )
        .await,
        json!(true)
    );
    app.click("#notifications").await;
    app.until_text("#message", |t| t.contains("will not be notified"))
        .await;
    let config = std::fs::read_to_string(&app.home.config).expect("the user's config");
    assert!(config.contains("notifications = false"), "{config}");

    // About, from the tray.
    app.tray().click("About");
    app.window(ABOUT).await;
    app.until_text("#version", |t| t == env!("CARGO_PKG_VERSION"))
        .await;
    app.until_text("#hub-url", |t| t.ends_with("/fhircast"))
        .await;
    app.screenshot("about").await;

    app.quit().await;
}

/// Fills a history database with `count` context changes, one every 8.64 s up to now (so
/// 100,000 span ten days), every 5,000th from the night-shift worklist.
fn seed_history(path: &std::path::Path, count: usize) {
    let store = Store::open(
        path,
        StoreOptions {
            history_retain_days: 0,
            ..StoreOptions::default()
        },
    )
    .expect("open the seed database");
    let writer = store.writer().expect("the seed writer");
    let now = time::OffsetDateTime::now_utc();
    for i in 0..count {
        let at = now - time::Duration::milliseconds(((count - i) * 8640) as i64);
        let mrn = format!("MRN-{i:07}");
        let event = if i % 2 == 0 {
            "Patient-open"
        } else {
            "Patient-close"
        };
        let app = if i % 5000 == 0 {
            "Night shift RIS"
        } else {
            "Radiology worklist"
        };
        let summary = ContextSummary {
            event: event.to_owned(),
            patient_name: Some(format!("PATIENT, Number {i}")),
            patient_mrn: Some(mrn.clone()),
            patient_birth_date: Some("1960-05-17".to_owned()),
            ..ContextSummary::default()
        };
        let json = json!({"id": format!("seed-{i}"), "timestamp": "t", "event": {
            "hub.topic": "seed", "hub.event": event,
            "context": [{"key": "patient", "resource": {"resourceType": "Patient",
                "identifier": [{"value": mrn}]}}]}});
        let record = HistoryRecord::new("seed", event, format!("seed-{i}"), app, json.to_string())
            .with_summary(summary)
            .at(at);
        assert!(
            writer.record_history(record),
            "the seed writer dropped a record"
        );
        if i % 5000 == 4999 {
            writer.flush_blocking().expect("seed flush");
        }
    }
    writer.flush_blocking().expect("seed flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_searches_and_groups_100000_rows() {
    if !webdriver_available() {
        return;
    }
    const ROWS: usize = 100_000;
    let home = common::Home::new(
        "[history]\nretain_days = 0\n\n\
         [[apps]]\nclient_id = \"night-ris\"\nclient_secret = \"night-ris-secret\"\nname = \"Night shift RIS\"\nscopes = [\"fhircast/*.*\"]\n",
    );
    let database = home
        .path()
        .join(".local/share/org.lockstep.agent/lockstep.db");
    std::fs::create_dir_all(database.parent().unwrap()).expect("the data folder");
    let seeding = Instant::now();
    seed_history(&database, ROWS);
    eprintln!("seeded {ROWS} history rows in {:?}", seeding.elapsed());

    let app = App::start_in(std::sync::Arc::new(home)).await;
    app.tray().click("History…");
    app.window(HISTORY).await;
    let first = app
        .until("the newest page", || async {
            let mrns = app.texts("#rows td.patient small").await;
            (mrns.len() == 100).then_some(mrns)
        })
        .await;
    assert_eq!(first[0], format!("MRN MRN-{:07}", ROWS - 1), "newest first");
    assert_eq!(app.text("#page-info").await.as_deref(), Some("Page 1"));

    // Older, older, newer: each page the next 100 rows, as fast deep in as at the top.
    let mut timings = Vec::new();
    for (button, page, top) in [
        ("#older", "Page 2", ROWS - 101),
        ("#older", "Page 3", ROWS - 201),
        ("#newer", "Page 2", ROWS - 101),
    ] {
        let started = Instant::now();
        app.click(button).await;
        let expected = format!("MRN MRN-{top:07}");
        app.until(&format!("{page} starting at {expected}"), || async {
            let mrns = app.texts("#rows td.patient small").await;
            (app.text("#page-info").await.as_deref() == Some(page)
                && mrns.len() == 100
                && mrns[0] == expected)
                .then_some(())
        })
        .await;
        timings.push(started.elapsed());
    }

    // One patient among 100,000.
    let started = Instant::now();
    app.type_into("#search", "MRN-0012345").await;
    app.until("the one match", || async {
        let mrns = app.texts("#rows td.patient small").await;
        (mrns == ["MRN MRN-0012345"]).then_some(())
    })
    .await;
    let search = started.elapsed();
    assert_eq!(app.text("#page-info").await.as_deref(), Some("Page 1"));
    assert_eq!(
        app.run("return document.getElementById('older').disabled;", vec![])
            .await,
        json!(true),
        "a single match has no older page"
    );

    // The night shift's 20 changes over ten days: grouped under one heading per day.
    app.click("#clear").await;
    app.select("#app", "Night shift RIS").await;
    let days = app
        .until("the night shift's rows", || async {
            let rows = app.texts("#rows td.app").await;
            (rows.len() == ROWS / 5000 && rows.iter().all(|a| a == "Night shift RIS"))
                .then_some(())?;
            Some(app.texts("#rows tr.day th").await)
        })
        .await;
    assert!(
        (10..=12).contains(&days.len()),
        "20 changes over ten days under {} day headings: {days:?}",
        days.len()
    );
    app.screenshot("history-paging").await;
    eprintln!(
        "history with {ROWS} rows: page turns {timings:?} (click to rows on screen, \
         through WebDriver); search {search:?} (including the 250 ms typing pause)"
    );

    app.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ccow_application_is_listed_as_an_app_of_its_own() {
    if !webdriver_available() {
        return;
    }
    let ccow_port = common::webdriver::free_port();
    let app = App::start(&format!(
        "[bridges.ccow]\nport = {ccow_port}\n\
         identifiers.mrn = [{{ system = \"urn:oid:1.2.36.1.2001.1003.0\", issuer = \"GENHOSP\" }}]\n"
    ))
    .await;
    app.window(CURRENT).await;
    app.until_text("#links", |t| t.contains("CCOW")).await;
    // A CCOW application joins the way CCOW applications do: a plain HTTP call.
    let joined = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{ccow_port}/"))
        .query(&[
            ("interface", "ContextManager"),
            ("method", "JoinCommonContext"),
            ("applicationName", "Cerner PowerChart#"),
            ("survey", "false"),
        ])
        .send()
        .await
        .expect("the CCOW manager answers")
        .text()
        .await
        .unwrap();
    assert!(joined.starts_with("participantCoupon="), "{joined}");
    let links = app
        .until_text("#links", |t| {
            t.contains("Cerner PowerChart") && t.contains("via CCOW")
        })
        .await;
    assert!(
        !links.contains("PowerChart#"),
        "the instance suffix is not shown: {links}"
    );
    app.screenshot("current-context-ccow").await;
    app.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_s_report_card_shows_what_the_agent_observed_of_it() {
    if !webdriver_available() {
        return;
    }
    let app = App::start("").await;
    app.window(CURRENT).await;
    let _pacs = Subscriber::start(&app.origin, PACS, "ImagingStudy-open", 200);
    app.until_text("#links", |t| {
        t.contains("PACS viewer") && t.contains("Following")
    })
    .await;
    let ris = sign_in(&app.origin, RIS).await;
    ris.publish("ImagingStudy-open", jane_study(), None)
        .await
        .expect("ImagingStudy-open accepted");
    app.until_text("#patient-name", |t| t == "DOE, Jane").await;
    // The answer is counted once the viewer's acknowledgement is read: ask until it shows.
    let mut shown = String::new();
    for _ in 0..50 {
        app.click(".link-report-toggle").await;
        shown = app.until_text(".link-report", |_| true).await;
        if shown.contains("1 acknowledged") {
            break;
        }
        app.click(".link-report-toggle").await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(shown.contains("1 granted, 1 connected"), "{shown}");
    assert!(
        shown.contains("1 acknowledged, 0 refused, 0 missed"),
        "{shown}"
    );
    assert!(shown.contains("200×1"), "{shown}");
    app.screenshot("current-context-report-card").await;
    app.quit().await;
}
