//! History over HTTP, behind the hub's guards: `GET /lockstep/history` and
//! `POST /lockstep/history/{id}/reopen`, and the one reading of history filters from query
//! parameters (shared with the window and `lockstepd history`).

use super::{HISTORY_READ_SCOPE, HISTORY_REOPEN_SCOPE, History, HistoryQuery, ReopenError};
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use lockstep_hub::{Authenticated, HubState, Refusal, TokenGrant};
use std::sync::Arc;

impl History {
    /// `GET /lockstep/history` (scope `lockstep/history.read`) and
    /// `POST /lockstep/history/{id}/reopen` (scope `lockstep/history.reopen`), served by the hub
    /// behind its guards.
    pub fn routes(self: &Arc<Self>) -> Router<HubState> {
        let for_query = self.clone();
        let for_reopen = self.clone();
        Router::new()
            .route(
                "/lockstep/history",
                get(
                    move |Authenticated(grant): Authenticated,
                          Query(params): Query<Vec<(String, String)>>| {
                        let history = for_query.clone();
                        async move {
                            require(&grant, HISTORY_READ_SCOPE)?;
                            let query = query_from_params(
                                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                            )
                            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e))?;
                            let entries =
                                tokio::task::spawn_blocking(move || history.query(&query))
                                    .await
                                    .map_err(|e| {
                                        Refusal::new(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            e.to_string(),
                                        )
                                    })?
                                    .map_err(|e| {
                                        Refusal::new(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            e.to_string(),
                                        )
                                    })?;
                            Ok::<_, Refusal>(Json(entries))
                        }
                    },
                ),
            )
            .route(
                "/lockstep/history/{id}/reopen",
                post(
                    move |Authenticated(grant): Authenticated, Path(id): Path<i64>| {
                        let history = for_reopen.clone();
                        async move {
                            require(&grant, HISTORY_REOPEN_SCOPE)?;
                            let by = grant.client_name.clone();
                            let reopened =
                                tokio::task::spawn_blocking(move || history.reopen(id, &by))
                                    .await
                                    .map_err(|e| {
                                        Refusal::new(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            e.to_string(),
                                        )
                                    })?;
                            match reopened {
                                Ok(event_id) => Ok(Json(serde_json::json!({ "id": event_id }))),
                                Err(e @ ReopenError::NotFound(_)) => {
                                    Err(Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
                                }
                                Err(e @ ReopenError::Store(_)) => Err(Refusal::new(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    e.to_string(),
                                )),
                                Err(e) => Err(Refusal::new(StatusCode::CONFLICT, e.to_string())),
                            }
                        }
                    },
                ),
            )
    }
}

/// Refuses a token without `scope` (403, naming it).
pub(crate) fn require(grant: &TokenGrant, scope: &str) -> Result<(), Refusal> {
    if grant.scopes.contains(scope) {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("the token has no {scope} scope"),
        ))
    }
}

/// A history query from URL query parameters (`patient`, `accession`, `uid`, `event`, `app`,
/// `text`, `limit`, `before`): the one reading shared by the HTTP API and `lockstepd history`.
pub fn query_from_params<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<HistoryQuery, String> {
    let mut query = HistoryQuery::default();
    for (key, value) in params {
        let text = Some(value.to_owned()).filter(|v| !v.trim().is_empty());
        match key {
            "patient" => query.patient_identifier = text,
            "accession" => query.accession = text,
            "uid" => query.study_uid = text,
            "event" => query.event = text,
            "app" => query.app = text,
            "text" => query.text = text,
            "limit" => {
                query.limit = value
                    .parse()
                    .map_err(|_| format!("`limit` must be a number, got `{value}`"))?
            }
            "before" => {
                query.before_id = Some(
                    value
                        .parse()
                        .map_err(|_| format!("`before` must be a row id, got `{value}`"))?,
                )
            }
            "from" | "to" => {
                let at = time::OffsetDateTime::parse(
                    value,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| format!("`{key}` must be an RFC 3339 time, got `{value}`"))?;
                if key == "from" {
                    query.from = Some(at);
                } else {
                    query.to = Some(at);
                }
            }
            other => return Err(format!("unknown history filter `{other}`")),
        }
    }
    Ok(query)
}
