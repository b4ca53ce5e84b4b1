//! The Lockstep FHIRcast hub: the engine that owns every topic's state, the local SMART
//! authorization server, and the HTTP + WebSocket server in front of them.
//!
//! A context change travels one way: request → validation → [`Engine`] (the single place that
//! decides) → fan-out to subscribers and to listeners (tray, history, bridges).

pub mod auth;
pub mod engine;
pub mod grants;
pub mod limits;
pub mod link;
pub mod peer;
pub mod server;
pub mod settings;
pub mod tls;

pub mod clock;
mod connections;
mod contexts;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod socket;

pub use auth::{Authority, ClientRegistration, TokenGrant};
pub use engine::{CurrentContext, Delivery, Engine, EngineEvent, Observer, SubscriberInfo};
pub use link::{LinkEnd, LinkState, SocketEnd};
pub use server::{Authenticated, HubState, OnRecord, OnRefused, OnToken, Refusal, router, serve};
pub use settings::HubSettings;
pub use tls::{TlsConfig, TlsError};
