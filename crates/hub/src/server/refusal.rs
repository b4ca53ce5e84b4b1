//! A refused request as its HTTP answer: the one place each kind of refusal gets its status.

use super::*;

pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

pub(super) fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A refused request: its status and the plain-text reason for the developer.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
    /// Seconds for `Retry-After` (429).
    retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The status it is answered with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Why, as the developer reads it.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn bad_request(message: impl std::fmt::Display) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, message.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = text(self.status, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<RateLimited> for Refusal {
    fn from(limited: RateLimited) -> Self {
        Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(limited.retry_after.as_secs()),
            message: limited.to_string(),
        }
    }
}

impl From<SubscribeError> for Refusal {
    fn from(error: SubscribeError) -> Self {
        let status = match error {
            SubscribeError::UnknownTopic | SubscribeError::UnknownEndpoint => StatusCode::NOT_FOUND,
            SubscribeError::NoReadScope => StatusCode::FORBIDDEN,
            SubscribeError::TooManySubscriptions(_) => StatusCode::TOO_MANY_REQUESTS,
        };
        Refusal::new(status, error.to_string())
    }
}

impl From<PublishError> for Refusal {
    fn from(error: PublishError) -> Self {
        let status = match error {
            PublishError::UnknownTopic => StatusCode::NOT_FOUND,
            PublishError::Forbidden(_) => StatusCode::FORBIDDEN,
            PublishError::Conflict(_) => StatusCode::CONFLICT,
            PublishError::Invalid(_) => StatusCode::BAD_REQUEST,
            PublishError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // The upstream's own 4xx; anything else from it is a gateway failure here.
            PublishError::Upstream { status, .. } => StatusCode::from_u16(status)
                .ok()
                .filter(StatusCode::is_client_error)
                .unwrap_or(StatusCode::BAD_GATEWAY),
        };
        Refusal::new(status, error.to_string())
    }
}

/// A refused token request as OAuth answers it (RFC 6749 §5.2): a JSON error, 401 with a
/// Basic challenge for a client that did not authenticate, 429 with `Retry-After`.
pub(super) fn token_refusal(error: &TokenError) -> Response {
    let status = match error {
        TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
        TokenError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = json!({ "error": error.code(), "error_description": error.to_string() });
    let mut response = json_response(status, body.to_string());
    if let TokenError::RateLimited(limited) = error {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(limited.retry_after.as_secs()),
        );
    }
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"lockstep\""),
        );
    }
    response
}
