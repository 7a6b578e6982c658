//! The envelope WeChat POSTs in safe mode: `<xml>` with an `<Encrypt>`
//! field (plus `AppId` for component pushes, `ToUserName` for messages,
//! which nobody may trust: they are outside the signature). Owns reading
//! `Encrypt` out of a body and writing a component push's body; the
//! signature and the cipher belong to [`crate::crypt`].

use serde::Deserialize;

use crate::CryptError;
use crate::xml::{check_document, push_cdata};

/// The one field of the envelope that is read; every other is ignored.
#[derive(Deserialize)]
struct Envelope {
    /// Base64 ciphertext. Optional here so that a missing field is our
    /// [`CryptError::BadXml`], like every other malformed body.
    #[serde(rename = "Encrypt")]
    encrypt: Option<String>,
}

/// The text of the root's `<Encrypt>` (CDATA or plain text, unescaped),
/// exactly what `msg_signature` was computed over. A body that is not
/// UTF-8, not one well-formed `<xml>` element, carries a DOCTYPE, or has
/// no (or more than one) `Encrypt` is [`CryptError::BadXml`].
pub(crate) fn encrypt_of(body: &[u8]) -> Result<String, CryptError> {
    let doc = std::str::from_utf8(body).map_err(|_| CryptError::BadXml)?;
    check_document(doc)?;
    let envelope: Envelope = quick_xml::de::from_str(doc).map_err(|_| CryptError::BadXml)?;
    envelope.encrypt.ok_or(CryptError::BadXml)
}

/// What WeChat POSTs to a component's authorization event URL:
/// `<xml><AppId><![CDATA[appid]]></AppId><Encrypt><![CDATA[…]]></Encrypt></xml>`.
pub(crate) fn component_body(appid: &str, encrypt: &str) -> String {
    let mut out = String::with_capacity(64 + appid.len() + encrypt.len());
    out.push_str("<xml>");
    push_cdata(&mut out, "AppId", appid);
    push_cdata(&mut out, "Encrypt", encrypt);
    out.push_str("</xml>");
    out
}
