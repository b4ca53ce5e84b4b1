//! Where another hub keeps the clinician's session (the enterprise link), a requested change is
//! put to that hub first and applied here only once it has accepted: the one door every
//! requester (an app's POST, a bridge, the history's reopen) goes through, so that none of them
//! can change the workstation's context without the site's hub.

use super::*;
use std::future::Future;
use std::pin::Pin;

/// What a gate's decision is awaited as.
pub type GateFuture = Pin<Box<dyn Future<Output = Result<(), PublishError>> + Send>>;

/// Decides requested changes on behalf of another hub. The engine has checked the request's
/// topic, scope and the workstation's own refusals (paused, no record) before it asks.
pub trait Gate: Send + Sync {
    /// Puts `change` to the deciding hub and, once accepted there, applies it here with
    /// [`Engine::publish`] under `grant` (exactly once, in the deciding hub's order).
    fn request(&self, engine: Engine, grant: TokenGrant, change: ContextChange) -> GateFuture;
}

impl Engine {
    /// Puts every later [`Engine::request`] through `gate` (or, with `None`, none).
    pub fn set_gate(&self, gate: Option<Arc<dyn Gate>>) {
        *self.inner.gate.write() = gate;
    }

    /// A change an app or a bridge requests: through the gate where there is one, else
    /// published at once. [`Engine::publish`] is for changes already decided elsewhere.
    pub async fn request(
        &self,
        grant: &TokenGrant,
        change: ContextChange,
    ) -> Result<(), PublishError> {
        let Some(gate) = self.inner.gate.read().clone() else {
            return self.publish(grant, change);
        };
        self.check(grant, &change)?;
        gate.request(self.clone(), grant.clone(), change).await
    }

    /// The checks [`Engine::publish`] makes before it looks at the topic's contexts.
    fn check(&self, grant: &TokenGrant, change: &ContextChange) -> Result<(), PublishError> {
        let topic = self
            .topic_for(grant, &change.topic)
            .ok_or(PublishError::UnknownTopic)?;
        if !grant.scopes.allows(change.event.name, Access::Write) {
            return Err(PublishError::Forbidden(change.event.name));
        }
        let paused = topic.state.lock().paused;
        match self.refused_now(paused, change.event) {
            Some(refused) => Err(refused),
            None => Ok(()),
        }
    }
}
