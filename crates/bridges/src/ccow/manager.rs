//! The context manager's state, as plain data: who has joined, the committed context, and the
//! one transaction that may be open. No I/O: each call says what to send to whom, and the
//! server (or a test) sends it.
//!
//! One transaction at a time, as CCOW requires. A transaction whose instigator goes quiet does
//! not hold the session: once it is older than the survey timeout, the next `start` drops it.

use super::items::{ItemName, PATIENT};
use super::wire::{CcowError, Exception};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The subjects that belong to one patient: a new patient clears them.
const PATIENT_DEPENDENTS: &[&str] = &[
    "DICOMStudy",
    "DICOMStudyComponent",
    "DICOMSeries",
    "DICOMInstance",
    "Encounter",
    "Observation",
];

/// A participant coupon or a context coupon: a decimal number on the wire.
pub type Coupon = u64;

/// A joined application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub coupon: Coupon,
    /// As it joined, with its instance number (`PACS#2`) where it asked for one.
    pub application: String,
    /// The callback URL; `None` for a participant that cannot be called (it polls).
    pub url: Option<String>,
    pub survey: bool,
    pub wait: bool,
    pub suspended: bool,
}

impl Participant {
    /// The application without its instance suffix: how the window names it.
    pub fn app_name(&self) -> &str {
        app_name(&self.application)
    }

    /// A callback to it about `context`; `None` when it gave no URL to call.
    pub fn notice(&self, context: Coupon) -> Option<Notice> {
        Some(Notice {
            participant: self.coupon,
            url: self.url.clone()?,
            context,
        })
    }
}

/// `Name#instance` → `Name`.
pub fn app_name(application: &str) -> &str {
    application
        .split_once('#')
        .map_or(application, |(name, _)| name)
        .trim()
}

/// A context's items by name (compared case-insensitively), in the order they were set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Items(Vec<(String, String)>);

impl Items {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.position(name).map(|i| self.0[i].1.as_str())
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.0
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    fn set(&mut self, name: &str, value: &str) {
        match self.position(name) {
            Some(i) => self.0[i].1 = value.to_owned(),
            None => self.0.push((name.to_owned(), value.to_owned())),
        }
    }

    fn remove(&mut self, name: &str) {
        if let Some(i) = self.position(name) {
            self.0.remove(i);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

/// A committed context: its coupon and items.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub coupon: Coupon,
    pub items: Items,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Items are being set.
    Open,
    /// Ended and surveyed: waiting for the instigator's decision.
    Ended,
}

#[derive(Debug, Clone)]
struct Transaction {
    coupon: Coupon,
    instigator: Coupon,
    /// The context being proposed: the current one with the changes applied.
    proposed: Items,
    /// The subjects the instigator wrote (lower-case): only these change.
    changed: Vec<String>,
    phase: Phase,
    started: Instant,
}

/// A callback to send: `method` to `participant`, about `context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub participant: Coupon,
    pub url: String,
    pub context: Coupon,
}

/// What `end` asks of the server: survey these participants about context `context`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey {
    pub context: Coupon,
    pub asked: Vec<Notice>,
}

/// A participant's answer to `ContextChangesPending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// `conditionally_accept` or `accept_conditional`, with the words for the user.
    Conditional(String),
    /// An exception, an unreadable reply or a failed call.
    Failed(String),
    /// No answer within the survey timeout.
    Silent,
}

impl Answer {
    /// Reads a participant's `decision` and `reason`: both conditional spellings in the field
    /// count as conditional, and anything but `accept` is dissent.
    pub fn from_decision(decision: Option<&str>, reason: Option<&str>) -> Answer {
        let reason = reason.unwrap_or_default().trim().to_owned();
        match decision.map(|d| d.trim().to_ascii_lowercase()).as_deref() {
            Some("accept") => Answer::Accept,
            Some("conditionally_accept" | "accept_conditional") => Answer::Conditional(reason),
            Some(other) => Answer::Failed(format!("answered `{other}`")),
            None => Answer::Failed("gave no decision".into()),
        }
    }
}

