//! Every credential kind at once (issue 13's fleet test): eight `wxtoken
//! serve` processes keep an app's token, its jsapi and wx_card tickets, and
//! two WeCom agents' tokens with their corp and agent_config tickets, for
//! several lifetimes: one upstream call per lifetime of each credential,
//! never two at once, WeCom's caps never reached, and no reader ever handed
//! a dead value.

use std::time::Duration;

use wxtoken_e2e::{Fleet, Timing, kinds};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_keep_every_kind_at_one_call_per_lifetime() {
    let timing = Timing {
        token_ttl: Duration::from_secs(6),
        ticket_ttl: Duration::from_secs(4),
        tickets: &["jsapi", "wx_card"],
        wecom: Some(&["jsapi", "agent_config"]),
        ..Timing::default()
    };
    let run = timing.token_ttl * 3;
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_replicas(8);
    let watch = kinds::watch(&fleet, run).await;
    eprintln!("{}", serde_json::to_string_pretty(&watch).unwrap());
    assert!(watch.reads > 1000, "the readers ran: {}", watch.reads);
    for c in &watch.credentials {
        assert_eq!(c.stale, 0, "{}: dead values handed out", c.name);
        assert_eq!(
            c.calls, c.issued,
            "{}: a call that brought no new value",
            c.name
        );
        assert!(
            (c.ideal - 1..=c.ideal).contains(&c.calls),
            "{}: {} calls, ideal {}",
            c.name,
            c.calls,
            c.ideal
        );
        assert_eq!(c.max_concurrent, 1, "{}", c.name);
    }
    assert_eq!(watch.cap_refusals, 0);
    fleet.assert_logs_clean();
}
