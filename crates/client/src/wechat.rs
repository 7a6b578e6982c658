//! A small WeChat API call helper: injects the fleet's token as
//! `access_token`, and when WeChat says the token is bad (40001, 40014,
//! 42001) reports it by value, waits for the fleet's verdict (one refresh if
//! WeChat really rejects the token), and retries once with a newer token.
//!
//! It speaks JSON APIs only and never calls the token endpoints. The token
//! travels in the query string, so every transport error is stripped of its
//! URL before it is returned; `Debug`/`Display` of errors never show a token.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tracing::{debug, info};
use wxtoken_common::is_token_rejected;

use crate::{ClientError, Invalidation, Token, TokenClient, Verdict};

/// The largest reply this helper reads.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// WeChat answered with a non-zero `errcode` (after the one retry, for
    /// token errors).
    #[error("wechat errcode {errcode}: {errmsg}")]
    Wechat { errcode: i64, errmsg: String },
    /// No token could be had from the fleet.
    #[error(transparent)]
    Token(#[from] ClientError),
    /// The request did not complete (connect, timeout, HTTP status).
    #[error("transport: {0}")]
    Transport(String),
    /// The reply was not JSON, or too large.
    #[error("unusable reply: {0}")]
    BadReply(String),
}

impl ApiError {
    /// The WeChat errcode, if WeChat answered one.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Wechat { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

/// Calls WeChat APIs with the fleet's token.
#[derive(Debug, Clone)]
pub struct Api {
    client: TokenClient,
    http: reqwest::Client,
    base_url: String,
    refresh_wait: Duration,
}

enum Outcome {
    Json(Value),
    Rejected { errcode: i64, errmsg: String },
}

impl Api {
    /// `base_url` is WeChat's (`https://api.weixin.qq.com`) or a simulator's.
    pub fn new(client: TokenClient, base_url: &str) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ApiError::Transport(e.without_url().to_string()))?;
        Ok(Self {
            client,
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            refresh_wait: Duration::from_secs(10),
        })
    }

    /// How long to wait for the fleet's refresh after a token error; default 10 s.
    pub fn refresh_wait(mut self, d: Duration) -> Self {
        self.refresh_wait = d;
        self
    }

    pub async fn get(
        &self,
        id: &str,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Value, ApiError> {
        self.call(id, Method::GET, path, query, None).await
    }

    pub async fn post(
        &self,
        id: &str,
        path: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.call(id, Method::POST, path, query, Some(body)).await
    }

    /// Calls `method path?query&access_token=…` with an optional JSON body.
    pub async fn call(
        &self,
        id: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let token = self.client.access_token(id).await?;
        let (errcode, errmsg) = match self.send(&method, path, query, body, &token).await? {
            Outcome::Json(v) => return Ok(v),
            Outcome::Rejected { errcode, errmsg } => (errcode, errmsg),
        };
        if !is_token_rejected(errcode) {
            return Err(ApiError::Wechat { errcode, errmsg });
        }
        info!(
            id,
            errcode,
            generation = token.generation(),
            "wechat rejected the token; reporting it"
        );
        let fresh = match self.client.invalidate(id, token.value()).await? {
            Invalidation::AlreadyReplaced { generation } if generation > token.generation() => {
                self.client.access_token(id).await?
            }
            Invalidation::Reported { generation } => {
                match self
                    .client
                    .wait_for_verdict(id, generation, self.refresh_wait)
                    .await?
                {
                    Verdict::Replaced(fresh) => fresh,
                    // WeChat accepts the token: the errcode was not about it.
                    Verdict::Refused { .. } => return Err(ApiError::Wechat { errcode, errmsg }),
                }
            }
            Invalidation::TokenValid { .. } => return Err(ApiError::Wechat { errcode, errmsg }),
            _ => {
                self.client
                    .wait_for_newer(id, token.generation(), self.refresh_wait)
                    .await?
            }
        };
        debug!(
            id,
            generation = fresh.generation(),
            "retrying with the newer token"
        );
        match self.send(&method, path, query, body, &fresh).await? {
            Outcome::Json(v) => Ok(v),
            Outcome::Rejected { errcode, errmsg } => Err(ApiError::Wechat { errcode, errmsg }),
        }
    }

    async fn send(
        &self,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        token: &Token,
    ) -> Result<Outcome, ApiError> {
        let url = format!("{}/{}", self.base_url, path.trim_start_matches('/'));
        let mut request = self
            .http
            .request(method.clone(), url)
            .query(query)
            .query(&[("access_token", token.value())]);
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |e: reqwest::Error| ApiError::Transport(e.without_url().to_string());
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::BadReply(format!(
                    "reply larger than {MAX_BODY} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        let value: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) if !status.is_success() => {
                return Err(ApiError::Transport(format!("HTTP {}", status.as_u16())));
            }
            Err(e) => return Err(ApiError::BadReply(format!("not JSON: {e}"))),
        };
        match value.get("errcode").and_then(Value::as_i64) {
            Some(code) if code != 0 => Ok(Outcome::Rejected {
                errcode: code,
                errmsg: value
                    .get("errmsg")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect(),
            }),
            _ if !status.is_success() => {
                Err(ApiError::Transport(format!("HTTP {}", status.as_u16())))
            }
            _ => Ok(Outcome::Json(value)),
        }
    }
}
