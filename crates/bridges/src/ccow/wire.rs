//! The CCOW web mapping on the wire: a method call read from any of the request forms deployed
//! clients send, and a reply written the way they read it.
//!
//! A call names its interface and method in the query string, in a POST form body, or as the
//! last two path segments (`/ContextManager/JoinCommonContext`); names of interfaces, methods
//! and arguments match case-insensitively. A reply is form-encoded (`name=value&...`) with lists
//! `|`-separated; a method that returns nothing answers an empty body; an exception is answered
//! with HTTP 200 and `exception=<Name>&exceptionMessage=<text>`, since deployed clients read
//! exceptions only there.

use url::form_urlencoded;

/// The CCOW interfaces of the web mapping that Lockstep serves or calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    ContextManagementRegistry,
    ContextManager,
    ContextData,
    ContextParticipant,
    /// `Admin.LogMessage`: how one SDK asks whether a context manager is installed.
    Admin,
}

/// Every method Lockstep serves or calls, across the interfaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Locate,
    JoinCommonContext,
    LeaveCommonContext,
    StartContextChanges,
    EndContextChanges,
    PublishChangesDecision,
    UndoContextChanges,
    GetMostRecentContextCoupon,
    SuspendParticipation,
    ResumeParticipation,
    GetItemNames,
    GetItemValues,
    SetItemValues,
    DeleteItems,
    Ping,
    ContextChangesPending,
    ContextChangesAccepted,
    /// Spelled `ContextChangesCancelled` and `ContextChangesCanceled` in the field.
    ContextChangesCancelled,
    CommonContextTerminated,
    LogMessage,
}

const INTERFACES: &[(&str, Interface)] = &[
    (
        "ContextManagementRegistry",
        Interface::ContextManagementRegistry,
    ),
    ("ContextManager", Interface::ContextManager),
    ("ContextData", Interface::ContextData),
    ("ContextParticipant", Interface::ContextParticipant),
    ("Admin", Interface::Admin),
];

const METHODS: &[(&str, Method)] = &[
    ("Locate", Method::Locate),
    ("JoinCommonContext", Method::JoinCommonContext),
    ("LeaveCommonContext", Method::LeaveCommonContext),
    ("StartContextChanges", Method::StartContextChanges),
    ("EndContextChanges", Method::EndContextChanges),
    ("PublishChangesDecision", Method::PublishChangesDecision),
    ("UndoContextChanges", Method::UndoContextChanges),
    (
        "GetMostRecentContextCoupon",
        Method::GetMostRecentContextCoupon,
    ),
    ("SuspendParticipation", Method::SuspendParticipation),
    ("ResumeParticipation", Method::ResumeParticipation),
    ("GetItemNames", Method::GetItemNames),
    ("GetItemValues", Method::GetItemValues),
    ("SetItemValues", Method::SetItemValues),
    ("DeleteItems", Method::DeleteItems),
    ("Ping", Method::Ping),
    ("ContextChangesPending", Method::ContextChangesPending),
    ("ContextChangesAccepted", Method::ContextChangesAccepted),
    ("ContextChangesCancelled", Method::ContextChangesCancelled),
    ("ContextChangesCanceled", Method::ContextChangesCancelled),
    ("CommonContextTerminated", Method::CommonContextTerminated),
    ("LogMessage", Method::LogMessage),
];

impl Interface {
    pub fn parse(name: &str) -> Option<Interface> {
        lookup(INTERFACES, name)
    }

    pub fn name(self) -> &'static str {
        name_of(INTERFACES, self)
    }
}

impl Method {
    pub fn parse(name: &str) -> Option<Method> {
        lookup(METHODS, name)
    }

    /// The spelling Lockstep sends (the first in the table).
    pub fn name(self) -> &'static str {
        name_of(METHODS, self)
    }
}

fn lookup<T: Copy>(table: &[(&str, T)], name: &str) -> Option<T> {
    let name = name.trim();
    table
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(name))
        .map(|(_, value)| *value)
}

fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("", |(name, _)| name)
}

/// The CCOW exceptions Lockstep raises or reads, by their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exception {
    InvalidContextCoupon,
    NotInTransaction,
    TransactionInProgress,
    UnknownParticipant,
    TooManyParticipants,
    AcceptNotPossible,
    InvalidTransaction,
    AlreadyJoined,
    ContextNotActive,
    BadItemNameFormat,
    UnknownItemName,
    BadItemValue,
    NotImplemented,
    /// E_FAIL: a malformed call, or anything else without its own name.
    GeneralFailure,
}

const EXCEPTIONS: &[(&str, Exception)] = &[
    ("InvalidContextCoupon", Exception::InvalidContextCoupon),
    ("NotInTransaction", Exception::NotInTransaction),
    ("TransactionInProgress", Exception::TransactionInProgress),
    ("UnknownParticipant", Exception::UnknownParticipant),
    ("TooManyParticipants", Exception::TooManyParticipants),
    ("AcceptNotPossible", Exception::AcceptNotPossible),
    ("InvalidTransaction", Exception::InvalidTransaction),
    ("AlreadyJoined", Exception::AlreadyJoined),
    ("ContextNotActive", Exception::ContextNotActive),
    ("BadItemNameFormat", Exception::BadItemNameFormat),
    ("UnknownItemName", Exception::UnknownItemName),
    ("BadItemValue", Exception::BadItemValue),
    ("NotImplemented", Exception::NotImplemented),
    ("GeneralFailure", Exception::GeneralFailure),
];

impl Exception {
    pub fn name(self) -> &'static str {
        name_of(EXCEPTIONS, self)
    }

    /// An exception another party named; one Lockstep does not know reads as a general failure.
    pub fn parse(name: &str) -> Exception {
        lookup(EXCEPTIONS, name).unwrap_or(Exception::GeneralFailure)
    }
}

/// A CCOW exception with the words for whoever reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", exception.name())]
pub struct CcowError {
    pub exception: Exception,
    pub message: String,
}

impl CcowError {
    pub fn new(exception: Exception, message: impl Into<String>) -> Self {
        CcowError {
            exception,
            message: message.into(),
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        CcowError::new(Exception::GeneralFailure, message)
    }
}

/// The arguments of a call or the fields of a reply: names compared case-insensitively, each
/// given once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args(Vec<(String, String)>);

impl Args {
    /// Reads `name=value&...`; a name given twice with two values is refused (which one a
    /// client meant cannot be known).
    pub fn parse(encoded: &[u8]) -> Result<Args, CcowError> {
        let mut args = Args::default();
        args.extend(encoded)?;
        Ok(args)
    }

