//! Watching every credential kind of a fleet at once (issue 13), shared by
//! the e2e fleet test and the bench: readers sample every credential's value
//! from Redis and judge it by the simulator (a token must be valid, a ticket
//! within the life the simulator gave it), then the simulator's counters
//! are compared with the ideal — one call per lifetime per credential.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use wxtoken_client::keyspace;
use wxtoken_common::{CredentialId, CredentialRef, Keys, Slot, TicketType};

use crate::{AGENTS, CORPID, Fleet, ID};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Lifetimes begun in `elapsed` by a value of life `cycle`, the first at 0.
pub fn ideal(elapsed: Duration, cycle: Duration) -> u64 {
    1 + (elapsed.as_secs_f64() / cycle.as_secs_f64()).floor() as u64
}

/// One credential's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub name: String,
    /// Upstream calls the simulator counted for it.
    pub calls: u64,
    /// New values WeChat issued to it.
    pub issued: u64,
    pub ideal: u64,
    pub max_concurrent: u64,
    /// Reads that found a dead value.
    pub stale: u64,
}

/// What a watch saw.
#[derive(Debug, Clone, Serialize)]
pub struct Watch {
    pub seconds: f64,
    pub reads: u64,
    pub credentials: Vec<Measured>,
    /// WeCom's refusals over its hourly caps (must be 0).
    pub cap_refusals: u64,
}

impl Watch {
    pub fn stale(&self) -> u64 {
        self.credentials.iter().map(|c| c.stale).sum()
    }
}

/// Samples every credential of a fleet configured with the app's `tickets`
/// and WeCom agents (both ticket types) every 50 ms for `run`, then judges.
/// The corp's jsapi ticket, one value for all its agents, is one row
/// (`CORPID/jsapi`): calls through any agent count.
pub async fn watch(fleet: &Fleet, run: Duration) -> Watch {
    let t = &fleet.timing;
    let keys = Keys::new(&fleet.prefix).expect("prefix");
    let id = |s: &str| CredentialId::parse(s).expect("an id");
    let mut watched: Vec<(String, CredentialRef)> = vec![(ID.into(), CredentialRef::token(id(ID)))];
    for ticket in t.tickets {
        let ty: TicketType = ticket.parse().expect("a ticket type");
        watched.push((format!("{ID}/{ticket}"), CredentialRef::ticket(id(ID), ty)));
    }
    if let Some(tickets) = t.wecom {
        for (agent, _, _) in AGENTS {
            watched.push((agent.into(), CredentialRef::token(id(agent))));
            for ticket in tickets {
                let ty: TicketType = ticket.parse().expect("a ticket type");
                watched.push((
                    format!("{agent}/{ticket}"),
                    CredentialRef::ticket(id(agent), ty),
                ));
            }
        }
    }
    let mut conn = fleet.conn().await;
    let started = Instant::now();
    let (mut reads, mut stale) = (0_u64, BTreeMap::<String, u64>::new());
    while started.elapsed() < run {
        let mut seen = Vec::with_capacity(watched.len());
        for (name, cref) in &watched {
            let read_at = unix_ms();
            if let Ok(Some(v)) = keyspace::read_value(&mut conn, &keys.slot(cref)).await {
                seen.push((name, cref.slot, v, read_at));
            }
        }
        // Judged by what the simulator knows after the reads (a value issued
        // between a snapshot and a read would look unknown), at the moment
        // each read began (one that expires while it is read was alive).
        let stats = fleet.sim.stats();
        for (name, slot, v, read_at) in seen {
            reads += 1;
            let alive = match slot {
                Slot::AccessToken => stats
                    .find_token(&v.value)
                    .is_some_and(|(_, t)| t.usable_at(read_at)),
                Slot::Ticket(_) => stats
                    .apps
                    .values()
                    .flat_map(|a| a.issued_tickets.iter())
                    .any(|i| i.ticket == v.value && read_at < i.expires_at_ms),
            };
            if !alive {
                eprintln!(
                    "dead value: {name} read at {read_at} ms with {:?} left",
                    v.ttl
                );
                *stale.entry(name.clone()).or_default() += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();
    let stats = fleet.sim.stats();
    let app = fleet.app();
    let mut credentials = vec![Measured {
        name: ID.into(),
        calls: app.fetch_calls,
        issued: app.token_fetch_ok,
        ideal: ideal(elapsed, t.token_ttl - t.refresh_ahead),
        max_concurrent: app.max_concurrent_fetches,
        stale: stale.get(ID).copied().unwrap_or(0),
    }];
    let ticket_row = |name: String,
                      a: &wechat_sim::AppStats,
                      kind: &str,
                      stale: &BTreeMap<String, u64>| Measured {
        calls: a.ticket_calls.get(kind).copied().unwrap_or(0),
        issued: a.tickets_issued.get(kind).copied().unwrap_or(0),
        ideal: ideal(elapsed, t.ticket_ttl),
        max_concurrent: a
            .max_concurrent_ticket_fetches
            .get(kind)
            .copied()
            .unwrap_or(0),
        stale: stale.get(&name).copied().unwrap_or(0),
        name,
    };
    for ticket in t.tickets {
        credentials.push(ticket_row(format!("{ID}/{ticket}"), &app, ticket, &stale));
    }
    if let Some(tickets) = t.wecom {
        for (agent, agentid, _) in AGENTS {
            let a = stats
                .agent(CORPID, Some(agentid))
                .cloned()
                .unwrap_or_default();
            credentials.push(Measured {
                name: agent.into(),
                calls: a.fetch_calls,
                issued: a.wecom_fetch_ok,
                ideal: ideal(elapsed, t.token_ttl),
                max_concurrent: a.max_concurrent_fetches,
                stale: stale.get(agent).copied().unwrap_or(0),
            });
            for ticket in tickets.iter().filter(|t| **t != "jsapi") {
                credentials.push(ticket_row(format!("{agent}/{ticket}"), &a, ticket, &stale));
            }
        }
        if tickets.contains(&"jsapi") {
            // One ticket for the whole corp, whichever agent fetches it.
            let mut corp = Measured {
                name: format!("{CORPID}/jsapi"),
                calls: 0,
                issued: 0,
                ideal: ideal(elapsed, t.ticket_ttl),
                max_concurrent: 0,
                stale: 0,
            };
            for (agent, agentid, _) in AGENTS {
                let a = stats
                    .agent(CORPID, Some(agentid))
                    .cloned()
                    .unwrap_or_default();
                let row = ticket_row(format!("{agent}/jsapi"), &a, "jsapi", &stale);
                corp.calls += row.calls;
                corp.issued += row.issued;
                corp.max_concurrent = corp.max_concurrent.max(row.max_concurrent);
                corp.stale += row.stale;
            }
            credentials.push(corp);
        }
    }
    let cap_refusals = stats
        .corp(CORPID)
        .map_or(0, |c| c.ticket_cap_refusals.values().sum());
    Watch {
        seconds: elapsed.as_secs_f64(),
        reads,
        credentials,
        cap_refusals,
    }
}
