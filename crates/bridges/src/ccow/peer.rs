//! The CCOW side of the same-user rule (see [`lockstep_hub::peer`]): a call from another OS
//! user's process gets a CCOW exception.

use super::wire::{CcowError, Exception};
use lockstep_hub::peer::{Peer, same_user};
use std::net::SocketAddr;

/// The exception for a call from another OS user's process; `Ok` for Lockstep's own user (or
/// where the owner cannot be known).
pub fn refuse_other_user(peer: SocketAddr, local: SocketAddr) -> Result<(), CcowError> {
    match same_user(peer, local) {
        Peer::OtherUser(uid) => {
            tracing::warn!(
                "CCOW: refused a call from another user's process (uid {uid}) on {local}"
            );
            Err(CcowError::new(
                Exception::GeneralFailure,
                "this CCOW context manager serves another user's session; each user's \
                 applications join their own",
            ))
        }
        Peer::SameUser | Peer::Unknown => Ok(()),
    }
}
