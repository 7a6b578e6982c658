//! The Open Platform's pushes to a component's authorization event URL,
//! once decrypted: `component_verify_ticket` every 10 minutes, and the
//! authorization changes `authorized`, `updateauthorized` and
//! `unauthorized`. Owns their field names (WeChat's, from the Open Platform
//! docs "验证票据" and "授权变更通知推送", as WxJava's `WxOpenXmlMessage` and
//! wechatpy's `wechatpy/component.py` read them), [`parse`] and
//! [`ComponentEvent::to_xml`]. Acting on an event (storing the ticket,
//! redeeming the code) is the caller's.
//!
//! Decrypted example (the doc's; real pushes wrap strings in CDATA):
//! `<xml><AppId>some_appid</AppId><CreateTime>1413192605</CreateTime>
//! <InfoType>component_verify_ticket</InfoType>
//! <ComponentVerifyTicket>some_verify_ticket</ComponentVerifyTicket></xml>`.
//! `PreAuthCode`, also in authorization pushes, is not kept.

use std::fmt;

use serde::Deserialize;

use crate::CryptError;
use crate::xml::{check_document, push_cdata, push_number};

/// `InfoType` of the verify ticket push.
const VERIFY_TICKET: &str = "component_verify_ticket";
/// `InfoType` of a new authorization.
const AUTHORIZED: &str = "authorized";
/// `InfoType` of a changed authorization (other permission sets).
const UPDATE_AUTHORIZED: &str = "updateauthorized";
/// `InfoType` of a revoked authorization.
const UNAUTHORIZED: &str = "unauthorized";

/// One decrypted push to a component's authorization event URL.
///
/// `Debug` redacts the ticket and the authorization code: either one lets
/// its holder act as the component.
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub enum ComponentEvent {
    /// `InfoType` `component_verify_ticket`: the ticket that, with the
    /// component secret, buys a component token (valid 12 h).
    VerifyTicket {
        appid: String,
        create_time: u64,
        ticket: String,
    },
    /// `InfoType` `authorized`: an account authorized the component; the
    /// code (`api_query_auth`) yields its first refresh token.
    Authorized {
        appid: String,
        create_time: u64,
        authorizer_appid: String,
        authorization_code: String,
        /// `AuthorizationCodeExpiredTime`, Unix seconds.
        code_expires_at: u64,
    },
    /// `InfoType` `updateauthorized`: the account changed what it granted.
    UpdateAuthorized {
        appid: String,
        create_time: u64,
        authorizer_appid: String,
        authorization_code: String,
        /// `AuthorizationCodeExpiredTime`, Unix seconds.
        code_expires_at: u64,
    },
    /// `InfoType` `unauthorized`: the account revoked the authorization.
    Unauthorized {
        appid: String,
        create_time: u64,
        authorizer_appid: String,
    },
    /// Any other `InfoType` (e.g. the fast-registration notices), with the
    /// fields every push has.
    Other {
        appid: String,
        create_time: u64,
        info_type: String,
    },
}

/// Every field any variant reads; all optional so that what is missing
/// depends on the `InfoType`. Unknown fields are ignored, a repeated one is
/// an error.
#[derive(Deserialize)]
struct Fields {
    #[serde(rename = "AppId")]
    appid: Option<String>,
    #[serde(rename = "CreateTime")]
    create_time: Option<String>,
    #[serde(rename = "InfoType")]
    info_type: Option<String>,
    #[serde(rename = "ComponentVerifyTicket")]
    ticket: Option<String>,
    #[serde(rename = "AuthorizerAppid")]
    authorizer_appid: Option<String>,
    #[serde(rename = "AuthorizationCode")]
    authorization_code: Option<String>,
    #[serde(rename = "AuthorizationCodeExpiredTime")]
    code_expires_at: Option<String>,
}

/// A required, non-empty string field.
fn text(field: Option<String>) -> Result<String, CryptError> {
    field.filter(|s| !s.is_empty()).ok_or(CryptError::BadXml)
}

/// A required number field (surrounding whitespace allowed).
fn number(field: Option<String>) -> Result<u64, CryptError> {
    field
        .and_then(|s| s.trim().parse().ok())
        .ok_or(CryptError::BadXml)
}

