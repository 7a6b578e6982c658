//! Hot reload in process (the SIGHUP path with three processes is
//! tests/tests/e2e/reload.rs): WeCom agents and their tickets added and
//! removed by `LiveConfig::apply`, the same file again being no new config,
//! and a key file that does not load refusing the whole reload.

use std::time::Duration;

use wxtoken_common::{CredentialId, CredentialRef, Slot, TicketType};

use crate::fleet::{AGENTS, Fleet, SECRET, Settings};

fn agent(id: &str) -> CredentialRef {
    CredentialRef::token(CredentialId::parse(id).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_agents_come_and_go_with_the_config_and_a_bad_key_file_changes_nothing() {
    let mut fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let before = fleet.config(SECRET);
    let replica = &fleet.replicas[0];
    let http = replica.http_state(&before).expect("state");
    let live = replica.live_config(None, &before, http.clone());
    assert_eq!(live.generation(), 1);

    // Add both agents with their corp ticket.
    fleet.settings.wecom = Some(&["jsapi"]);
    let with_agents = fleet.config(SECRET);
    let replica = &fleet.replicas[0];
    let changes = live.apply(with_agents.clone()).expect("applied");
    let added: Vec<String> = changes.added.iter().map(ToString::to_string).collect();
    for (id, _, _) in AGENTS {
        assert!(added.contains(&id.to_owned()), "{id} added: {added:?}");
        assert!(replica.schedule().contains(&agent(id)));
    }
    assert!(
        changes.removed.is_empty() && changes.changed.is_empty(),
        "{changes:?}"
    );
    assert_eq!(live.generation(), 2);
    for (id, _, _) in AGENTS {
        let token = replica
            .client()
            .value(&agent(id))
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(!token.value().is_empty());
    }
    let ticket = CredentialRef {
        id: CredentialId::parse(AGENTS[0].0).unwrap(),
        slot: Slot::Ticket(TicketType::Jsapi),
    };
    assert!(
        replica.catalog().get(&ticket).is_some(),
        "the corp ticket is kept"
    );

    // The same config again: nothing changes, no new generation.
    let again = live.apply(with_agents.clone()).expect("applied");
    assert_eq!(again, Default::default());
    assert_eq!(live.generation(), 2);

    // A key file that does not load refuses the reload: the agents stay.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("keys.toml");
    std::fs::write(&bad, "[[keys]]\nname = \"x\"\nsha256 = \"not hex\"\n").unwrap();
    let mut broken = before.clone();
    broken.http.keys_file = Some(bad);
    let refused = live.apply(broken).expect_err("refused");
    assert!(refused.key.contains("keys"), "{refused}");
    assert_eq!(live.generation(), 2);
    assert!(replica.catalog().get(&agent(AGENTS[0].0)).is_some());
    assert!(replica.schedule().contains(&agent(AGENTS[0].0)));

    // Remove them: they are forgotten (404 on the API), the app stays.
    let changes = live.apply(before).expect("applied");
    assert_eq!(
        changes.removed.len(),
        4,
        "two agents and two tickets: {changes:?}"
    );
    for (id, _, _) in AGENTS {
        assert!(replica.catalog().get(&agent(id)).is_none());
        assert!(!replica.schedule().contains(&agent(id)));
    }
    assert_eq!(live.generation(), 3);
    assert!(fleet.token().await.is_some(), "the app keeps its token");
}
