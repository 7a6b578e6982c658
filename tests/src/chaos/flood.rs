//! The `report_flood` fault: issue 12's attack loop against a running
//! fleet (reports of the current token over Redis and HTTP, forged events).
//! It only attacks; `report.rs` judges what the fleet made of it.

use std::time::{Duration, Instant};

use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialRef, Keys};

use crate::{API_KEY, Fleet, ID};

/// Issue 12's attack loop: report the current token (plain Redis and HTTP)
/// and publish forged force / report / invalidation events, for 4 s.
pub(super) async fn report_flood(fleet: &Fleet) {
    let Ok(keys) = Keys::new(&fleet.prefix) else {
        return;
    };
    let id = fleet.id();
    let mut c = fleet.conn().await;
    let http = reqwest::Client::new();
    let api = fleet.replicas.first().map(|r| r.http);
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        if let Some(t) = fleet.token().await {
            let _ = wxtoken_client::keyspace::invalidate(&mut c, &keys, &id, &t.value).await;
            if let Some(api) = api {
                let _ = http
                    .post(format!("http://{api}/v1/apps/{ID}/access_token/invalidate"))
                    .bearer_auth(API_KEY)
                    .json(&serde_json::json!({ "access_token": t.value }))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await;
            }
            for e in [
                Event::RefreshRequested {
                    generation: t.generation,
                    reason: Some("forged".into()),
                    force: true,
                },
                Event::Reported {
                    generation: t.generation,
                },
                Event::Invalidated {
                    generation: t.generation,
                },
            ] {
                let _ = wxtoken_client::keyspace::publish(
                    &mut c,
                    &keys,
                    &CredentialRef::token(id.clone()),
                    &e,
                )
                .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
