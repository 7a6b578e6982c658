//! WeChat's message encryption ("安全模式"), exactly as WeChat and its
//! official samples do it, and the Open Platform's component push events.
//!
//! This crate owns the byte-level protocol: `msg_signature` (SHA-1 over the
//! sorted token, timestamp, nonce and `Encrypt`), AES-256-CBC with the IV
//! taken from the key, PKCS#7 padding to 32-byte blocks, the plaintext frame
//! `random(16) ‖ len(4, big-endian) ‖ XML ‖ appid`, the `<xml><Encrypt>`
//! envelope ([`MsgCrypt::seal`] / [`MsgCrypt::open`]) and the decrypted
//! component events ([`event`]).
//!
//! It deliberately does no I/O and keeps no state beyond its key: it does
//! not check timestamps for staleness, limit body sizes, remember nonces or
//! store verify tickets; the HTTP handler that calls [`MsgCrypt::open`] does.
//! Errors never carry the key, the token or any plaintext.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod crypt;
mod envelope;
mod error;
pub mod event;
mod xml;

pub use crypt::{MsgCrypt, Sealed};
pub use error::CryptError;
