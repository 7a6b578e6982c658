//! `wxtoken status --component ID`: a component's authorizers by state —
//! active, revoked, and failing (active with a recorded failure or no
//! token) — and the failing ones with their last error. Reads the registry
//! with HSCAN and each active authorizer's state in pipelined pages; no
//! token is read or printed.

use anyhow::Context;
use serde::Serialize;
use wxtoken_common::{CredentialId, CredentialRef};

use crate::config::Config;
use crate::store::{ACTIVE, AuthorizerState};

/// Failing authorizers listed at most (the counts cover all of them).
const MAX_LISTED: usize = 100;

#[derive(Debug, Serialize)]
struct Summary {
    component: String,
    active: u64,
    revoked: u64,
    failing: u64,
    /// The first [`MAX_LISTED`] failing authorizers.
    failing_authorizers: Vec<Failing>,
}

#[derive(Debug, Serialize)]
struct Failing {
    id: String,
    authorizer_appid: String,
    /// `no_token` when none is stored, else the last error's code.
    code: String,
    message: String,
}

pub async fn status(config: &Config, id: &str, json: bool) -> anyhow::Result<()> {
    let component = config
        .components
        .iter()
        .find(|c| c.id.as_str() == id)
        .with_context(|| {
            let known: Vec<&str> = config.components.iter().map(|c| c.id.as_str()).collect();
            format!(
                "no component {id:?} in the config; known: {}",
                known.join(", ")
            )
        })?;
    let store = super::ops::connected_store(config).await?;
    let mut s = Summary {
        component: component.id.to_string(),
        active: 0,
        revoked: 0,
        failing: 0,
        failing_authorizers: Vec::new(),
    };
    let mut cursor = 0;
    loop {
        let page = store.registry_page(&component.id, cursor, 1000).await?;
        let mut active = Vec::new();
        for (appid, state) in page.entries {
            if state == ACTIVE {
                active.push(appid);
            } else {
                s.revoked += 1;
            }
        }
        s.active += active.len() as u64;
        let crefs: Vec<CredentialRef> = active
            .iter()
            .filter_map(|a| CredentialId::parse(&format!("{}.{a}", component.id)).ok())
            .map(CredentialRef::token)
            .collect();
        for (cref, state) in crefs.iter().zip(store.authorizer_states(&crefs).await?) {
            let failing = match state {
                AuthorizerState {
                    has_token: false, ..
                } => Some(("no_token".into(), state.message)),
                AuthorizerState {
                    failures,
                    code: Some(code),
                    ..
                } if failures > 0 => Some((code, state.message)),
                _ => None,
            };
            if let Some((code, message)) = failing {
                s.failing += 1;
                if s.failing_authorizers.len() < MAX_LISTED {
                    let appid = cref
                        .id
                        .as_str()
                        .split_once('.')
                        .map_or("", |(_, a)| a)
                        .to_owned();
                    s.failing_authorizers.push(Failing {
                        id: cref.id.to_string(),
                        authorizer_appid: appid,
                        code,
                        message,
                    });
                }
            }
        }
        cursor = page.cursor;
        if cursor == 0 {
            break;
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(());
    }
    println!(
        "component {}: {} active, {} revoked, {} failing",
        s.component, s.active, s.revoked, s.failing
    );
    if !s.failing_authorizers.is_empty() {
        println!("{:<48} {:<20} LAST ERROR", "AUTHORIZER", "CODE");
        for f in &s.failing_authorizers {
            println!("{:<48} {:<20} {}", f.id, f.code, f.message);
        }
        if s.failing > s.failing_authorizers.len() as u64 {
            println!(
                "… and {} more",
                s.failing - s.failing_authorizers.len() as u64
            );
        }
    }
    Ok(())
}
