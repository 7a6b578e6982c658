//! Every kind section (issue 13): a fleet of 8 `wxtoken serve` processes
//! (quick: 2) keeps an app's token, its jsapi and wx_card tickets, and two
//! WeCom agents' tokens with the corp's jsapi and their agent_config tickets
//! for several ticket lifetimes (6 s tokens, 4 s tickets; 10 lifetimes,
//! quick: 2). Per credential, from the simulator: upstream calls against the
//! ideal (one per lifetime), the most ever in flight, and reads that found a
//! dead value; WeCom's cap refusals.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Value, json};

use super::Row;
use crate::{Fleet, SECRET, Timing, kinds};

const SECTION: &str = "every kind";

pub async fn run(quick: bool) -> Result<(Vec<Row>, Value)> {
    let timing = Timing {
        token_ttl: Duration::from_secs(6),
        ticket_ttl: Duration::from_secs(4),
        tickets: &["jsapi", "wx_card"],
        wecom: Some(&["jsapi", "agent_config"]),
        ..Timing::default()
    };
    let (replicas, lifetimes) = if quick { (2, 2) } else { (8, 10) };
    let run = timing.ticket_ttl * lifetimes;
    let mut fleet = Fleet::new(timing).await;
    for _ in 0..replicas {
        fleet.spawn_replica_env(SECRET, &[("RUST_LOG", "warn")]);
    }
    crate::sdk::wait_ready(&fleet, Duration::from_secs(60)).await?;
    let watch = kinds::watch(&fleet, run).await;
    let mut rows = Vec::new();
    for c in &watch.credentials {
        rows.push(
            Row::new(
                SECTION,
                format!("{replicas} replicas, {}: upstream calls / ideal", c.name),
                format!(
                    "{} / {} (max {} at once, {} dead reads)",
                    c.calls, c.ideal, c.max_concurrent, c.stale
                ),
            )
            .target(
                "≤ ideal, 1 at once, 0 dead",
                c.calls <= c.ideal && c.max_concurrent <= 1 && c.stale == 0,
            ),
        );
    }
    rows.push(
        Row::new(
            SECTION,
            "WeCom hourly cap refusals",
            watch.cap_refusals.to_string(),
        )
        .target("0", watch.cap_refusals == 0),
    );
    Ok((rows, json!({ "replicas": replicas, "watch": watch })))
}