/// Parses the decrypted inner XML of a component push (what
/// [`crate::MsgCrypt::open`] returns). Field names exactly as WeChat's docs:
/// `AppId`, `CreateTime`, `InfoType`, then per type `ComponentVerifyTicket`
/// or `AuthorizerAppid`, `AuthorizationCode`, `AuthorizationCodeExpiredTime`.
/// `InfoType` is matched ignoring ASCII case, as wechatpy does.
///
/// [`CryptError::BadXml`] for anything else: not one well-formed `<xml>`,
/// a DOCTYPE, a missing or empty field the type needs, a non-numeric time.
pub fn parse(xml: &str) -> Result<ComponentEvent, CryptError> {
    check_document(xml)?;
    let f: Fields = quick_xml::de::from_str(xml).map_err(|_| CryptError::BadXml)?;
    let appid = text(f.appid)?;
    let create_time = number(f.create_time)?;
    let info_type = text(f.info_type)?;
    let is = |t: &str| info_type.eq_ignore_ascii_case(t);
    Ok(if is(VERIFY_TICKET) {
        ComponentEvent::VerifyTicket {
            appid,
            create_time,
            ticket: text(f.ticket)?,
        }
    } else if is(AUTHORIZED) || is(UPDATE_AUTHORIZED) {
        let authorizer_appid = text(f.authorizer_appid)?;
        let authorization_code = text(f.authorization_code)?;
        let code_expires_at = number(f.code_expires_at)?;
        if is(AUTHORIZED) {
            ComponentEvent::Authorized {
                appid,
                create_time,
                authorizer_appid,
                authorization_code,
                code_expires_at,
            }
        } else {
            ComponentEvent::UpdateAuthorized {
                appid,
                create_time,
                authorizer_appid,
                authorization_code,
                code_expires_at,
            }
        }
    } else if is(UNAUTHORIZED) {
        ComponentEvent::Unauthorized {
            appid,
            create_time,
            authorizer_appid: text(f.authorizer_appid)?,
        }
    } else {
        ComponentEvent::Other {
            appid,
            create_time,
            info_type,
        }
    })
}

impl ComponentEvent {
    /// The component appid the push is for (`AppId`).
    pub fn appid(&self) -> &str {
        match self {
            Self::VerifyTicket { appid, .. }
            | Self::Authorized { appid, .. }
            | Self::UpdateAuthorized { appid, .. }
            | Self::Unauthorized { appid, .. }
            | Self::Other { appid, .. } => appid,
        }
    }

    /// `CreateTime`, Unix seconds.
    pub fn create_time(&self) -> u64 {
        match self {
            Self::VerifyTicket { create_time, .. }
            | Self::Authorized { create_time, .. }
            | Self::UpdateAuthorized { create_time, .. }
            | Self::Unauthorized { create_time, .. }
            | Self::Other { create_time, .. } => *create_time,
        }
    }

    /// `InfoType` as WeChat writes it (lowercase for the known four).
    pub fn info_type(&self) -> &str {
        match self {
            Self::VerifyTicket { .. } => VERIFY_TICKET,
            Self::Authorized { .. } => AUTHORIZED,
            Self::UpdateAuthorized { .. } => UPDATE_AUTHORIZED,
            Self::Unauthorized { .. } => UNAUTHORIZED,
            Self::Other { info_type, .. } => info_type,
        }
    }

    /// What WeChat would send (before encryption): strings in CDATA,
    /// numbers bare, in the docs' field order. [`parse`] reads it back.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("<xml>");
        push_cdata(&mut out, "AppId", self.appid());
        push_number(&mut out, "CreateTime", self.create_time());
        push_cdata(&mut out, "InfoType", self.info_type());
        match self {
            Self::VerifyTicket { ticket, .. } => {
                push_cdata(&mut out, "ComponentVerifyTicket", ticket);
            }
            Self::Authorized {
                authorizer_appid,
                authorization_code,
                code_expires_at,
                ..
            }
            | Self::UpdateAuthorized {
                authorizer_appid,
                authorization_code,
                code_expires_at,
                ..
            } => {
                push_cdata(&mut out, "AuthorizerAppid", authorizer_appid);
                push_cdata(&mut out, "AuthorizationCode", authorization_code);
                push_number(&mut out, "AuthorizationCodeExpiredTime", *code_expires_at);
            }
            Self::Unauthorized {
                authorizer_appid, ..
            } => push_cdata(&mut out, "AuthorizerAppid", authorizer_appid),
            Self::Other { .. } => {}
        }
        out.push_str("</xml>");
        out
    }
}

/// Stands in for a secret in `Debug` output.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for ComponentEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VerifyTicket {
                appid, create_time, ..
            } => f
                .debug_struct("VerifyTicket")
                .field("appid", appid)
                .field("create_time", create_time)
                .field("ticket", &REDACTED)
                .finish(),
            Self::Authorized {
                appid,
                create_time,
                authorizer_appid,
                code_expires_at,
                ..
            }
            | Self::UpdateAuthorized {
                appid,
                create_time,
                authorizer_appid,
                code_expires_at,
                ..
            } => f
                .debug_struct(if matches!(self, Self::Authorized { .. }) {
                    "Authorized"
                } else {
                    "UpdateAuthorized"
                })
                .field("appid", appid)
                .field("create_time", create_time)
                .field("authorizer_appid", authorizer_appid)
                .field("authorization_code", &REDACTED)
                .field("code_expires_at", code_expires_at)
                .finish(),
            Self::Unauthorized {
                appid,
                create_time,
                authorizer_appid,
            } => f
                .debug_struct("Unauthorized")
                .field("appid", appid)
                .field("create_time", create_time)
                .field("authorizer_appid", authorizer_appid)
                .finish(),
            Self::Other {
                appid,
                create_time,
                info_type,
            } => f
                .debug_struct("Other")
                .field("appid", appid)
                .field("create_time", create_time)
                .field("info_type", info_type)
                .finish(),
        }
    }
}
