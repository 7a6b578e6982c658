//! The contract every wxtoken part shares, with no I/O.
//!
//! This crate owns the vocabulary: what a credential id may be ([`CredentialId`]),
//! how Redis keys are spelled ([`Keys`], the only place key strings are built),
//! what the fields of the meta hash are called ([`meta`]), how WeChat's error codes
//! are classified ([`ErrorClass`]), the JSON shapes that cross process boundaries
//! ([`wire`]), and which quota day a moment belongs to ([`QuotaDay`]).
//!
//! It deliberately does no I/O: no Redis, no HTTP, no clock reads. Callers pass
//! timestamps in, so every rule here is a pure function that tests can pin down.

mod class;
mod credential;
mod id;
pub mod jsapi;
mod keys;
pub mod meta;
mod quota;
pub mod wire;

pub use class::{ErrorClass, classify_fetch_errcode, is_token_rejected};
pub use credential::{CredentialRef, Slot, TicketType, UnknownTicketType};
pub use id::{CredentialId, InvalidId};
pub use keys::{CredentialKeys, DEFAULT_PREFIX, InvalidPrefix, Keys, SlotKeys};
pub use quota::{QuotaDay, QuotaOffset, QuotaPeriod, Window};
