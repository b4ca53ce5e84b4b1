//! A folder bridge as validation builds it: its identifier mapping and the sides it exchanges.

use super::incoming::Incoming;
use super::writer::Outgoing;
use crate::mapping::IdentifierMapping;

/// A folder bridge, validated: its identifier mapping and its sides, ready to run.
#[derive(Debug, Clone)]
pub struct FolderBridge {
    pub identifiers: IdentifierMapping,
    pub sides: Sides,
}

/// What a folder bridge exchanges with its app: files out, files in, or both.
#[derive(Debug, Clone)]
pub enum Sides {
    Out(Outgoing),
    In(Incoming),
    Both(Outgoing, Incoming),
}

impl Sides {
    pub fn outgoing(&self) -> Option<&Outgoing> {
        match self {
            Sides::Out(out) | Sides::Both(out, _) => Some(out),
            Sides::In(_) => None,
        }
    }

    pub fn incoming(&self) -> Option<&Incoming> {
        match self {
            Sides::In(inbound) | Sides::Both(_, inbound) => Some(inbound),
            Sides::Out(_) => None,
        }
    }
}