    fn extend(&mut self, encoded: &[u8]) -> Result<(), CcowError> {
        for (name, value) in form_urlencoded::parse(encoded) {
            match self.get(&name) {
                Some(known) if known != value => {
                    return Err(CcowError::malformed(format!(
                        "`{name}` is given twice, with two values"
                    )));
                }
                Some(_) => {}
                None => self.0.push((name.into_owned(), value.into_owned())),
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn require(&self, name: &str) -> Result<&str, CcowError> {
        self.get(name)
            .ok_or_else(|| CcowError::malformed(format!("`{name}` is missing")))
    }

    /// A coupon: a decimal number.
    pub fn coupon(&self, name: &str) -> Result<u64, CcowError> {
        let value = self.require(name)?;
        value.trim().parse().map_err(|_| {
            CcowError::new(
                Exception::InvalidContextCoupon,
                format!("`{name}` must be a decimal coupon, got `{value}`"),
            )
        })
    }

    /// A flag: `true`/`false` (as the web mapping writes them), also `1`/`0` and `yes`/`no`;
    /// `default` when absent.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, CcowError> {
        let Some(value) = self.get(name) else {
            return Ok(default);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(CcowError::malformed(format!(
                "`{name}` must be true or false, got `{value}`"
            ))),
        }
    }

    /// A `|`-separated list; absent or empty is an empty list.
    pub fn list(&self, name: &str) -> Vec<&str> {
        match self.get(name) {
            None | Some("") => Vec::new(),
            Some(value) => value.split('|').collect(),
        }
    }
}

/// A call to a CCOW interface, however it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub interface: Interface,
    pub method: Method,
    pub args: Args,
}

impl Call {
    /// Reads a call from a request's path, query string and (form) body. The body's type is not
    /// trusted: deployed clients label form bodies `text/html` or not at all.
    pub fn parse(path: &str, query: Option<&str>, body: &[u8]) -> Result<Call, CcowError> {
        let mut args = Args::parse(query.unwrap_or_default().as_bytes())?;
        args.extend(body)?;
        let mut segments = path.trim_end_matches('/').rsplit('/');
        let (last, before) = (segments.next(), segments.next());
        let from_path = match (
            before.and_then(Interface::parse),
            last.and_then(Method::parse),
        ) {
            (Some(interface), Some(method)) => Some((interface, method)),
            _ => None,
        };
        let named = |key: &str| args.get(key).map(str::to_owned);
        let (interface, method) = match (named("interface"), named("method"), from_path) {
            (Some(interface), Some(method), _) => (
                Interface::parse(&interface).ok_or_else(|| {
                    CcowError::new(
                        Exception::NotImplemented,
                        format!("no interface `{interface}` here"),
                    )
                })?,
                Method::parse(&method).ok_or_else(|| {
                    CcowError::new(
                        Exception::NotImplemented,
                        format!("no method `{method}` here"),
                    )
                })?,
            ),
            (None, None, Some(named_in_path)) => named_in_path,
            _ => {
                return Err(CcowError::malformed(
                    "name the call with `interface` and `method`, or as /Interface/Method",
                ));
            }
        };
        Ok(Call {
            interface,
            method,
            args,
        })
    }
}

/// A reply: the fields a method returns, in order; none for a method that returns nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply(Vec<(&'static str, String)>);

impl Reply {
    pub fn empty() -> Reply {
        Reply::default()
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.0.push((name, value.into()));
        self
    }

    /// A list field, `|`-separated. A value with a `|` in it cannot be written (the mapping
    /// has no escape for it): callers refuse such values before they get here.
    pub fn with_list<'a>(
        self,
        name: &'static str,
        values: impl IntoIterator<Item = &'a str>,
    ) -> Reply {
        let joined = values.into_iter().collect::<Vec<_>>().join("|");
        self.with(name, joined)
    }

    pub fn exception(error: &CcowError) -> Reply {
        Reply::empty()
            .with("exception", error.exception.name())
            .with("exceptionMessage", error.message.clone())
    }

