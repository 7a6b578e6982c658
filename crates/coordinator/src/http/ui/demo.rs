//! `wxtoken demo`'s status page: the first replica's HTTP API on a free
//! loopback port, with a key made up for the run (printed, so the page can
//! be opened while the demo runs). It owns nothing else of the demo.

use anyhow::Context;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::replica::ReplicaHandle;

/// The page being served; dropping it stops the server.
#[derive(Debug)]
pub struct DemoPage {
    pub url: String,
    /// The run's all-access key (this demo only).
    pub key: String,
    _stop: oneshot::Sender<()>,
}

pub async fn serve(replica: &ReplicaHandle, config: &Config) -> anyhow::Result<DemoPage> {
    let key: String = rand::random::<[u8; 12]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut config = config.clone();
    config.api_keys = vec![SecretString::from(format!("demo-{key}"))];
    let state = replica
        .http_state(&config)
        .context("the status page's state")?;
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the status page to a loopback port")?;
    let addr = listener.local_addr().context("the status page's port")?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(super::super::serve(
        listener,
        super::super::router(state, true),
        crate::http::ConnLimits {
            name: "ui",
            workers: 0,
            ..config.http.conn_limits()
        },
        None,
        async {
            let _ = stopped.await;
        },
    ));
    Ok(DemoPage {
        url: format!("http://{addr}/ui"),
        key: format!("demo-{key}"),
        _stop: stop,
    })
}
