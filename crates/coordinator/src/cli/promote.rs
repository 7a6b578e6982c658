//! `wxtoken promote ID [--force]` (SPEC §12): a followed credential becomes
//! a primary — the fleet stops following it and refreshes it from WeChat.
//! An explicit operator step, never automatic: refused while the primary
//! answers (two fleets calling WeChat kill each other's tokens) unless
//! `--force`, and refused when the config holds no secret to fetch with.

use std::time::{Duration, Instant};

use anyhow::bail;
use secrecy::ExposeSecret;
use tracing::warn;

use crate::config::{Config, ConfigError, FollowConfig};

use super::ops::{connected_store, find, operator};

pub async fn promote(config: &Config, id: &str, force: bool) -> anyhow::Result<()> {
    let cred = find(config, id, None)?;
    let Some(follow) = cred.follow.clone() else {
        bail!("{} is not followed: it is a primary already", cred.cref);
    };
    if let Some(key) = missing_secret(config, id) {
        return Err(ConfigError::new(
            key,
            "a primary fetches from WeChat: add the secret to the config (and reload the replicas) before promoting",
        )
        .into());
    }
    let store = connected_store(config).await?;
    if let Some(by) = store.promoted(&cred.cref.id).await? {
        println!("{} was promoted already (by {by})", cred.cref.id);
        return Ok(());
    }
    match reachable(&follow, id).await {
        Some(answer) if !force => bail!(
            "not promoting {}: its primary {} answers ({answer}). Two fleets fetching from WeChat \
             cut each other's tokens off; promote when the primary is gone for good, or pass \
             --force to promote anyway",
            cred.cref.id,
            follow.url
        ),
        Some(answer) => {
            warn!(credential = %cred.cref.id, primary = %follow.url, %answer, "promoting while the primary answers (--force)");
        }
        None => {}
    }
    let by = operator();
    store.promote(&cred.cref.id, &by).await?;
    warn!(credential = %cred.cref.id, primary = %follow.url, %by, "promoted: the fleet refreshes this credential from WeChat now");
    println!(
        "{} promoted by {by}: the fleet stops following {} and refreshes it (and its tickets) from \
         WeChat now. Remove `follow` from its config entry.",
        cred.cref.id, follow.url
    );
    Ok(())
}

/// The config key of the entry's missing secret, if it has none.
fn missing_secret(config: &Config, id: &str) -> Option<String> {
    if let Some(i) = config.apps.iter().position(|a| a.id.as_str() == id) {
        return config.apps[i]
            .secret
            .is_none()
            .then(|| format!("apps[{i}].secret"));
    }
    if let Some(i) = config.components.iter().position(|c| c.id.as_str() == id) {
        // A primary component takes pushes (verify tickets, authorizations)
        // and fetches its token: all three secrets.
        let c = &config.components[i];
        return [
            (c.secret.is_none(), "secret"),
            (c.token.is_none(), "token"),
            (c.encoding_aes_key.is_none(), "encoding_aes_key"),
        ]
        .into_iter()
        .find(|(missing, _)| *missing)
        .map(|(_, field)| format!("components[{i}].{field}"));
    }
    let i = config.wecom.iter().position(|w| w.id.as_str() == id)?;
    config.wecom[i]
        .secret
        .is_none()
        .then(|| format!("wecom[{i}].secret"))
}

/// `Some(what it said)` when the primary answers HTTP at all within 3 s.
async fn reachable(follow: &FollowConfig, id: &str) -> Option<String> {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(3));
    if let Some(ca) = &follow.ca {
        for cert in crate::config::load_ca(ca).ok()? {
            b = b.add_root_certificate(cert);
        }
    }
    let http = b.build().ok()?;
    let started = Instant::now();
    let reply = http
        .get(format!("{}/v1/apps/{id}/access_token", follow.url))
        .bearer_auth(follow.key.expose_secret())
        .send()
        .await
        .ok()?;
    Some(format!(
        "HTTP {} in {} ms",
        reply.status().as_u16(),
        started.elapsed().as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Env};

    #[test]
    fn a_component_is_promoted_only_with_all_three_of_its_secrets() {
        let env: Env = [
            ("KEY".to_owned(), "follow-key-1234".to_owned()),
            ("S".to_owned(), "component-secret".to_owned()),
            (
                "AES".to_owned(),
                "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_owned(),
            ),
        ]
        .into_iter()
        .collect();
        let follow = r#"follow = { url = "https://prod.internal:8088", key = { env = "KEY" } }"#;
        let config = |secrets: &str| {
            Config::from_toml_str(
                &format!(
                    "[[components]]\nid = \"open1\"\ncomponent_appid = \"wx00000000000000c1\"\n{secrets}{follow}\n"
                ),
                &env,
            )
            .unwrap()
        };
        assert_eq!(
            super::missing_secret(&config(""), "open1").as_deref(),
            Some("components[0].secret")
        );
        assert_eq!(
            super::missing_secret(&config("secret = { env = \"S\" }\n"), "open1").as_deref(),
            Some("components[0].token")
        );
        let all = "secret = { env = \"S\" }\ntoken = { env = \"S\" }\nencoding_aes_key = { env = \"AES\" }\n";
        assert_eq!(super::missing_secret(&config(all), "open1"), None);
    }
}