    /// The body, form-encoded.
    pub fn encode(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.0 {
            out.append_pair(name, value);
        }
        out.finish()
    }
}

/// Reads a reply another party sent: its fields, or the exception it names. Any content type.
pub fn read_reply(body: &[u8]) -> Result<Args, CcowError> {
    let fields = Args::parse(body)?;
    match fields.get("exception").filter(|name| !name.is_empty()) {
        Some(name) => Err(CcowError::new(
            Exception::parse(name),
            fields.get("exceptionMessage").unwrap_or_default(),
        )),
        None => Ok(fields),
    }
}

/// Whether a value can travel in a `|`-separated list.
pub fn fits_a_list(value: &str) -> bool {
    !value.contains('|')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_read_from_the_query_the_form_body_or_the_path() {
        let query = Call::parse(
            "/",
            Some("interface=ContextManager&method=JoinCommonContext&applicationName=PACS%23&survey=true"),
            b"",
        )
        .unwrap();
        let form = Call::parse(
            "/cm",
            None,
            b"INTERFACE=contextmanager&Method=joincommoncontext&applicationname=PACS%23&SURVEY=TRUE",
        )
        .unwrap();
        let path = Call::parse(
            "/ccow/ContextManager/JoinCommonContext/",
            Some("applicationName=PACS%23&survey=true"),
            b"",
        )
        .unwrap();
        for call in [&query, &form, &path] {
            assert_eq!(call.interface, Interface::ContextManager);
            assert_eq!(call.method, Method::JoinCommonContext);
            assert_eq!(call.args.get("applicationName"), Some("PACS#"));
            assert_eq!(call.args.flag("survey", false), Ok(true));
            assert_eq!(
                call.args.flag("wait", true),
                Ok(true),
                "absent: the default"
            );
        }
    }

    #[test]
    fn both_spellings_of_cancelled_are_one_method() {
        for spelling in ["ContextChangesCancelled", "contextchangescanceled"] {
            assert_eq!(
                Method::parse(spelling),
                Some(Method::ContextChangesCancelled)
            );
        }
        assert_eq!(
            Method::ContextChangesCancelled.name(),
            "ContextChangesCancelled"
        );
    }

    #[test]
    fn a_malformed_call_is_an_exception_not_a_guess() {
        let cases: &[(&str, Option<&str>, &[u8], Exception)] = &[
            ("/", None, b"", Exception::GeneralFailure),
            (
                "/",
                Some("interface=ContextManager&method=Fly"),
                b"",
                Exception::NotImplemented,
            ),
            (
                "/",
                Some("interface=Elsewhere&method=Ping"),
                b"",
                Exception::NotImplemented,
            ),
            (
                "/",
                Some("interface=ContextManager&method=Ping&x=1"),
                b"x=2",
                Exception::GeneralFailure,
            ),
            (
                "/",
                Some("interface=ContextManager"),
                b"",
                Exception::GeneralFailure,
            ),
        ];
        for (path, query, body, expected) in cases {
            let error = Call::parse(path, *query, body).unwrap_err();
            assert_eq!(error.exception, *expected, "{path} {query:?}: {error}");
        }
        // The same value twice is the same argument.
        assert!(Call::parse("/", Some("interface=Admin&method=Ping&x=1"), b"x=1").is_ok());
    }

    #[test]
    fn coupons_and_flags_are_checked() {
        let args = Args::parse(b"contextCoupon=12&bad=12a&survey=maybe&names=a|b||c").unwrap();
        assert_eq!(args.coupon("contextcoupon"), Ok(12));
        assert_eq!(
            args.coupon("bad").unwrap_err().exception,
            Exception::InvalidContextCoupon
        );
        assert!(args.flag("survey", false).is_err());
        assert_eq!(args.list("names"), ["a", "b", "", "c"]);
        assert!(args.list("absent").is_empty());
    }

    #[test]
    fn replies_are_form_encoded_with_lists_and_exceptions_at_200() {
        let reply = Reply::empty()
            .with("noContinue", "false")
            .with_list("responses", ["Unsaved report & more", "x=y"]);
        assert_eq!(
            reply.encode(),
            "noContinue=false&responses=Unsaved+report+%26+more%7Cx%3Dy"
        );
        let read = read_reply(reply.encode().as_bytes()).unwrap();
        assert_eq!(read.list("responses"), ["Unsaved report & more", "x=y"]);
        assert_eq!(Reply::empty().encode(), "");

        let error = CcowError::new(Exception::TransactionInProgress, "PACS is changing it");
        let body = Reply::exception(&error).encode();
        assert_eq!(
            body,
            "exception=TransactionInProgress&exceptionMessage=PACS+is+changing+it"
        );
        assert_eq!(read_reply(body.as_bytes()), Err(error));
        assert_eq!(
            read_reply(b"exception=SomethingNew&exceptionMessage=hm")
                .unwrap_err()
                .exception,
            Exception::GeneralFailure
        );
        assert!(!fits_a_list("DOE|JANE"));
    }
}
