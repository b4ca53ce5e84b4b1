//! The well-known documents: SMART configuration (the local authorization server) and FHIRcast
//! configuration (the hub's capabilities).

use super::*;

pub(super) async fn smart_configuration(State(state): State<HubState>) -> Response {
    let body = json!({
        "issuer": &*state.origin,
        "token_endpoint": format!("{}{TOKEN_PATH}", state.origin),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["fhircast/*.read", "fhircast/*.write", "fhircast/*.*"],
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-symmetric"],
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
