//! [`CryptError`]: why a message was refused or a key rejected. Owns the
//! wording and the snake_case codes; says nothing about the message itself
//! (no key, token or plaintext ever goes into an error).

/// Why [`crate::MsgCrypt`] refused a key or a message.
///
/// Every variant but [`CryptError::BadKey`] is about one request: refuse it
/// (WeChat retries a push it got no `success` for) and log the code, never
/// the body. [`CryptError::BadKey`] is a configuration error.
#[non_exhaustive]
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CryptError {
    /// The EncodingAESKey is not 43 characters of standard base64.
    #[error("EncodingAESKey must be 43 characters of standard base64 (32 bytes)")]
    BadKey,
    /// `msg_signature` does not match the token, timestamp, nonce and
    /// `Encrypt`: not from WeChat, or a different token.
    #[error("msg_signature does not match")]
    BadSignature,
    /// `Encrypt` is not standard base64.
    #[error("Encrypt is not valid base64")]
    BadBase64,
    /// The decrypted bytes do not end in PKCS#7 padding (1..=32 bytes of
    /// the pad length): a different key, or a tampered ciphertext.
    #[error("the decrypted message has bad PKCS#7 padding (wrong key or tampered ciphertext)")]
    BadPadding,
    /// The ciphertext is not a whole number of 32-byte blocks, or the
    /// plaintext's length field does not fit in it.
    #[error("the ciphertext or its length field has an impossible length")]
    BadLength,
    /// The message was encrypted for another appid.
    #[error("the message was encrypted for another appid")]
    WrongAppid,
    /// The body or the decrypted event is not the XML expected.
    #[error("not the XML expected")]
    BadXml,
    /// The decrypted message is not UTF-8.
    #[error("the decrypted message is not UTF-8")]
    NotUtf8,
}

impl CryptError {
    /// A stable snake_case name, for logs and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadKey => "bad_key",
            Self::BadSignature => "bad_signature",
            Self::BadBase64 => "bad_base64",
            Self::BadPadding => "bad_padding",
            Self::BadLength => "bad_length",
            Self::WrongAppid => "wrong_appid",
            Self::BadXml => "bad_xml",
            Self::NotUtf8 => "not_utf8",
        }
    }

    /// True when the configuration must change (the EncodingAESKey); false
    /// when one message was refused and the next may be fine.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::BadKey)
    }
}
