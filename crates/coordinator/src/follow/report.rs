//! A report a follower's reader made, forwarded to the primary (SPEC §12):
//! the primary judges it (a check with WeChat) and refreshes if WeChat
//! rejects the value; the newer value comes back in its answer (and on the
//! stream). A refusal is recorded here, so the follower's readers waiting
//! for a verdict get one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{info, warn};
use wxtoken_common::{CredentialRef, Slot};

use super::stream::Value;
use super::{Keepers, Nudge};
use crate::config::FollowConfig;

/// How long the primary may take to judge (a check with WeChat, then a
/// fetch).
const VERDICT_WAIT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    result: String,
    #[serde(default, alias = "ticket")]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    generation: Option<u64>,
}

/// Sends the report of `reported` to the primary, in the background.
pub(super) fn forward(
    keepers: Keepers,
    http: reqwest::Client,
    cref: CredentialRef,
    follow: Arc<FollowConfig>,
    reported: &Value,
) {
    let value = SecretString::from(reported.value.expose_secret().to_owned());
    let generation = reported.generation;
    tokio::spawn(async move {
        let (path, field) = match cref.slot {
            Slot::AccessToken => (
                format!("/v1/apps/{}/access_token/invalidate?wait=true", cref.id),
                "access_token",
            ),
            Slot::Ticket(t) => (
                format!(
                    "/v1/apps/{}/tickets/{}/invalidate?wait=true",
                    cref.id,
                    t.as_str()
                ),
                "ticket",
            ),
        };
        let mut body = serde_json::Map::new();
        body.insert(field.into(), value.expose_secret().into());
        let sent = http
            .post(format!("{}{path}", follow.url))
            .bearer_auth(follow.key.expose_secret())
            .json(&body)
            .timeout(VERDICT_WAIT)
            .send()
            .await;
        let answer = match sent {
            Ok(r) if r.status().is_success() => r.json::<Answer>().await.ok(),
            Ok(r) => {
                warn!(credential = %cref, primary = %follow.url, status = r.status().as_u16(), "the primary refused a forwarded report (does the follow key have token:invalidate?)");
                None
            }
            Err(e) => {
                warn!(credential = %cref, primary = %follow.url, error = %e.without_url(), "could not forward a report to the primary");
                None
            }
        };
        let Some(answer) = answer else { return };
        info!(credential = %cref, generation, result = %answer.result, "forwarded a report to the primary");
        let store = &keepers.inner.store;
        match answer.result.as_str() {
            "token_valid" => {
                let verified = Some(keepers.inner.settings.verify_interval);
                let _ = store
                    .refuse_report(&cref, generation, "token_valid", verified)
                    .await;
            }
            "reserve" | "refused" => {
                let _ = store
                    .refuse_report(&cref, generation, &answer.result, None)
                    .await;
            }
            _ => {}
        }
        // A newer value in the answer: stored now, before the stream's event.
        if let (Some(v), Some(expires_in), Some(g)) =
            (answer.access_token, answer.expires_in, answer.generation)
            && g > generation
        {
            let newer = Value {
                value: SecretString::from(v),
                generation: g,
                expires: Instant::now() + Duration::from_secs(expires_in),
                lag: None,
            };
            keepers.nudge(&cref, Nudge::Value(cref.clone(), newer));
        }
    });
}