/// What the instigator is told after the survey (`EndContextChanges`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SurveyResult {
    /// A participant cannot follow at all (it failed or stayed silent): the change must be
    /// cancelled.
    pub no_continue: bool,
    /// Each dissent in words, `Application: reason`.
    pub responses: Vec<String>,
}

/// Which participants answered how, read into what the instigator is told.
pub fn survey_result<'a>(
    answers: impl IntoIterator<Item = (&'a Participant, &'a Answer)>,
) -> SurveyResult {
    let mut result = SurveyResult {
        no_continue: false,
        responses: Vec::new(),
    };
    for (participant, answer) in answers {
        let name = participant.app_name();
        match answer {
            Answer::Accept => {}
            Answer::Conditional(reason) if reason.is_empty() => result
                .responses
                .push(format!("{name}: accepts only conditionally")),
            Answer::Conditional(reason) => result.responses.push(format!("{name}: {reason}")),
            Answer::Failed(why) => {
                result.no_continue = true;
                result.responses.push(format!("{name}: {why}"));
            }
            Answer::Silent => {
                result.no_continue = true;
                result
                    .responses
                    .push(format!("{name}: did not answer in time"));
            }
        }
    }
    result
}

/// The outcome of the instigator's decision: whom to tell, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub accepted: bool,
    /// The committed context, when accepted.
    pub context: Option<Context>,
    /// `ContextChangesAccepted` (or `ContextChangesCancelled`) to each of these.
    pub notify: Vec<Notice>,
}

/// The context manager's state.
#[derive(Debug)]
pub struct Manager {
    participants: BTreeMap<Coupon, Participant>,
    current: Context,
    transaction: Option<Transaction>,
    next_coupon: Coupon,
    max_participants: usize,
    /// How long a transaction may stay open before the next one may drop it.
    survey_timeout: Duration,
}

impl Manager {
    /// `first_coupon` is where numbering starts (the server picks it at random, so that a
    /// coupon from an earlier run is not taken for a current one).
    pub fn new(first_coupon: Coupon, max_participants: usize, survey_timeout: Duration) -> Self {
        Manager {
            participants: BTreeMap::new(),
            current: Context::default(),
            transaction: None,
            next_coupon: first_coupon.max(1),
            max_participants,
            survey_timeout,
        }
    }

    fn coupon(&mut self) -> Coupon {
        let coupon = self.next_coupon;
        self.next_coupon += 1;
        coupon
    }

    pub fn participant(&self, coupon: Coupon) -> Result<&Participant, CcowError> {
        self.participants.get(&coupon).ok_or_else(|| {
            CcowError::new(
                Exception::UnknownParticipant,
                format!("no participant {coupon} has joined"),
            )
        })
    }

    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    pub fn current(&self) -> &Context {
        &self.current
    }

    /// `JoinCommonContext`. A name ending in `#` asks for an instance number (`PACS#` joins as
    /// `PACS#1`, then `PACS#2`); any other name may join once.
    pub fn join(
        &mut self,
        application: &str,
        url: Option<&str>,
        survey: bool,
        wait: bool,
    ) -> Result<Coupon, CcowError> {
        let application = application.trim();
        if app_name(application).is_empty() {
            return Err(CcowError::new(
                Exception::GeneralFailure,
                "`applicationName` is empty",
            ));
        }
        if self.participants.len() >= self.max_participants {
            return Err(CcowError::new(
                Exception::TooManyParticipants,
                format!(
                    "{} applications have joined already",
                    self.participants.len()
                ),
            ));
        }
        let joined_as = |name: &str| {
            self.participants
                .values()
                .any(|p| p.application.eq_ignore_ascii_case(name))
        };
        let application = match application.strip_suffix('#') {
            Some(base) => (1..)
                .map(|n| format!("{base}#{n}"))
                .find(|name| !joined_as(name))
                .unwrap_or_default(),
            None if joined_as(application) => {
                return Err(CcowError::new(
                    Exception::AlreadyJoined,
                    format!(
                        "{application} has joined already; join as `{application}#` for another instance"
                    ),
                ));
            }
            None => application.to_owned(),
        };
        let coupon = self.coupon();
        self.participants.insert(
            coupon,
            Participant {
                coupon,
                application,
                url: url.map(str::to_owned).filter(|u| !u.trim().is_empty()),
                survey,
                wait,
                suspended: false,
            },
        );
        Ok(coupon)
    }

