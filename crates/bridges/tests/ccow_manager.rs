//! Manager mode over real HTTP: Lockstep's CCOW context manager on a loopback port, and CCOW
//! participants written as test programs, each with a real callback server that answers the
//! survey as it is told to and records what it was sent.

mod common;

use common::ccow::{Answers, CcowClient, SURVEY_TIMEOUT, participant, told};
use lockstep_bridges::ccow::manager::{Context, Items, Participant};
use lockstep_bridges::ccow::server::{
    Committing, ManagerServer, ParticipantEvent, ServerSettings, SessionSide,
};
use lockstep_bridges::ccow::wire::read_reply;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The FHIRcast session's side, recorded; it dissents while `refuse` is set.
#[derive(Default)]
struct Session {
    refuse: Mutex<Option<String>>,
    committed: Mutex<Vec<(Context, String)>>,
    events: Mutex<Vec<(String, ParticipantEvent)>>,
}

impl SessionSide for Session {
    fn survey(&self, _proposed: &Items) -> Result<(), String> {
        match self.refuse.lock().unwrap().clone() {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
    fn committed<'a>(&'a self, context: &'a Context, by: &'a str) -> Committing<'a> {
        self.committed
            .lock()
            .unwrap()
            .push((context.clone(), by.to_owned()));
        Box::pin(std::future::ready(()))
    }
    fn participant(&self, participant: &Participant, event: ParticipantEvent) {
        self.events
            .lock()
            .unwrap()
            .push((participant.application.clone(), event));
    }
}

struct Manager {
    client: CcowClient,
    session: Arc<Session>,
}

impl std::ops::Deref for Manager {
    type Target = CcowClient;
    fn deref(&self) -> &CcowClient {
        &self.client
    }
}

