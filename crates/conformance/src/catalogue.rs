//! The requirements checked: FHIRcast 3.0.0's observable hub requirements, numbered as in the
//! project's conformance checklist, each with its spec level and its words. One table; the
//! checks refer to it by number.

use serde::Serialize;

/// How binding a requirement is: the spec's keyword, or where the checklist derived or
/// recommends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "SHALL")]
    Shall,
    #[serde(rename = "SHALL NOT")]
    ShallNot,
    #[serde(rename = "SHOULD")]
    Should,
    #[serde(rename = "SHOULD NOT")]
    ShouldNot,
    #[serde(rename = "MAY")]
    May,
    /// A MAY that, once the hub does it, brings a SHALL with it.
    #[serde(rename = "MAY, then SHALL")]
    MayThenShall,
    /// Follows from the spec's normative text without a keyword of its own.
    #[serde(rename = "derived")]
    Derived,
    /// Not required by the spec; what a hub should do to be safe and interoperable.
    #[serde(rename = "recommended")]
    Recommended,
}

impl Level {
    pub fn label(self) -> &'static str {
        match self {
            Level::Shall => "SHALL",
            Level::ShallNot => "SHALL NOT",
            Level::Should => "SHOULD",
            Level::ShouldNot => "SHOULD NOT",
            Level::May => "MAY",
            Level::MayThenShall => "MAY, then SHALL",
            Level::Derived => "derived",
            Level::Recommended => "recommended",
        }
    }

    /// A failure at this level makes the run fail (exit status non-zero).
    pub fn is_mandatory(self) -> bool {
        matches!(self, Level::Shall | Level::ShallNot | Level::MayThenShall)
    }
}

/// The spec area a requirement belongs to; one checks module each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Area {
    Discovery,
    Transport,
    Subscribe,
    Confirmation,
    Lifecycle,
    Notification,
    SyncError,
    RequestChange,
    CurrentContext,
    ContentSharing,
    DerivedEvents,
    Robustness,
}

impl Area {
    pub fn label(self) -> &'static str {
        match self {
            Area::Discovery => "Discovery",
            Area::Transport => "Transport",
            Area::Subscribe => "Subscribe",
            Area::Confirmation => "Confirmation and replay",
            Area::Lifecycle => "Re-subscribe, denial, unsubscribe, lease",
            Area::Notification => "Event notification",
            Area::SyncError => "Subscriber responses and SyncError",
            Area::RequestChange => "Request context change",
            Area::CurrentContext => "Get current context",
            Area::ContentSharing => "Content sharing",
            Area::DerivedEvents => "Derived events",
            Area::Robustness => "Security and robustness",
        }
    }
}

/// One numbered requirement.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Requirement {
    pub number: u16,
    pub level: Level,
    pub area: Area,
    /// What the hub must do, in the checklist's words.
    pub words: &'static str,
}

/// The requirement numbered `number`, if there is one.
pub fn requirement(number: u16) -> Option<&'static Requirement> {
    REQUIREMENTS.iter().find(|r| r.number == number)
}