    /// `LeaveCommonContext`; a transaction it instigated ends with it (cancelled, nobody was
    /// told of it yet).
    pub fn leave(&mut self, participant: Coupon) -> Result<(), CcowError> {
        self.participant(participant)?;
        self.participants.remove(&participant);
        if self
            .transaction
            .as_ref()
            .is_some_and(|t| t.instigator == participant)
        {
            self.transaction = None;
        }
        Ok(())
    }

    /// Suspends or resumes a participant: a suspended one is neither surveyed nor told.
    pub fn set_suspended(&mut self, participant: Coupon, suspended: bool) -> Result<(), CcowError> {
        self.participant(participant)?;
        if let Some(p) = self.participants.get_mut(&participant) {
            p.suspended = suspended;
        }
        Ok(())
    }

    /// `StartContextChanges`: the proposed context starts as the current one.
    pub fn start(&mut self, participant: Coupon, now: Instant) -> Result<Coupon, CcowError> {
        let instigator = self.participant(participant)?;
        if instigator.suspended {
            return Err(CcowError::new(
                Exception::ContextNotActive,
                format!("{} has suspended its participation", instigator.application),
            ));
        }
        // A transaction whose instigator went quiet does not hold the session any longer.
        if let Some(open) = &self.transaction
            && now.duration_since(open.started) < self.survey_timeout
        {
            let by = self
                .participants
                .get(&open.instigator)
                .map_or("another application", |p| p.app_name());
            return Err(CcowError::new(
                Exception::TransactionInProgress,
                format!("{by} is changing the context"),
            ));
        }
        let coupon = self.coupon();
        self.transaction = Some(Transaction {
            coupon,
            instigator: participant,
            proposed: self.current.items.clone(),
            changed: Vec::new(),
            phase: Phase::Open,
            started: now,
        });
        Ok(coupon)
    }

    fn open_transaction(
        &mut self,
        participant: Coupon,
        context: Coupon,
    ) -> Result<&mut Transaction, CcowError> {
        self.participant(participant)?;
        let Some(transaction) = self.transaction.as_mut() else {
            return Err(CcowError::new(
                Exception::NotInTransaction,
                "no context change is in progress",
            ));
        };
        if transaction.coupon != context {
            return Err(CcowError::new(
                Exception::InvalidContextCoupon,
                format!("{context} is not the context being changed"),
            ));
        }
        if transaction.instigator != participant {
            return Err(CcowError::new(
                Exception::NotInTransaction,
                "only the application that started the change may write to it",
            ));
        }
        if transaction.phase != Phase::Open {
            return Err(CcowError::new(
                Exception::InvalidTransaction,
                "the change has ended; decide to accept or cancel it",
            ));
        }
        Ok(transaction)
    }

