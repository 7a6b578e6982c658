//! A chaos reader: a service that embeds `wxtoken-client`, reads the token
//! every `--interval`, uses it against wechat-sim's use endpoint, and on
//! 40001/40014/42001 reports it by value, waits for the newer token and
//! retries once — what a real service does.
//!
//! On SIGTERM it prints one JSON line: counts, the longest time without a
//! valid token, and one record per failed use (token as SHA-1, never the
//! token itself), then exits.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use wxtoken_client::TokenClient;

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

async fn use_token(http: &reqwest::Client, base: &str, token: &str) -> i64 {
    let reply = http
        .get(format!("{base}/cgi-bin/getcallbackip"))
        .query(&[("access_token", token)])
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let redis = arg("--redis").ok_or("--redis URL")?;
    let prefix = arg("--prefix").ok_or("--prefix P")?;
    let id = arg("--id").unwrap_or_else(|| "shop".into());
    let base = arg("--use-base").ok_or("--use-base URL")?;
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
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
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
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tick.tick() => {}
        }
        let handed_out_at = now_ms();
        let token = match client.access_token(&id).await {
            Ok(t) => t,
            Err(_) => {
                unavailable += 1;
                continue;
            }
        };
        let code = use_token(&http, &base, token.value()).await;
        match code {
            0 => {
                ok += 1;
                if last_ok.elapsed() > longest_gap {
                    longest_gap = last_ok.elapsed();
                    longest_gap_from_ms = last_ok_ms;
                    longest_gap_to_ms = now_ms();
                }
                last_ok = Instant::now();
                last_ok_ms = now_ms();
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
            "token_sha1": sha1_smol::Sha1::from(token.value()).hexdigest(),
            "generation": token.generation(),
        }));
        // Heal like a real service: report by value, wait, retry once.
        let _ = client.invalidate(&id, token.value()).await;
        if let Ok(fresh) = client
            .wait_for_newer(&id, token.generation(), Duration::from_secs(5))
            .await
            && use_token(&http, &base, fresh.value()).await == 0
        {
            healed += 1;
            if last_ok.elapsed() > longest_gap {
                longest_gap = last_ok.elapsed();
                longest_gap_from_ms = last_ok_ms;
                longest_gap_to_ms = now_ms();
            }
            last_ok = Instant::now();
            last_ok_ms = now_ms();
        }
    }
    // A gap still open at the end counts too (but not the last interval).
    if last_ok.elapsed() > interval * 2 && last_ok.elapsed() > longest_gap {
        longest_gap = last_ok.elapsed();
        longest_gap_from_ms = last_ok_ms;
        longest_gap_to_ms = now_ms();
    }
    println!(
        "{}",
        json!({
            "uses_ok": ok, "uses_40001": rejected, "uses_42001": expired, "unavailable": unavailable,
            "other": other, "healed": healed, "longest_gap_ms": longest_gap.as_millis() as u64,
            "longest_gap_from_ms": longest_gap_from_ms, "longest_gap_to_ms": longest_gap_to_ms,
            "failures": failures,
        })
    );
    Ok(())
}
