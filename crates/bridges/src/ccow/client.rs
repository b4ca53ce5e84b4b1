//! Calling a CCOW context manager in the web mapping, as a participant does: locate it at the
//! registry, then call its methods at `componentUrl?componentParameters&interface=…&method=…`.
//!
//! Replies are read whatever their content type (a deployed vault serves them as `text/html`),
//! and the manager may be remote (a vault on the network): only its registry is on loopback.

use super::wire::{Args, CcowError, Exception, Interface, Method, read_reply};
use std::time::Duration;

/// A located context manager.
#[derive(Debug, Clone)]
pub struct ManagerClient {
    http: reqwest::Client,
    /// `componentUrl`.
    url: String,
    /// `componentParameters`, sent with every call.
    parameters: String,
}

impl ManagerClient {
    /// Asks the registry at `registry` (`http://127.0.0.1:2116/`) where the context manager is.
    pub async fn locate(
        registry: &str,
        callback: &str,
        timeout: Duration,
    ) -> Result<ManagerClient, CcowError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| CcowError::new(Exception::GeneralFailure, e.to_string()))?;
        let located = call(
            &http,
            registry,
            "",
            Interface::ContextManagementRegistry,
            Method::Locate,
            &[
                ("componentName", "CCOW.ContextManager"),
                ("version", "1.5"),
                ("contextParticipant", callback),
            ],
        )
        .await?;
        let url = located.require("componentUrl")?.to_owned();
        let parameters = located
            .get("componentParameters")
            .unwrap_or_default()
            .to_owned();
        Ok(ManagerClient {
            http,
            url,
            parameters,
        })
    }

    pub async fn call(
        &self,
        interface: Interface,
        method: Method,
        args: &[(&str, &str)],
    ) -> Result<Args, CcowError> {
        call(
            &self.http,
            &self.url,
            &self.parameters,
            interface,
            method,
            args,
        )
        .await
    }

    /// The items of context `coupon`, as name/value pairs (`itemValues` alternating name|value,
    /// or `itemNames` with `itemValues` as some managers answer).
    pub async fn item_values(
        &self,
        participant: &str,
        coupon: &str,
    ) -> Result<Vec<(String, String)>, CcowError> {
        let reply = self
            .call(
                Interface::ContextData,
                Method::GetItemValues,
                &[
                    ("participantCoupon", participant),
                    ("contextCoupon", coupon),
                    ("itemNames", ""),
                    ("onlyChanges", "false"),
                ],
            )
            .await?;
        let values = reply.list("itemValues");
        let names = reply.list("itemNames");
        let pairs: Vec<(String, String)> = if names.is_empty() {
            if values.len() % 2 != 0 {
                return Err(CcowError::new(
                    Exception::GeneralFailure,
                    "itemValues does not alternate names and values",
                ));
            }
            values
                .chunks(2)
                .map(|pair| (pair[0].to_owned(), pair[1].to_owned()))
                .collect()
        } else if names.len() == values.len() {
            names
                .iter()
                .zip(&values)
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect()
        } else {
            return Err(CcowError::new(
                Exception::GeneralFailure,
                "itemNames and itemValues differ in length",
            ));
        };
        Ok(pairs)
    }
}

async fn call(
    http: &reqwest::Client,
    url: &str,
    parameters: &str,
    interface: Interface,
    method: Method,
    args: &[(&str, &str)],
) -> Result<Args, CcowError> {
    let failed = |why: String| CcowError::new(Exception::GeneralFailure, why);
    let mut target = url::Url::parse(url).map_err(|e| failed(format!("`{url}`: {e}")))?;
    {
        let mut query = target.query_pairs_mut();
        for (name, value) in url::form_urlencoded::parse(parameters.as_bytes()) {
            query.append_pair(&name, &value);
        }
        query.append_pair("interface", interface.name());
        query.append_pair("method", method.name());
        for (name, value) in args {
            query.append_pair(name, value);
        }
    }
    let response = http
        .get(target)
        .send()
        .await
        .map_err(|e| failed(format!("{} did not answer: {e}", method.name())))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| failed(format!("{}: {e}", method.name())))?;
    // An exception may come with any status; read it first.
    let reply = read_reply(&body)?;
    if !status.is_success() {
        return Err(failed(format!("{} answered HTTP {status}", method.name())));
    }
    Ok(reply)
}