    /// `ContextData.SetItemValues`. Setting any item of a subject replaces that subject: its
    /// other items from the current context are dropped, so an old MRN never rides along with
    /// a new patient's name; and a new patient drops the subjects that depend on the patient
    /// (the study, its series and instances, the encounter), so the old patient's study never
    /// rides along with the new patient.
    pub fn set_items(
        &mut self,
        participant: Coupon,
        context: Coupon,
        items: &[(String, String)],
    ) -> Result<(), CcowError> {
        let parsed = items
            .iter()
            .map(|(name, value)| Ok((ItemName::parse(name)?, value.as_str())))
            .collect::<Result<Vec<_>, CcowError>>()?;
        let transaction = self.open_transaction(participant, context)?;
        for (name, _) in &parsed {
            let subject = name.subject.to_ascii_lowercase();
            if transaction.changed.contains(&subject) {
                continue;
            }
            let replaced = |item: &ItemName| {
                item.is_of(&name.subject)
                    || (name.is_of(PATIENT)
                        && PATIENT_DEPENDENTS.iter().any(|d| item.is_of(d))
                        && !parsed
                            .iter()
                            .any(|(written, _)| written.is_of(&item.subject)))
            };
            let stale: Vec<String> = transaction
                .proposed
                .names()
                .filter(|n| ItemName::parse(n).is_ok_and(|item| replaced(&item)))
                .map(str::to_owned)
                .collect();
            for stale in stale {
                transaction.proposed.remove(&stale);
            }
            transaction.changed.push(subject);
        }
        for (name, value) in parsed {
            transaction.proposed.set(&name.raw, value);
        }
        Ok(())
    }

    /// `ContextData.DeleteItems`.
    pub fn delete_items(
        &mut self,
        participant: Coupon,
        context: Coupon,
        names: &[&str],
    ) -> Result<(), CcowError> {
        let transaction = self.open_transaction(participant, context)?;
        for name in names {
            transaction.proposed.remove(name);
        }
        Ok(())
    }

    /// `EndContextChanges`: whom to survey (joined with `survey`, not suspended, not the
    /// instigator, with a URL to call).
    pub fn end(&mut self, participant: Coupon, context: Coupon) -> Result<Survey, CcowError> {
        let transaction = self.open_transaction(participant, context)?;
        transaction.phase = Phase::Ended;
        let instigator = transaction.instigator;
        let asked = self
            .participants
            .values()
            .filter(|p| p.survey && !p.suspended && p.coupon != instigator)
            .filter_map(|p| p.notice(context))
            .collect();
        Ok(Survey { context, asked })
    }

    /// `PublishChangesDecision`: on accept the proposed context becomes current and every other
    /// participant (not suspended) is told it was accepted; on cancel, that it was cancelled.
    pub fn decide(
        &mut self,
        participant: Coupon,
        context: Coupon,
        accept: bool,
    ) -> Result<Decided, CcowError> {
        self.participant(participant)?;
        let transaction = match &self.transaction {
            Some(t) if t.coupon == context && t.instigator == participant => t,
            Some(t) if t.coupon == context => {
                return Err(CcowError::new(
                    Exception::NotInTransaction,
                    "only the application that started the change may decide it",
                ));
            }
            _ => {
                return Err(CcowError::new(
                    Exception::InvalidContextCoupon,
                    format!("{context} is not the context being changed"),
                ));
            }
        };
        if transaction.phase != Phase::Ended {
            return Err(CcowError::new(
                Exception::InvalidTransaction,
                "end the change before deciding it",
            ));
        }
        let proposed = transaction.proposed.clone();
        self.transaction = None;
        let notify = self
            .participants
            .values()
            .filter(|p| !p.suspended && p.coupon != participant)
            .filter_map(|p| p.notice(context))
            .collect();
        let committed = accept.then(|| {
            self.current = Context {
                coupon: context,
                items: proposed,
            };
            self.current.clone()
        });
        Ok(Decided {
            accepted: accept,
            context: committed,
            notify,
        })
    }

    /// `UndoContextChanges`: the open transaction is dropped, nobody is told.
    pub fn undo(&mut self, participant: Coupon, context: Coupon) -> Result<(), CcowError> {
        self.open_transaction(participant, context)?;
        self.transaction = None;
        Ok(())
    }

    /// The items of context `coupon`: the current one, or the one being proposed (which the
    /// surveyed participants read before they answer).
    pub fn items(&self, coupon: Coupon) -> Result<&Items, CcowError> {
        if coupon == self.current.coupon {
            return Ok(&self.current.items);
        }
        match &self.transaction {
            Some(t) if t.coupon == coupon => Ok(&t.proposed),
            _ => Err(CcowError::new(
                Exception::InvalidContextCoupon,
                format!("{coupon} is neither the current context nor the one being changed"),
            )),
        }
    }