impl Manager {
    async fn start() -> Manager {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let session = Arc::new(Session::default());
        let server = ManagerServer::new(
            ServerSettings {
                survey_timeout: SURVEY_TIMEOUT,
                max_participants: 16,
            },
            session.clone(),
            base.clone(),
        );
        tokio::spawn(server.serve(listener, std::future::pending()));
        Manager {
            client: CcowClient::new(&base),
            session,
        }
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn a_change_is_surveyed_accepted_followed_and_handed_to_the_session() {
    let cm = Manager::start().await;
    let located = cm
        .get(
            "ContextManagementRegistry",
            "Locate",
            &[
                ("componentName", "CCOW.ContextManager"),
                ("version", "1.2"),
                ("contextParticipant", "x"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        located.get("componentUrl"),
        Some(format!("{}/", cm.base).as_str())
    );

    let (ris_url, ris_heard) = participant(Answers::Accept).await;
    let (pacs_url, pacs_heard) = participant(Answers::Accept).await;
    let ris = cm.join("RIS", &ris_url).await;
    let pacs = cm.join("PACS#", &pacs_url).await;
    let (tx, no_continue, responses) = cm
        .change(
            &ris,
            "Patient.Id.MRN.GENHOSP|Patient.Co.PatientName",
            "12345|DOE^JANE",
        )
        .await;
    assert!(!no_continue && responses.is_empty(), "{responses}");
    assert_eq!(told(&pacs_heard), ["ContextChangesPending"]);
    cm.decide(&ris, &tx, "accept").await;
    eventually("PACS told", || told(&pacs_heard).len() == 2).await;
    assert_eq!(told(&pacs_heard)[1], "ContextChangesAccepted");
    // Each was pinged when it joined.
    assert!(ris_heard.lock().unwrap().iter().any(|m| m == "Ping"));
    assert!(
        told(&ris_heard).is_empty(),
        "the instigator is neither surveyed nor told"
    );

    // The follower reads the values (Vergence dialect: alternating name|value).
    let values = cm
        .get(
            "ContextData",
            "GetItemValues",
            &[
                ("participantCoupon", &pacs),
                ("contextCoupon", &tx),
                ("itemNames", "Patient.*"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        values.list("itemValues"),
        [
            "Patient.Id.MRN.GENHOSP",
            "12345",
            "Patient.Co.PatientName",
            "DOE^JANE"
        ]
    );
    let names = cm
        .get("ContextData", "GetItemNames", &[("contextCoupon", &tx)])
        .await
        .unwrap();
    assert_eq!(names.list("names").len(), 2);

    let committed = cm.session.committed.lock().unwrap().clone();
    assert_eq!(committed.len(), 1);
    assert_eq!(committed[0].1, "RIS");
    assert_eq!(
        committed[0].0.items.get("patient.id.mrn.genhosp"),
        Some("12345")
    );
    eventually("PACS followed", || {
        cm.session
            .events
            .lock()
            .unwrap()
            .contains(&("PACS#1".into(), ParticipantEvent::Followed))
    })
    .await;

    // A late joiner starts in sync.
    let (lab_url, _) = participant(Answers::Accept).await;
    let lab = cm.join("Lab", &lab_url).await;
    let recent = cm
        .get("ContextManager", "GetMostRecentContextCoupon", &[])
        .await
        .unwrap();
    assert_eq!(recent.get("contextCoupon"), Some(tx.as_str()));
    let values = cm
        .get(
            "ContextData",
            "GetItemValues",
            &[("participantCoupon", &lab), ("contextCoupon", &tx)],
        )
        .await
        .unwrap();
    assert_eq!(values.list("itemValues")[1], "12345");
}

#[tokio::test]
async fn dissent_in_either_spelling_and_failures_are_told_to_the_instigator() {
    let cases = [
        (
            Answers::ConditionallyAccept,
            false,
            "Viewer: Unsaved report",
        ),
        (Answers::AcceptConditional, false, "Viewer: Order open"),
        (Answers::Silent, true, "Viewer: did not answer in time"),
        (Answers::Fails, true, "Viewer: answered HTTP 500"),
    ];
    for (answers, expect_no_continue, expected) in cases {
        let cm = Manager::start().await;
        let (ris_url, _) = participant(Answers::Accept).await;
        let (viewer_url, viewer_heard) = participant(answers).await;
        let ris = cm.join("RIS", &ris_url).await;
        cm.join("Viewer", &viewer_url).await;
        let (tx, no_continue, responses) = cm.change(&ris, "Patient.Id.MRN.GENHOSP", "1").await;
        assert_eq!(no_continue, expect_no_continue, "{expected}");
        assert!(responses.starts_with(expected), "{responses}");
        cm.decide(&ris, &tx, "cancel").await;
        eventually("the viewer told of the cancel", || {
            viewer_heard
                .lock()
                .unwrap()
                .iter()
                .any(|m| m == "ContextChangesCancelled")
        })
        .await;
        assert!(cm.session.committed.lock().unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_session_takes_part_in_the_survey() {
    let cm = Manager::start().await;
    *cm.session.refuse.lock().unwrap() = Some("context sharing is paused".into());
    let (ris_url, _) = participant(Answers::Accept).await;
    let ris = cm.join("RIS", &ris_url).await;
    let (_, no_continue, responses) = cm.change(&ris, "Patient.Id.MRN.GENHOSP", "1").await;
    assert!(no_continue);
    assert_eq!(responses, "FHIRcast session: context sharing is paused");
}

#[tokio::test]
async fn one_change_at_a_time_two_instances_leave_and_the_three_request_forms() {
    let cm = Manager::start().await;
    let (a_url, _) = participant(Answers::Accept).await;
    let (b_url, _) = participant(Answers::Accept).await;
    let first = cm.join("PACS#", &a_url).await;
    let second = cm.join("PACS#", &b_url).await;
    assert_ne!(first, second);
    assert_eq!(
        cm.get(
            "ContextManager",
            "JoinCommonContext",
            &[("applicationName", "RIS")]
        )
        .await
        .map(|_| ()),
        Ok(())
    );
    assert_eq!(
        cm.get(
            "ContextManager",
            "JoinCommonContext",
            &[("applicationName", "ris")]
        )
        .await
        .unwrap_err(),
        "AlreadyJoined"
    );
    cm.get(
        "ContextManager",
        "StartContextChanges",
        &[("participantCoupon", &first)],
    )
    .await
    .unwrap();
    assert_eq!(
        cm.get(
            "ContextManager",
            "StartContextChanges",
            &[("participantCoupon", &second)]
        )
        .await
        .unwrap_err(),
        "TransactionInProgress"
    );
    // Leaving ends the change it instigated; the other instance may start one.
    cm.get(
        "ContextManager",
        "LeaveCommonContext",
        &[("participantCoupon", &first)],
    )
    .await
    .unwrap();
    assert_eq!(
        cm.get(
            "ContextManager",
            "StartContextChanges",
            &[("participantCoupon", &first)]
        )
        .await
        .unwrap_err(),
        "UnknownParticipant"
    );

    // The same call as a POST form body and in the path form.
    let post = cm
        .http
        .post(format!("{}/", cm.base))
        .header("Content-Type", "text/html")
        .body(format!(
            "INTERFACE=ContextManager&METHOD=StartContextChanges&participantCoupon={second}"
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let tx = read_reply(&post)
        .unwrap()
        .get("contextCoupon")
        .unwrap()
        .to_owned();
    let path = cm
        .http
        .get(format!("{}/ContextManager/UndoContextChanges", cm.base))
        .query(&[
            ("participantCoupon", second.as_str()),
            ("contextCoupon", tx.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        path.len(),
        0,
        "a method that returns nothing answers an empty body"
    );
    // Nonsense is an exception, and changes nothing.
    assert_eq!(
        cm.get("ContextManager", "Fly", &[]).await.unwrap_err(),
        "NotImplemented"
    );
    assert_eq!(
        cm.get(
            "ContextData",
            "SetItemValues",
            &[
                ("participantCoupon", &second),
                ("contextCoupon", &tx),
                ("itemNames", "a|b"),
                ("itemValues", "1")
            ]
        )
        .await
        .unwrap_err(),
        "GeneralFailure"
    );
}

/// `setpriv`, when this test may run a program as another OS user (it runs as root).
fn as_nobody() -> Option<std::process::Command> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        == "0";
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let curl = std::path::Path::new("/usr/bin/curl").exists();
    (root && curl).then(|| {
        let mut command = std::process::Command::new(setpriv);
        command.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/curl",
            "-s",
        ]);
        command
    })
}

#[tokio::test]
async fn another_os_user_s_application_cannot_join_this_user_s_context() {
    let cm = Manager::start().await;
    // This user's own applications are served.
    assert!(
        cm.get(
            "ContextManager",
            "JoinCommonContext",
            &[("applicationName", "Mine")]
        )
        .await
        .is_ok()
    );
    let Some(mut nobody) = as_nobody() else {
        eprintln!("not root, or no setpriv and curl: another user's call was not tried");
        return;
    };
    let url = format!(
        "{}/?interface=ContextManager&method=JoinCommonContext&applicationName=Theirs",
        cm.base
    );
    let output = tokio::task::spawn_blocking(move || nobody.arg(url).output())
        .await
        .unwrap()
        .unwrap();
    let body = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(body.starts_with("exception=GeneralFailure"), "{body}");
    assert!(body.contains("another+user"), "{body}");
    assert_eq!(
        cm.get(
            "ContextManager",
            "JoinCommonContext",
            &[("applicationName", "Theirs")]
        )
        .await
        .map(|_| ()),
        Ok(()),
        "the refused call joined nobody"
    );
}
