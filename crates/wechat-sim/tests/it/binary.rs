//! The `wechat-sim` binary: `--help`, start, answer, stop on SIGTERM.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_wechat-sim");

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn binary_help_lists_the_flags() {
    let out = Command::new(BIN).arg("--help").output().await.unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--app",
        "--token-ttl",
        "--overlap",
        "--daily-quota",
        "--corp",
        "--ticket-ttl",
        "--ticket-daily-quota",
        "--seed",
        "--log-format",
        "--component",
        "--ticket-interval",
        "--verify-ticket-ttl",
        "--component-token-ttl",
        "--authorizer-token-ttl",
        "--component-token-per-minute",
        "--component-token-daily-quota",
        "--authorizer-token-per-minute",
        "--auth-code-ttl",
        "--refresh-token-rotation",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[tokio::test]
async fn binary_starts_answers_and_stops_on_sigterm() {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--app",
            &format!("{APP}:{SECRET}"),
            "--token-ttl",
            "90s",
            "--overlap",
            "10s",
            "--daily-quota",
            "5",
            "--corp",
            &format!("{CORP}:{AGENT}:{AGENT_SECRET}"),
            "--corp",
            &format!("{CORP}::{AGENT_B_SECRET}"),
            "--ticket-ttl",
            "60s",
            "--component",
            &format!("{COMPONENT}:{COMPONENT_SECRET}:{MSG_TOKEN}:{AES_KEY}"),
            "--ticket-interval",
            "10m",
            "--refresh-token-rotation",
            "false",
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::builder().timeout(secs(2)).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/cgi-bin/token");
    let query = [
        ("grant_type", "client_credential"),
        ("appid", APP),
        ("secret", SECRET),
    ];
    let deadline = std::time::Instant::now() + secs(20);
    let v = loop {
        if let Ok(r) = http.get(&url).query(&query).send().await {
            break r.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the binary never answered"
        );
        tokio::time::sleep(ms(50)).await;
    };
    let token = access_token(&v);
    assert_eq!(expires_in(&v), 90);
    let ticket_url = format!("http://127.0.0.1:{port}/cgi-bin/ticket/getticket");
    let v: serde_json::Value = http
        .get(&ticket_url)
        .query(&[("access_token", token.as_str()), ("type", "jsapi")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(expires_in(&v), 60, "{v}");
    let wecom_url = format!("http://127.0.0.1:{port}/qyapi/cgi-bin/gettoken");
    for secret in [AGENT_SECRET, AGENT_B_SECRET] {
        let v: serde_json::Value = http
            .get(&wecom_url)
            .query(&[("corpid", CORP), ("corpsecret", secret)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(errcode(&v), 0, "{v}");
    }

    let ticket_url = format!("http://127.0.0.1:{port}/__admin/components/verify_ticket");
    let v: serde_json::Value = http
        .get(&ticket_url)
        .query(&[("component_appid", COMPONENT)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verify_ticket = v["component_verify_ticket"].as_str().unwrap();
    let component_url = format!("http://127.0.0.1:{port}/cgi-bin/component/api_component_token");
    let body = serde_json::json!({
        "component_appid": COMPONENT,
        "component_appsecret": COMPONENT_SECRET,
        "component_verify_ticket": verify_ticket,
    });
    let v: serde_json::Value = http
        .post(&component_url)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(expires_in(&v), 7200, "{v}");

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits within 5 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");

    let mut logs = String::new();
    use tokio::io::AsyncReadExt;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .await
        .unwrap();
    assert!(logs.contains("issued token"), "{logs}");
    assert!(logs.contains(&token[..6]));
    assert!(
        !logs.contains(&token[..12]),
        "never more than 6 chars of a token"
    );
    assert!(!logs.contains(SECRET), "never the secret");
    assert!(!logs.contains(AGENT_SECRET), "never an agent secret");
    for secret in [COMPONENT_SECRET, MSG_TOKEN, AES_KEY] {
        assert!(
            !logs.contains(secret),
            "never a component secret, token or key"
        );
    }
}