    /// Removes a participant that failed its survey and says where to send
    /// `CommonContextTerminated`.
    pub fn expel(&mut self, participant: Coupon) -> Option<Participant> {
        self.participants.remove(&participant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(10);

    fn manager() -> Manager {
        Manager::new(1000, 32, TIMEOUT)
    }

    fn items(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Joins a RIS (which instigates), a surveyed PACS and an unsurveyed dictation app.
    fn session() -> (Manager, Coupon, Coupon, Coupon) {
        let mut m = manager();
        let ris = m
            .join("RIS", Some("http://127.0.0.1:1/ris"), true, true)
            .unwrap();
        let pacs = m
            .join("PACS#", Some("http://127.0.0.1:1/pacs"), true, true)
            .unwrap();
        let dictation = m
            .join("Dictation", Some("http://127.0.0.1:1/dict"), false, true)
            .unwrap();
        (m, ris, pacs, dictation)
    }

    #[test]
    fn an_accepted_change_becomes_current_and_everyone_else_is_told() {
        let (mut m, ris, pacs, dictation) = session();
        let now = Instant::now();
        let tx = m.start(ris, now).unwrap();
        m.set_items(ris, tx, &items(&[("Patient.Id.MRN.GENHOSP", "12345")]))
            .unwrap();
        let survey = m.end(ris, tx).unwrap();
        assert_eq!(
            survey
                .asked
                .iter()
                .map(|n| n.participant)
                .collect::<Vec<_>>(),
            [pacs],
            "only surveyed participants other than the instigator"
        );
        // The surveyed read the proposal by its coupon.
        assert_eq!(
            m.items(tx).unwrap().get("patient.id.mrn.genhosp"),
            Some("12345")
        );
        let decided = m.decide(ris, tx, true).unwrap();
        assert!(decided.accepted);
        assert_eq!(
            decided
                .notify
                .iter()
                .map(|n| n.participant)
                .collect::<Vec<_>>(),
            [pacs, dictation]
        );
        assert_eq!(m.current().coupon, tx);
        assert_eq!(
            m.current().items.get("Patient.Id.MRN.GENHOSP"),
            Some("12345")
        );
    }

    #[test]
    fn a_cancelled_change_leaves_the_context_as_it_was() {
        let (mut m, ris, ..) = session();
        let tx = m.start(ris, Instant::now()).unwrap();
        m.set_items(ris, tx, &items(&[("Patient.Id.MRN.GENHOSP", "1")]))
            .unwrap();
        m.end(ris, tx).unwrap();
        let decided = m.decide(ris, tx, false).unwrap();
        assert!(!decided.accepted && decided.context.is_none());
        assert_eq!(decided.notify.len(), 2);
        assert_eq!(m.current(), &Context::default());
        assert_eq!(
            m.items(tx).unwrap_err().exception,
            Exception::InvalidContextCoupon
        );
    }

    #[test]
    fn a_new_patient_replaces_the_subject_and_what_depends_on_it() {
        let (mut m, ris, ..) = session();
        let now = Instant::now();
        let first = m.start(ris, now).unwrap();
        m.set_items(
            ris,
            first,
            &items(&[
                ("Patient.Id.MRN.GENHOSP", "1"),
                ("Patient.Co.PatientName", "DOE^JANE"),
                ("DICOMStudy.Id.InstanceUID", "1.2.3"),
                ("User.Id.Logon.Windows", "jane"),
            ]),
        )
        .unwrap();
        m.end(ris, first).unwrap();
        m.decide(ris, first, true).unwrap();
        let second = m.start(ris, now).unwrap();
        m.set_items(ris, second, &items(&[("patient.id.mrn.GENHOSP", "2")]))
            .unwrap();
        let proposed = m.items(second).unwrap();
        assert_eq!(proposed.get("Patient.Id.MRN.GENHOSP"), Some("2"));
        assert_eq!(
            proposed.get("Patient.Co.PatientName"),
            None,
            "not the old patient's name"
        );
        assert_eq!(
            proposed.get("DICOMStudy.Id.InstanceUID"),
            None,
            "nor the old patient's study"
        );
        assert_eq!(
            proposed.get("User.Id.Logon.Windows"),
            Some("jane"),
            "a subject of its own is back-filled"
        );
        // A new study of the same patient keeps the patient.
        m.end(ris, second).unwrap();
        m.decide(ris, second, true).unwrap();
        let third = m.start(ris, now).unwrap();
        m.set_items(ris, third, &items(&[("DICOMStudy.Id.InstanceUID", "9.9")]))
            .unwrap();
        let proposed = m.items(third).unwrap();
        assert_eq!(proposed.get("Patient.Id.MRN.GENHOSP"), Some("2"));
        assert_eq!(proposed.get("DICOMStudy.Id.InstanceUID"), Some("9.9"));
        // A new patient written with its study keeps that study.
        m.end(ris, third).unwrap();
        m.decide(ris, third, true).unwrap();
        let fourth = m.start(ris, now).unwrap();
        let both = items(&[
            ("Patient.Id.MRN.GENHOSP", "3"),
            ("DICOMStudy.Id.InstanceUID", "3.3"),
        ]);
        m.set_items(ris, fourth, &both).unwrap();
        let proposed = m.items(fourth).unwrap();
        assert_eq!(proposed.get("DICOMStudy.Id.InstanceUID"), Some("3.3"));
    }

    #[test]
    fn one_transaction_at_a_time_until_its_instigator_goes_quiet() {
        let (mut m, ris, pacs, _) = session();
        let now = Instant::now();
        let tx = m.start(ris, now).unwrap();
        let busy = m.start(pacs, now + Duration::from_secs(1)).unwrap_err();
        assert_eq!(busy.exception, Exception::TransactionInProgress);
        assert!(busy.message.contains("RIS"), "{busy}");
        // Past the survey timeout the stale transaction no longer blocks.
        let next = m.start(pacs, now + TIMEOUT).unwrap();
        assert_ne!(next, tx);
        assert_eq!(
            m.set_items(ris, tx, &items(&[("Patient.Id.MRN.X", "1")]))
                .unwrap_err()
                .exception,
            Exception::InvalidContextCoupon
        );
    }

    #[test]
    fn only_the_instigator_writes_ends_and_decides_in_order() {
        let (mut m, ris, pacs, _) = session();
        let tx = m.start(ris, Instant::now()).unwrap();
        let cases: Vec<(Result<(), CcowError>, Exception)> = vec![
            (
                m.set_items(pacs, tx, &items(&[("Patient.Id.MRN.X", "1")])),
                Exception::NotInTransaction,
            ),
            (
                m.set_items(ris, tx + 99, &items(&[("Patient.Id.MRN.X", "1")])),
                Exception::InvalidContextCoupon,
            ),
            (
                m.set_items(ris, tx, &items(&[("Patient", "1")])),
                Exception::BadItemNameFormat,
            ),
            (
                m.decide(ris, tx, true).map(|_| ()),
                Exception::InvalidTransaction,
            ),
            (
                m.decide(pacs, tx, true).map(|_| ()),
                Exception::NotInTransaction,
            ),
            (m.end(99, tx).map(|_| ()), Exception::UnknownParticipant),
        ];
        for (i, (result, expected)) in cases.into_iter().enumerate() {
            assert_eq!(result.unwrap_err().exception, expected, "case {i}");
        }
        m.end(ris, tx).unwrap();
        assert_eq!(
            m.set_items(ris, tx, &items(&[("Patient.Id.MRN.X", "1")]))
                .unwrap_err()
                .exception,
            Exception::InvalidTransaction,
            "no writing after the end"
        );
    }

    #[test]
    fn instances_of_one_application_join_apart_and_a_name_joins_once() {
        let (mut m, ..) = session();
        let second = m
            .join("PACS#", Some("http://127.0.0.1:1/p2"), true, true)
            .unwrap();
        assert_eq!(m.participant(second).unwrap().application, "PACS#2");
        assert_eq!(m.participant(second).unwrap().app_name(), "PACS");
        assert_eq!(
            m.join("ris", None, true, true).unwrap_err().exception,
            Exception::AlreadyJoined
        );
        assert_eq!(
            m.join("  ", None, true, true).unwrap_err().exception,
            Exception::GeneralFailure
        );
        let mut full = Manager::new(1, 1, TIMEOUT);
        full.join("A", None, true, true).unwrap();
        assert_eq!(
            full.join("B", None, true, true).unwrap_err().exception,
            Exception::TooManyParticipants
        );
    }

    #[test]
    fn suspended_and_departed_participants_are_neither_surveyed_nor_told() {
        let (mut m, ris, pacs, dictation) = session();
        m.set_suspended(pacs, true).unwrap();
        m.leave(dictation).unwrap();
        let tx = m.start(ris, Instant::now()).unwrap();
        assert!(m.end(ris, tx).unwrap().asked.is_empty());
        assert!(m.decide(ris, tx, true).unwrap().notify.is_empty());
        assert_eq!(
            m.start(pacs, Instant::now()).unwrap_err().exception,
            Exception::ContextNotActive
        );
        m.set_suspended(pacs, false).unwrap();
        assert!(m.start(pacs, Instant::now()).is_ok());
        // A leaving instigator takes its transaction with it.
        m.leave(pacs).unwrap();
        assert!(m.start(ris, Instant::now()).is_ok());
    }

    #[test]
    fn undo_drops_the_change_and_late_joiners_read_the_current_context() {
        let (mut m, ris, ..) = session();
        let tx = m.start(ris, Instant::now()).unwrap();
        m.set_items(ris, tx, &items(&[("Patient.Id.MRN.X", "1")]))
            .unwrap();
        m.undo(ris, tx).unwrap();
        assert!(m.start(ris, Instant::now()).is_ok());
        let late = m.join("Lab", None, true, true).unwrap();
        assert!(m.participant(late).is_ok());
        assert_eq!(m.items(m.current().coupon).unwrap(), &Items::default());
    }

    #[test]
    fn survey_answers_read_into_what_the_instigator_is_told() {
        let (m, ..) = session();
        let ps: Vec<&Participant> = m.participants().collect();
        let cases: &[(&[Answer], bool, &[&str])] = &[
            (&[Answer::Accept, Answer::Accept], false, &[]),
            (
                &[Answer::Accept, Answer::Conditional("Unsaved report".into())],
                false,
                &["PACS: Unsaved report"],
            ),
            (&[Answer::Silent], true, &["RIS: did not answer in time"]),
            (
                &[Answer::Failed("answered `maybe`".into())],
                true,
                &["RIS: answered `maybe`"],
            ),
        ];
        for (answers, no_continue, responses) in cases {
            let result = survey_result(ps.iter().copied().zip(answers.iter()));
            assert_eq!(result.no_continue, *no_continue, "{answers:?}");
            assert_eq!(result.responses, *responses, "{answers:?}");
        }
        for (decision, expected) in [
            (Some("accept"), Answer::Accept),
            (Some("ACCEPT"), Answer::Accept),
            (
                Some("conditionally_accept"),
                Answer::Conditional("why".into()),
            ),
            (
                Some("accept_conditional"),
                Answer::Conditional("why".into()),
            ),
            (Some("reject"), Answer::Failed("answered `reject`".into())),
            (None, Answer::Failed("gave no decision".into())),
        ] {
            assert_eq!(Answer::from_decision(decision, Some(" why ")), expected);
        }
    }
}
