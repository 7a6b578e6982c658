//! A chaos reader: a service that embeds `wxtoken-client`, reads a value
//! every `--interval`, uses it, and on a rejection reports it by value,
//! waits for the fleet's verdict and retries once — what a real service does.
//!
//! `--kind token` (default) uses the app's access token against wechat-sim's
//! `getcallbackip`; `--kind wecom` a WeCom agent's token against the sim's
//! WeCom `getcallbackip`; `--kind ticket` signs a page URL with the app's
//! jsapi ticket (computed locally, as a service would) and has the sim check
//! it as `wx.config` would. On SIGTERM it prints one JSON line: counts, the
//! longest time without a valid value, and one record per failed use (the
//! value as SHA-1, never the value itself), then exits.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use wxtoken_client::{Invalidation, Token, TokenClient, Verdict};
use wxtoken_common::{CredentialId, CredentialRef, TicketType};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What the reader reads and how it uses it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token,
    Wecom,
    Ticket,
}

struct Reader {
    kind: Kind,
    cref: CredentialRef,
    /// The sim's base (WeCom: its `/qyapi` base).
    base: String,
    /// For tickets: the appid `jsapi_check` names.
    appid: String,
    http: reqwest::Client,
}

impl Reader {
    /// 0 when the use succeeded, else WeChat's errcode (tickets: 40001 for a
    /// signature the checker refused, 42001 for an expired ticket), -2 on
    /// transport errors.
    async fn use_value(&self, client: &TokenClient, value: &Token) -> i64 {
        match self.kind {
            Kind::Token | Kind::Wecom => {
                let reply = self
                    .http
                    .get(format!("{}/cgi-bin/getcallbackip", self.base))
                    .query(&[("access_token", value.value())])
                    .send()
                    .await;
                match reply {
                    Ok(r) => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v.get("errcode").and_then(|c| c.as_i64()).or(Some(0)))
                        .unwrap_or(-2),
                    Err(_) => -2,
                }
            }
            Kind::Ticket => {
                let url = "https://shop.example/page?from=chaos";
                let now = now_ms() / 1000;
                let signed = wxtoken_common::jsapi::sign(value.value(), now, url);
                let _ = client;
                let reply = self
                    .http
                    .post(format!("{}/__admin/jsapi_check", self.base))
                    .json(&json!({
                        "kind": "jsapi", "appid": self.appid, "url": url,
                        "noncestr": signed.nonce_str, "timestamp": signed.timestamp,
                        "signature": signed.signature,
                    }))
                    .send()
                    .await;
                let Ok(r) = reply else { return -2 };
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    return -2;
                };
                match (v["ok"].as_bool(), v["reason"].as_str()) {
                    (Some(true), _) => 0,
                    (_, Some("ticket expired")) => 42001,
                    _ => 40001,
                }
            }
        }
    }

    async fn read(&self, client: &TokenClient) -> Result<Token, wxtoken_client::ClientError> {
        client.value(&self.cref).await
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = arg("--redis").ok_or("--redis URL")?;
    let prefix = arg("--prefix").ok_or("--prefix P")?;
    let id = CredentialId::parse(&arg("--id").unwrap_or_else(|| "shop".into()))?;
    let base = arg("--use-base").ok_or("--use-base URL")?;
    let kind = match arg("--kind").as_deref() {
        None | Some("token") => Kind::Token,
        Some("wecom") => Kind::Wecom,
        Some("ticket") => Kind::Ticket,
        Some(other) => return Err(format!("--kind {other}: token, wecom or ticket").into()),
    };
    let interval = Duration::from_millis(
        arg("--interval-ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100),
    );
    let client = TokenClient::builder(&redis)
        .key_prefix(prefix)
        .token_wait(Duration::from_secs(3))
        .command_timeout(Duration::from_millis(500))
        .build()?;
    let reader = Reader {
        kind,
        cref: match kind {
            Kind::Ticket => CredentialRef::ticket(id, TicketType::Jsapi),
            _ => CredentialRef::token(id),
        },
        base,
        appid: arg("--appid").unwrap_or_default(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let (mut ok, mut rejected, mut expired, mut unavailable, mut other, mut healed) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let mut last_ok = Instant::now();
    let mut last_ok_ms = now_ms();
    let mut longest_gap = Duration::ZERO;
    let mut longest_gap_from_ms = 0_u64;
    let mut longest_gap_to_ms = 0_u64;
    let mut tick = tokio::time::interval(interval);
    let mut note_ok = |last_ok: &mut Instant, last_ok_ms: &mut u64| {
        if last_ok.elapsed() > longest_gap {
            longest_gap = last_ok.elapsed();
            longest_gap_from_ms = *last_ok_ms;
            longest_gap_to_ms = now_ms();
        }
        *last_ok = Instant::now();
        *last_ok_ms = now_ms();
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tick.tick() => {}
        }
        let handed_out_at = now_ms();
        let value = match reader.read(&client).await {
            Ok(t) => t,
            Err(_) => {
                unavailable += 1;
                continue;
            }
        };
        let code = reader.use_value(&client, &value).await;
        match code {
            0 => {
                ok += 1;
                note_ok(&mut last_ok, &mut last_ok_ms);
                continue;
            }
            40001 | 40014 => rejected += 1,
            42001 => expired += 1,
            _ => {
                other += 1;
                continue;
            }
        }
        failures.push(json!({
            "handed_out_at_ms": handed_out_at,
            "errcode": code,
            "token_sha1": sha1_smol::Sha1::from(value.value()).hexdigest(),
            "generation": value.generation(),
        }));
        // Heal like a real service: report by value, wait for the verdict,
        // retry once with a newer value.
        let fresh = match client.report(&reader.cref, value.value()).await {
            Ok(Invalidation::Reported { generation }) => {
                match client
                    .wait_for_verdict_on(&reader.cref, generation, Duration::from_secs(5))
                    .await
                {
                    Ok(Verdict::Replaced(t)) => Some(t),
                    _ => None,
                }
            }
            Ok(Invalidation::AlreadyReplaced { .. }) => client
                .wait_for_newer_value(&reader.cref, value.generation(), Duration::from_secs(5))
                .await
                .ok(),
            _ => None,
        };
        if let Some(fresh) = fresh
            && reader.use_value(&client, &fresh).await == 0
        {
            healed += 1;
            note_ok(&mut last_ok, &mut last_ok_ms);
        }
    }
    // A gap still open at the end counts too (but not the last interval).
    if last_ok.elapsed() > interval * 2 && last_ok.elapsed() > longest_gap {
        longest_gap = last_ok.elapsed();
        longest_gap_from_ms = last_ok_ms;
        longest_gap_to_ms = now_ms();
    }
    let kind = match kind {
        Kind::Token => "token",
        Kind::Wecom => "wecom",
        Kind::Ticket => "ticket",
    };
    println!(
        "{}",
        json!({
            "kind": kind,
            "uses_ok": ok, "uses_40001": rejected, "uses_42001": expired, "unavailable": unavailable,
            "other": other, "healed": healed, "longest_gap_ms": longest_gap.as_millis() as u64,
            "longest_gap_from_ms": longest_gap_from_ms, "longest_gap_to_ms": longest_gap_to_ms,
            "failures": failures,
        })
    );
    Ok(())
}
