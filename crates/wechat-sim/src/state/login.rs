//! WeChat's code exchanges (SPEC §10): a mini program's `wx.login` code
//! for a session (`sns/jscode2session`), a web page's OAuth code for a user
//! access token (`sns/oauth2/access_token`, renewed with
//! `sns/oauth2/refresh_token`). Codes are minted by the admin API (what a
//! user's device would get), live five minutes and are single-use: the
//! second exchange is 40163, an unknown one 40029, one marked risky 40226.
//! More than [`CODES_PER_MINUTE`] exchanges a minute per app is 45011.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::errcode::WxError;

use super::{World, present};

/// A code's life (WeChat: 5 minutes).
const CODE_LIFE: Duration = Duration::from_secs(300);
/// Exchanges per app per minute before 45011 (harsher than WeChat's
/// unpublished figure, so a proxy's retry storm shows).
pub(crate) const CODES_PER_MINUTE: u32 = 600;

#[derive(Debug)]
struct Code {
    appid: String,
    openid: String,
    issued: Instant,
    used: bool,
    risky: bool,
}

/// Codes minted and exchanges counted.
#[derive(Debug, Default)]
pub(crate) struct Logins {
    codes: HashMap<String, Code>,
    /// OAuth refresh tokens → (appid, openid).
    refresh: HashMap<String, (String, String)>,
    /// (appid, minute) → exchanges.
    minute: HashMap<String, (u64, u32)>,
    serial: u64,
}

/// A code exchange as asked (`js_code` or `code` as `code`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CodeRequest<'a> {
    pub(crate) appid: Option<&'a str>,
    pub(crate) secret: Option<&'a str>,
    pub(crate) code: Option<&'a str>,
    pub(crate) grant_type: Option<&'a str>,
}

/// A successful exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exchange {
    Session {
        openid: String,
        session_key: String,
    },
    Oauth {
        access_token: String,
        refresh_token: String,
        openid: String,
    },
}

impl World {
    /// A code for `appid`'s user `openid` (what `wx.login` or the OAuth
    /// redirect would hand the client); `None` for an unknown app.
    pub(crate) fn mint_code(&mut self, appid: &str, openid: &str, risky: bool) -> Option<String> {
        if !self.knows(appid) {
            return None;
        }
        let l = &mut self.logins;
        l.serial += 1;
        let code = format!("code{:08x}{:016x}", l.serial, rand::random::<u64>());
        l.codes.insert(
            code.clone(),
            Code {
                appid: appid.to_owned(),
                openid: openid.to_owned(),
                issued: Instant::now(),
                used: false,
                risky,
            },
        );
        Some(code)
    }

    fn check_app(&mut self, appid: Option<&str>, secret: Option<&str>) -> Result<String, WxError> {
        let appid = present(appid).ok_or(WxError::AppidMissing)?;
        let secret = present(secret).ok_or(WxError::SecretMissing)?;
        let book = self.apps.get(appid).ok_or(WxError::InvalidAppid)?;
        if book.secret != secret {
            return Err(WxError::InvalidAppsecret);
        }
        let minute = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 60);
        let entry = self
            .logins
            .minute
            .entry(appid.to_owned())
            .or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 += 1;
        if entry.1 > CODES_PER_MINUTE {
            return Err(WxError::MinuteQuota);
        }
        Ok(appid.to_owned())
    }

    fn take_code(&mut self, appid: &str, code: Option<&str>) -> Result<String, WxError> {
        let code = present(code).ok_or(WxError::CodeMissing)?;
        let c = self
            .logins
            .codes
            .get_mut(code)
            .ok_or(WxError::InvalidCode)?;
        if c.appid != appid || c.issued.elapsed() > CODE_LIFE {
            return Err(WxError::InvalidCode);
        }
        if c.used {
            return Err(WxError::CodeUsed);
        }
        c.used = true;
        if c.risky {
            return Err(WxError::RiskyUser);
        }
        Ok(c.openid.clone())
    }

    /// The common part of both code exchanges: the grant type, the app and
    /// its secret, then the code. The app and the code's user.
    fn redeem(&mut self, r: CodeRequest<'_>) -> Result<(String, String), WxError> {
        if present(r.grant_type) != Some("authorization_code") {
            return Err(WxError::InvalidGrantType);
        }
        let appid = self.check_app(r.appid, r.secret)?;
        let openid = self.take_code(&appid, r.code)?;
        Ok((appid, openid))
    }

    /// `GET /sns/jscode2session`.
    pub(crate) fn jscode2session(&mut self, r: CodeRequest<'_>) -> Result<Exchange, WxError> {
        let (_, openid) = self.redeem(r)?;
        Ok(Exchange::Session {
            openid,
            session_key: format!("sk{:032x}", rand::random::<u128>()),
        })
    }

    /// `GET /sns/oauth2/access_token`.
    pub(crate) fn oauth2_access_token(&mut self, r: CodeRequest<'_>) -> Result<Exchange, WxError> {
        let (appid, openid) = self.redeem(r)?;
        Ok(self.oauth_grant(appid, openid))
    }

    /// `GET /sns/oauth2/refresh_token` (needs no secret, as on WeChat).
    pub(crate) fn oauth2_refresh(
        &mut self,
        appid: Option<&str>,
        refresh_token: Option<&str>,
        grant_type: Option<&str>,
    ) -> Result<Exchange, WxError> {
        if present(grant_type) != Some("refresh_token") {
            return Err(WxError::InvalidGrantType);
        }
        let appid = present(appid).ok_or(WxError::AppidMissing)?.to_owned();
        let rt = present(refresh_token).ok_or(WxError::InvalidRefreshToken)?;
        match self.logins.refresh.get(rt) {
            Some((a, openid)) if *a == appid => {
                let openid = openid.clone();
                Ok(self.oauth_grant(appid, openid))
            }
            _ => Err(WxError::InvalidRefreshToken),
        }
    }

    fn oauth_grant(&mut self, appid: String, openid: String) -> Exchange {
        let refresh_token = format!("rt{:032x}", rand::random::<u128>());
        self.logins
            .refresh
            .insert(refresh_token.clone(), (appid, openid.clone()));
        Exchange::Oauth {
            access_token: format!("ua{:032x}", rand::random::<u128>()),
            refresh_token,
            openid,
        }
    }
}
