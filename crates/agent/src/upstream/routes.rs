//! The clinician's sign-in pages on the agent's own port: `login` sends the browser to the
//! site, the site sends it back to `callback`, and `logout` forgets the sign-in. Loopback only,
//! and (on Linux) only for the agent's own OS user, as every connection to the hub.

use super::SignIn;
use super::signin::CALLBACK_PATH;
use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lockstep_hub::HubState;
use std::collections::HashMap;

/// Where the tray and `lockstepd login` send the browser.
pub const LOGIN_PATH: &str = "/lockstep/upstream/login";
/// What the tray and `lockstepd logout` post to.
pub const LOGOUT_PATH: &str = "/lockstep/upstream/logout";

pub(crate) fn routes(sign_in: SignIn) -> Router<HubState> {
    let (for_login, for_callback, for_logout) = (sign_in.clone(), sign_in.clone(), sign_in);
    Router::new()
        .route(
            LOGIN_PATH,
            get(move || {
                let sign_in = for_login.clone();
                async move {
                    match sign_in.begin().await {
                        Ok(url) => (StatusCode::FOUND, [(header::LOCATION, url)]).into_response(),
                        Err(e) => page(
                            StatusCode::BAD_GATEWAY,
                            format!("Signing in to {} could not start: {e}", sign_in.site()),
                        ),
                    }
                }
            }),
        )
        .route(
            CALLBACK_PATH,
            get(move |Query(answer): Query<HashMap<String, String>>| {
                let sign_in = for_callback.clone();
                async move {
                    let site = sign_in.site().to_owned();
                    if let Some(error) = answer.get("error") {
                        let why = answer.get("error_description").unwrap_or(error);
                        return page(
                            StatusCode::BAD_REQUEST,
                            format!("{site} did not sign you in: {why}"),
                        );
                    }
                    let (Some(code), Some(state)) = (answer.get("code"), answer.get("state"))
                    else {
                        return page(
                            StatusCode::BAD_REQUEST,
                            "This page needs the site's code and state: start signing in again."
                                .into(),
                        );
                    };
                    match sign_in.complete(code, state).await {
                        Ok(()) => page(
                            StatusCode::OK,
                            format!("Signed in to {site}. You can close this page."),
                        ),
                        Err(e) => page(
                            StatusCode::BAD_REQUEST,
                            format!("Signing in to {site} failed: {e}"),
                        ),
                    }
                }
            }),
        )
        .route(
            LOGOUT_PATH,
            post(move || {
                let sign_in = for_logout.clone();
                async move {
                    sign_in.sign_out().await;
                    page(StatusCode::OK, format!("Signed out of {}.", sign_in.site()))
                }
            }),
        )
}

/// A plain-text page: nothing from the site is ever rendered as markup.
fn page(status: StatusCode, text: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}