#[rustfmt::skip]
pub static REQUIREMENTS: &[Requirement] = &[
    Requirement { number: 1, level: Level::Shall, area: Area::Discovery, words: "`GET {hub.url}/.well-known/fhircast-configuration` returns 200 with `Content-Type: application/json`." },
    Requirement { number: 2, level: Level::Shall, area: Area::Discovery, words: "That path works when `hub.url` has a non-empty path (it is appended, not resolved from the root)." },
    Requirement { number: 3, level: Level::Shall, area: Area::Discovery, words: "The document has `eventsSupported`, a non-empty array of strings." },
    Requirement { number: 4, level: Level::Shall, area: Area::Discovery, words: "The document has `websocketSupport: true`." },
    Requirement { number: 5, level: Level::Should, area: Area::Discovery, words: "The document has `fhircastVersion: \"3.0.0\"`." },
    Requirement { number: 6, level: Level::Should, area: Area::Discovery, words: "If Get Current Context is implemented, `capabilities.supportsGetCurrentContext` is `true`, and so is the deprecated `getCurrentSupport`." },
    Requirement { number: 7, level: Level::Should, area: Area::Discovery, words: "`capabilities.supportsNonCurrentContextUpdates` reflects support for out-of-context updates." },
    Requirement { number: 8, level: Level::Derived, area: Area::Discovery, words: "If `fhirVersion` is present it is one of DSTU1/DSTU2/STU3/R4/R4B/R5." },
    Requirement { number: 9, level: Level::Recommended, area: Area::Discovery, words: "The document does not claim `webhookSupport: true`." },
    Requirement { number: 10, level: Level::Shall, area: Area::Transport, words: "Every HTTP endpoint (subscribe, publish, GET context, well-known) is served only over HTTPS." },
    Requirement { number: 11, level: Level::Shall, area: Area::Transport, words: "Every `hub.channel.endpoint` the Hub returns starts with `wss://`." },
    Requirement { number: 12, level: Level::Shall, area: Area::Subscribe, words: "A form-encoded POST to `hub.url` with `hub.channel.type=websocket`, `hub.mode=subscribe`, a valid `hub.topic` and `hub.events` (and a valid token) returns 202." },
    Requirement { number: 13, level: Level::Shall, area: Area::Subscribe, words: "The 202 body is a JSON object with a string `hub.channel.endpoint`, and `Content-Type` is `application/json`." },
    Requirement { number: 14, level: Level::Shall, area: Area::Subscribe, words: "Endpoints from repeated subscriptions are all distinct and carry at least 128 bits of randomness (R: the exact threshold)." },
    Requirement { number: 15, level: Level::Should, area: Area::Subscribe, words: "A subscribe without `hub.channel.type` gets 4xx." },
    Requirement { number: 16, level: Level::Derived, area: Area::Subscribe, words: "A subscribe with `hub.channel.type=webhook` (or any value other than `websocket`) gets 4xx." },
    Requirement { number: 17, level: Level::Derived, area: Area::Subscribe, words: "A missing or unknown `hub.mode` gets 4xx." },
    Requirement { number: 18, level: Level::Derived, area: Area::Subscribe, words: "A missing `hub.topic` gets 4xx." },
    Requirement { number: 19, level: Level::Recommended, area: Area::Subscribe, words: "A subscribe without `hub.events`, or with an empty one, gets 4xx." },
    Requirement { number: 20, level: Level::Derived, area: Area::Subscribe, words: "A parameter repeated in the body (e.g. `hub.topic` twice) gets 4xx." },
    Requirement { number: 21, level: Level::Should, area: Area::Subscribe, words: "Every 4xx/5xx from subscribe or unsubscribe has a non-empty plain-text description." },
    Requirement { number: 22, level: Level::Derived, area: Area::Subscribe, words: "With OAuth, a subscribe with no or invalid bearer token gets 401, and no endpoint is issued." },
    Requirement { number: 23, level: Level::Derived, area: Area::Subscribe, words: "A subscribe whose token has no `fhircast/<event>.read` (or wildcard) scope for a requested event is either refused (4xx or denial) or has that event left out of the granted `hub.events`." },
    Requirement { number: 24, level: Level::Recommended, area: Area::Subscribe, words: "A subscribe to a topic the token is not bound to gets 403 or 404." },
    Requirement { number: 25, level: Level::Shall, area: Area::Subscribe, words: "A duplicated event in `hub.events` (e.g. `Patient-open,Patient-open`) is granted once." },
    Requirement { number: 26, level: Level::Shall, area: Area::Subscribe, words: "`hub.events=patient-open` (lower case) gets `Patient-open` notifications." },
    Requirement { number: 27, level: Level::Shall, area: Area::Subscribe, words: "With OAuth, the confirmed `hub.lease_seconds` is ≤ the token's remaining lifetime, even when a larger value was requested." },
    Requirement { number: 28, level: Level::Derived, area: Area::Subscribe, words: "An optional `subscriber.name` is accepted, and shows up in SyncErrors about that subscriber." },
    Requirement { number: 29, level: Level::Shall, area: Area::Confirmation, words: "After connecting to the endpoint, the first message is a confirmation with `hub.mode=\"subscribe\"`, `hub.topic`, `hub.events` (a comma-separated string) and `hub.lease_seconds` (a number)." },
    Requirement { number: 30, level: Level::Shall, area: Area::Confirmation, words: "The confirmation's `hub.topic` equals the requested topic, and its `hub.events` lists the granted events." },
    Requirement { number: 31, level: Level::Recommended, area: Area::Confirmation, words: "The confirmation has no STU2 or webhook leftovers (`hub.callback`, `hub.secret`, `hub.channel`)." },
    Requirement { number: 32, level: Level::Derived, area: Area::Confirmation, words: "A WebSocket connect to a random or unknown path under the Hub is refused (no upgrade, or immediate close)." },
    Requirement { number: 33, level: Level::Recommended, area: Area::Confirmation, words: "A second concurrent connect to an endpoint that is already in use is refused." },
    Requirement { number: 34, level: Level::Shall, area: Area::Confirmation, words: "If the topic has an unclosed `Patient-open`, a new `Patient-open` subscriber receives it right after the confirmation." },
    Requirement { number: 35, level: Level::Shall, area: Area::Confirmation, words: "A replayed event keeps the original `timestamp` (R: and the original `id`)." },
    Requirement { number: 36, level: Level::Shall, area: Area::Confirmation, words: "Replay covers the most recent unclosed open *per anchor type* (e.g. both the Patient and the ImagingStudy opens), filtered by the subscriber's events." },
    Requirement { number: 37, level: Level::ShallNot, area: Area::Confirmation, words: "Nothing is replayed for event types the subscriber didn't subscribe to." },
    Requirement { number: 38, level: Level::Derived, area: Area::Confirmation, words: "Nothing is replayed for a context that was opened and then closed." },
    Requirement { number: 39, level: Level::Shall, area: Area::Lifecycle, words: "Re-subscribing with the same `hub.topic` and `hub.channel.endpoint` and a different `hub.events` succeeds, and from then on only the new set is delivered." },
    Requirement { number: 40, level: Level::Shall, area: Area::Lifecycle, words: "When a subscription is refused after the 202 (e.g. a topic the token may not use), the Hub sends `{\"hub.mode\":\"denied\",\"hub.topic\":…,\"hub.events\":…}` (optionally `hub.reason`) and closes the socket." },
    Requirement { number: 41, level: Level::Shall, area: Area::Lifecycle, words: "A valid unsubscribe (form POST with `hub.mode=unsubscribe`, `hub.channel.type=websocket`, `hub.topic`, `hub.channel.endpoint`) gets 202 with the JSON body `{\"hub.channel.endpoint\": <same url>}`." },
    Requirement { number: 42, level: Level::Shall, area: Area::Lifecycle, words: "After an accepted unsubscribe, a denial message arrives on the socket and the Hub closes it." },
    Requirement { number: 43, level: Level::Derived, area: Area::Lifecycle, words: "An unsubscribe without `hub.channel.endpoint` gets 4xx." },
    Requirement { number: 44, level: Level::Recommended, area: Area::Lifecycle, words: "An unsubscribe for an unknown endpoint, or for one belonging to another topic, gets 4xx." },
    Requirement { number: 45, level: Level::Shall, area: Area::Lifecycle, words: "No events are delivered after unsubscribe, and reconnecting to the old endpoint fails." },
    Requirement { number: 46, level: Level::Shall, area: Area::Lifecycle, words: "A fresh subscribe after an unsubscribe returns a *new* endpoint URL." },
    Requirement { number: 47, level: Level::Shall, area: Area::Lifecycle, words: "When `hub.lease_seconds` runs out, the Hub stops delivering and closes the socket (a denial first is MAY)." },
    Requirement { number: 48, level: Level::Shall, area: Area::Notification, words: "Every notification is a JSON text frame `{timestamp, id, event:{hub.topic, hub.event, context[]}}`." },
    Requirement { number: 49, level: Level::Shall, area: Area::Notification, words: "Notification `id`s never repeat across the Hub, except when reusing a request's id." },
    Requirement { number: 50, level: Level::Shall, area: Area::Notification, words: "A subscriber receives only the `hub.event` types it subscribed to." },
    Requirement { number: 51, level: Level::Derived, area: Area::Notification, words: "A subscriber on topic A never receives an event for topic B." },
    Requirement { number: 52, level: Level::Shall, area: Area::Notification, words: "An accepted context change is delivered to every subscriber of that event on the topic, **including the sender**." },
    Requirement { number: 53, level: Level::Shall, area: Area::Notification, words: "The broadcast `id` equals the request `id`." },
    Requirement { number: 54, level: Level::Derived, area: Area::Notification, words: "The broadcast `timestamp` equals the request `timestamp`, and `context` is passed through unchanged (except the version keys the Hub adds)." },
    Requirement { number: 55, level: Level::Derived, area: Area::Notification, words: "Context entries with `reference`, `data` (key `extension`) or other value members are passed through intact." },
    Requirement { number: 56, level: Level::Shall, area: Area::Notification, words: "The Hub never sends a resource the subscriber's granted `fhircast/` scopes do not cover." },
    Requirement { number: 57, level: Level::Derived, area: Area::Notification, words: "The Hub accepts `{\"id\",\"status\"}` replies over the socket, with `status` as a number or a string, and does not close the socket over them." },
    Requirement { number: 58, level: Level::Shall, area: Area::SyncError, words: "A subscriber's `{\"status\":409}` leads to a `SyncError` for the other SyncError-subscribed subscribers on the topic." },
    Requirement { number: 59, level: Level::Shall, area: Area::SyncError, words: "Any other 4xx reply leads to a SyncError." },
    Requirement { number: 60, level: Level::Shall, area: Area::SyncError, words: "A 500 or other 5xx reply leads to a SyncError." },
    Requirement { number: 61, level: Level::Derived, area: Area::SyncError, words: "A 200 or 202 reply leads to no SyncError." },
    Requirement { number: 62, level: Level::Shall, area: Area::SyncError, words: "The SyncError `context` is a single `operationoutcome` OperationOutcome, with `issue.severity=warning`, `code=processing` and a non-empty `diagnostics`." },
    Requirement { number: 63, level: Level::Shall, area: Area::SyncError, words: "Its `details.coding` contains the `…/syncerror/eventid` code (= the failed event's id), the `…/syncerror/eventname` code (= its `hub.event`), and the `…/syncerror/subscribername` code." },
    Requirement { number: 64, level: Level::Derived, area: Area::SyncError, words: "The subscribername code is the failing subscriber's `subscriber.name` (R: or client id if none was given)." },
    Requirement { number: 65, level: Level::Shall, area: Area::SyncError, words: "SyncErrors reach only subscribers that subscribed to `SyncError`." },
    Requirement { number: 66, level: Level::Shall, area: Area::SyncError, words: "A SyncError that a subscriber POSTs to the Hub is accepted (2xx) and distributed to the other SyncError subscribers." },
    Requirement { number: 67, level: Level::MayThenShall, area: Area::SyncError, words: "With no reply within about 10 s, the Hub may emit a SyncError about that subscriber. If it does, it SHALL then unsubscribe the subscriber (socket closed)." },
    Requirement { number: 68, level: Level::May, area: Area::SyncError, words: "A subscriber socket that closes with a code other than 1000/1001 leads to a SyncError about it." },
    Requirement { number: 69, level: Level::ShallNot, area: Area::SyncError, words: "A subscriber socket that closes with 1000 or 1001 leads to no SyncError." },
    Requirement { number: 70, level: Level::Shall, area: Area::RequestChange, words: "A POST to `hub.url` with a valid `{timestamp,id,event}` body and token gets a 2xx (typically 202), or a 4xx/5xx if rejected." },
    Requirement { number: 71, level: Level::Recommended, area: Area::RequestChange, words: "`application/json` and `application/fhir+json` are both accepted." },
    Requirement { number: 72, level: Level::Recommended, area: Area::RequestChange, words: "A POST to `{hub.url}/{topic}` works the same way, and gets 4xx if the path topic ≠ `event.hub.topic`." },
    Requirement { number: 73, level: Level::Derived, area: Area::RequestChange, words: "A body missing `timestamp`, `id`, `event`, `event.hub.topic`, `event.hub.event` or `event.context` gets 4xx." },
    Requirement { number: 74, level: Level::Derived, area: Area::RequestChange, words: "A context change for an unknown topic gets 4xx (e.g. 404), and nothing is broadcast." },
    Requirement { number: 75, level: Level::Derived, area: Area::RequestChange, words: "A context change without the matching `fhircast/<event>.write` (or wildcard) scope gets 401/403, and nothing is broadcast." },
    Requirement { number: 76, level: Level::Recommended, area: Area::RequestChange, words: "A context change for an event not in `eventsSupported` gets 4xx." },
    Requirement { number: 77, level: Level::Shall, area: Area::RequestChange, words: "Event names are matched case-insensitively (`patient-open` is accepted as `Patient-open`)." },
    Requirement { number: 78, level: Level::Shall, area: Area::RequestChange, words: "If the Hub returns 202 and then rejects, only the requester gets the SyncError, and no one receives the event." },
    Requirement { number: 79, level: Level::Recommended, area: Area::RequestChange, words: "Malformed JSON gets 400, and the Hub's state is unchanged." },
    Requirement { number: 80, level: Level::Shall, area: Area::CurrentContext, words: "`GET {hub.url}/{topic}` returns 200 JSON with `context.type`, `context.versionId` and `context`." },
    Requirement { number: 81, level: Level::Shall, area: Area::CurrentContext, words: "On a fresh topic it returns `context.type: \"\"` and `context: []`." },
    Requirement { number: 82, level: Level::Shall, area: Area::CurrentContext, words: "After `Patient-open` it returns `context.type: \"Patient\"`, and `context` equals the open event's context array." },
    Requirement { number: 83, level: Level::Shall, area: Area::CurrentContext, words: "After `DiagnosticReport-open` it returns `context.type: \"DiagnosticReport\"`." },
    Requirement { number: 84, level: Level::Shall, area: Area::CurrentContext, words: "After a close of the current context with no new open, it returns the empty context." },
    Requirement { number: 85, level: Level::Derived, area: Area::CurrentContext, words: "After opening P1, opening P2 and closing P2, it returns the empty context (P1 does not come back)." },
    Requirement { number: 86, level: Level::Derived, area: Area::CurrentContext, words: "After opening P1 and then P2, it returns P2." },
    Requirement { number: 87, level: Level::Derived, area: Area::CurrentContext, words: "`context.versionId` changes whenever the current context changes (open, close, update)." },
    Requirement { number: 88, level: Level::Recommended, area: Area::CurrentContext, words: "With no or invalid token it returns 401. For an unknown topic it returns 404 or the empty context (document which)." },
    Requirement { number: 89, level: Level::Shall, area: Area::ContentSharing, words: "A distributed `DiagnosticReport-open` carries `event[\"context.versionId\"]` assigned by the Hub." },
    Requirement { number: 90, level: Level::Shall, area: Area::ContentSharing, words: "Version ids are unique within the topic: reopening the same report gets a new one." },
    Requirement { number: 91, level: Level::Shall, area: Area::ContentSharing, words: "An update whose `context.versionId` matches the current version is accepted. The broadcast carries a new `context.versionId`, a `context.priorVersionId` equal to the request version, the same `updates` Bundle `id`, and the same event `id`." },
    Requirement { number: 92, level: Level::Shall, area: Area::ContentSharing, words: "An update with a stale or unknown `context.versionId` is rejected (SHOULD be 4xx, typically 409/412). Nothing is broadcast and the version does not change." },
    Requirement { number: 93, level: Level::Derived, area: Area::ContentSharing, words: "An update without `context.versionId` is rejected." },
    Requirement { number: 94, level: Level::Shall, area: Area::ContentSharing, words: "A rejected update leaves the content unchanged (GET content is identical and the version is unchanged). No partial application happens." },
    Requirement { number: 95, level: Level::Shall, area: Area::ContentSharing, words: "After PUT updates, GET context shows the resources in the `content` Bundle (`type=collection`, no `request` on entries)." },
    Requirement { number: 96, level: Level::Shall, area: Area::ContentSharing, words: "After a DELETE update (by `fullUrl`), GET no longer lists that resource." },
    Requirement { number: 97, level: Level::Shall, area: Area::ContentSharing, words: "A PUT update that changes the anchor's `status` leaves GET `context` showing the original open-time report, with the changed report only in `content`." },
    Requirement { number: 98, level: Level::Shall, area: Area::ContentSharing, words: "With content sharing, GET always includes a `content` Bundle, with empty entries when there is no content." },
    Requirement { number: 99, level: Level::Recommended, area: Area::ContentSharing, words: "An update Bundle with a `POST` entry, a type other than `transaction`, or the same resource twice is rejected with 4xx." },
    Requirement { number: 100, level: Level::Shall, area: Area::ContentSharing, words: "An update too large for the Hub gets 413 (or 202 + a SyncError with `issue.code=too-long`)." },
    Requirement { number: 101, level: Level::Derived, area: Area::ContentSharing, words: "An update whose anchor is not the current context is rejected when `supportsNonCurrentContextUpdates` is false." },
    Requirement { number: 102, level: Level::Should, area: Area::ContentSharing, words: "After `DiagnosticReport-close`, the content is discarded: a later reopen starts with an empty `content`." },
    Requirement { number: 103, level: Level::Recommended, area: Area::ContentSharing, words: "A `*-select` for a report that is not current is rejected. A valid select is forwarded and does not change `context.versionId`." },
    Requirement { number: 104, level: Level::Shall, area: Area::DerivedEvents, words: "If A subscribes to `Patient-open` only, and B posts an `Encounter-open` (or an `ImagingStudy-open` or `DiagnosticReport-open` carrying a patient), then A receives a `Patient-open` with that patient. The alternative allowed by SHOULD is that the Hub refuses subscriptions with mismatched event sets at subscribe time." },
    Requirement { number: 105, level: Level::ShouldNot, area: Area::DerivedEvents, words: "A subscriber to both `Encounter-open` and `Patient-open` does not receive a duplicate derived `Patient-open` for one `Encounter-open`." },
    Requirement { number: 106, level: Level::Derived, area: Area::DerivedEvents, words: "The Hub never fabricates `*-close` events. A close is forwarded only when it was requested." },
    Requirement { number: 107, level: Level::Recommended, area: Area::Robustness, words: "Hub-generated topic ids and WSS endpoint tokens are at least 128-bit random, URL-safe, and not derived from user or patient data." },
    Requirement { number: 108, level: Level::Recommended, area: Area::Robustness, words: "The WebSocket upgrade does not depend on the `Origin` header for authorisation (there is no bypass by forging or omitting Origin)." },
    Requirement { number: 109, level: Level::Recommended, area: Area::Robustness, words: "A WSS endpoint that is never connected expires after a bounded time (e.g. ≤ the lease)." },
    Requirement { number: 110, level: Level::Recommended, area: Area::Robustness, words: "Abusive payloads (oversized frames, non-JSON frames, floods of `{id,status}`) do not crash the Hub or affect other topics." },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requirements_are_numbered_one_to_110_in_order() {
        let numbers: Vec<u16> = REQUIREMENTS.iter().map(|r| r.number).collect();
        assert_eq!(numbers, (1..=110).collect::<Vec<u16>>());
        assert!(REQUIREMENTS.iter().all(|r| !r.words.is_empty()));
    }
}
