//! The well-known documents: SMART configuration (the local authorization server) and FHIRcast
//! configuration (the hub's capabilities).

use super::*;

pub(super) async fn smart_configuration(State(state): State<HubState>) -> Response {
    let body = json!({
        "issuer": &*state.origin,
        "token_endpoint": format!("{}{TOKEN_PATH}", state.origin),
        "authorization_endpoint": format!("{}{AUTHORIZE_PATH}", state.origin),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["fhircast/*.read", "fhircast/*.write", "fhircast/*.*", "launch", "openid"],
        "response_types_supported": ["code"],
        "capabilities": [
            "client-confidential-symmetric",
            "client-public",
            "launch-ehr",
            "context-ehr-patient",
            "permission-offline",
        ],
    });
    json_response(StatusCode::OK, body.to_string())
}

pub(super) async fn fhircast_configuration() -> Response {
    let events: Vec<&str> = EventSpec::all().iter().map(|e| e.name).collect();
    let body = json!({
        "eventsSupported": events,
        "websocketSupport": true,
        "fhircastVersion": FHIRCAST_VERSION,
        "getCurrentSupport": true,
        "capabilities": {
            "supportsGetCurrentContext": true,
            "supportsNonCurrentContextUpdates": false,
        },
        "fhirVersion": "R4",
    });
    json_response(StatusCode::OK, body.to_string())
}
