//! The API over TLS (issue 15, SPEC §10): HTTPS with a certificate from a
//! CA made here, plain HTTP refused on that port; a renewed certificate is
//! served to new connections soon after its files change, without a
//! restart, and a broken or mismatched one is refused while the old one
//! keeps serving; with `tls_client_ca` a client without a certificate, or
//! with one from another CA, cannot connect, and a certificate's subject
//! CN is the key it stands for (its ids and operations only).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::tls::{Certificate, Identity, TlsInfo};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::net::TcpListener;
use wxtoken_coordinator::config::keys::KeyEntry;
use wxtoken_coordinator::config::{Config, Env};
use wxtoken_coordinator::http::reload::{Reloadable, watch};
use wxtoken_coordinator::http::tls::TlsListener;
use wxtoken_coordinator::http::{router, serve};

use crate::fleet::{API_KEY, Fleet, ID, SECRET, Settings};
use crate::pki::{Ca, Leaf, write};

/// A replica's API served over TLS on a port of its own, its certificate
/// files watched as `wxtoken serve` watches them.
pub struct Https {
    addr: SocketAddr,
    tls: Arc<TlsListener>,
    _stop: tokio::sync::watch::Sender<bool>,
}

/// [`https`] for other tests (the follower's primary).
pub async fn https_api(fleet: &Fleet, config: &Config) -> Https {
    https(fleet, config).await
}

impl Https {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

async fn https(fleet: &Fleet, config: &Config) -> Https {
    let tls = Arc::new(TlsListener::new(config.http.tls().expect("tls files")).unwrap());
    let state = fleet.replicas[0].http_state(config).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut until = stopped.clone();
    tokio::spawn(serve(
        listener,
        router(state, true),
        config.http.conn_limits(),
        Some(tls.clone()),
        async move {
            let _ = until.wait_for(|stop| *stop).await;
        },
    ));
    let watched = tls.clone();
    tokio::spawn(async move { watch(watched.as_ref(), stopped).await });
    Https {
        addr,
        tls,
        _stop: stop,
    }
}

/// A client that trusts only `ca`, opens a new connection per request (so
/// each one sees the certificate served now) and reports what it was shown.
fn client(ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only([Certificate::from_pem(ca.pem.as_bytes()).unwrap()])
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5));
    if let Some(leaf) = identity {
        b = b.identity(Identity::from_pem(&leaf.identity()).unwrap());
    }
    b.build().unwrap()
}

/// `GET /v1/apps/{id}/access_token` on `https://localhost:port`, with the
/// bearer key if given: the status and the server's certificate (DER).
async fn read_token(
    client: &reqwest::Client,
    addr: SocketAddr,
    id: &str,
    key: Option<&str>,
) -> reqwest::Result<(StatusCode, Vec<u8>)> {
    let url = format!(
        "https://localhost:{}/v1/apps/{id}/access_token",
        addr.port()
    );
    let mut req = client.get(url);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let resp = req.send().await?;
    let shown = resp
        .extensions()
        .get::<TlsInfo>()
        .and_then(TlsInfo::peer_certificate)
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    Ok((resp.status(), shown))
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

/// Replaces `path` the way certificate tools do: a new file renamed over it.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn tls_config(fleet: &Fleet, dir: &Path, server: &Leaf) -> Config {
    let mut config = fleet.config(SECRET);
    config.http.tls_cert = Some(write(dir, "server.pem", &server.cert));
    config.http.tls_key = Some(write(dir, "server.key", &server.key));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_the_api_and_a_renewed_certificate_without_a_restart() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wxtoken test CA");
    let first = ca.server();
    let config = tls_config(&fleet, dir.path(), &first);
    let api = https(&fleet, &config).await;
    let c = client(&ca, None);

    let (status, shown) = read_token(&c, api.addr, ID, Some(API_KEY)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, der(&first.cert), "the configured certificate");
    let plain = reqwest::Client::new()
        .get(format!("http://{}/v1/apps/{ID}/access_token", api.addr))
        .bearer_auth(API_KEY)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.is_err(),
        "plain HTTP on the TLS port must not be served: {plain:?}"
    );

    // Renewal: key and certificate replaced; new connections get the new
    // certificate, no request fails meanwhile.
    let second = ca.server();
    let (cert, key) = (
        config.http.tls_cert.clone().unwrap(),
        config.http.tls_key.clone().unwrap(),
    );
    replace(&key, &second.key);
    replace(&cert, &second.cert);
    let written = Instant::now();
    loop {
        let (status, shown) = read_token(&c, api.addr, ID, Some(API_KEY)).await.unwrap();
        assert_eq!(status, StatusCode::OK, "a request failed during renewal");
        if shown == der(&second.cert) {
            break;
        }
        assert_eq!(shown, der(&first.cert));
        assert!(
            written.elapsed() < Duration::from_secs(5),
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "renewed certificate served {:?} after the files changed",
        written.elapsed()
    );

    // A broken certificate, then one that does not fit the key: refused,
    // naming the key at fault; the second certificate keeps serving.
    replace(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    assert_eq!(api.tls.reload().unwrap_err().key, "http.tls_cert");
    replace(&cert, &ca.server().cert);
    let err = api.tls.reload().unwrap_err();
    assert_eq!(err.key, "http.tls_key", "{}", err.message);
    let (status, shown) = read_token(&c, api.addr, ID, Some(API_KEY)).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown, der(&second.cert), "the last good certificate stays");
}

fn cert_key(cn: &str) -> KeyEntry {
    KeyEntry {
        name: "orders".into(),
        key: None,
        sha256: None,
        ids: vec![ID.into()],
        allow: vec!["token:read".into()],
        per_second: None,
        client_cn: Some(cn.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_required_and_name_their_key() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wxtoken test CA");
    let mut config = tls_config(&fleet, dir.path(), &ca.server());
    config.http.tls_client_ca = Some(write(dir.path(), "clients.pem", &ca.pem));
    config.http.keys = vec![cert_key("orders.internal")];
    let api = https(&fleet, &config).await;

    // No certificate, or one from another CA: no connection at all.
    let none = read_token(&client(&ca, None), api.addr, ID, Some(API_KEY)).await;
    assert!(
        none.is_err(),
        "served without a client certificate: {none:?}"
    );
    let foreign = Ca::new("someone else's CA").client("orders.internal");
    let other = read_token(&client(&ca, Some(&foreign)), api.addr, ID, None).await;
    assert!(
        other.is_err(),
        "served a certificate of another CA: {other:?}"
    );

    // The certificate is the key: its id and operation, nothing else.
    let orders = client(&ca, Some(&ca.client("orders.internal")));
    assert_eq!(
        read_token(&orders, api.addr, ID, None).await.unwrap().0,
        StatusCode::OK
    );
    assert_eq!(
        read_token(&orders, api.addr, "other", None)
            .await
            .unwrap()
            .0,
        StatusCode::FORBIDDEN
    );
    let invalidate = orders
        .post(format!(
            "https://localhost:{}/v1/apps/{ID}/access_token/invalidate",
            api.addr.port()
        ))
        .json(&serde_json::json!({"token": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalidate.status(), StatusCode::FORBIDDEN);

    // A certificate no key stands for: 403 without a bearer, a bearer key
    // still works over it.
    let stranger = client(&ca, Some(&ca.client("stranger")));
    assert_eq!(
        read_token(&stranger, api.addr, ID, None).await.unwrap().0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        read_token(&stranger, api.addr, ID, Some(API_KEY))
            .await
            .unwrap()
            .0,
        StatusCode::OK
    );
}

#[test]
fn tls_settings_are_checked_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wxtoken test CA");
    let server = ca.server();
    let cert = write(dir.path(), "server.pem", &server.cert);
    let key = write(dir.path(), "server.key", &server.key);
    let junk = write(dir.path(), "junk.pem", "no PEM here\n");
    let env: Env = [("TLS_TEST_SECRET", "s")].into_iter().collect();
    let parse = |http: &str| {
        let text = format!(
            "[http]\n{http}\n[[apps]]\nid = \"shop\"\nappid = \"wx00000000000000aa\"\nsecret = {{ env = \"TLS_TEST_SECRET\" }}\n"
        );
        Config::from_toml_str(&text, &env)
            .map(|_| ())
            .map_err(|e| e.key)
    };
    let path = |p: &Path| p.display().to_string();
    assert_eq!(
        parse(&format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            path(&cert),
            path(&key)
        )),
        Ok(())
    );
    assert_eq!(
        parse(&format!("tls_cert = {:?}", path(&cert))),
        Err("http.tls_key".into())
    );
    assert_eq!(
        parse(&format!("tls_key = {:?}", path(&key))),
        Err("http.tls_cert".into())
    );
    assert_eq!(
        parse(&format!(
            "tls_cert = {:?}\ntls_key = {:?}",
            path(&junk),
            path(&key)
        )),
        Err("http.tls_cert".into())
    );
    assert_eq!(
        parse(&format!(
            "tls_cert = {:?}\ntls_key = {:?}\ntls_client_ca = {:?}",
            path(&cert),
            path(&key),
            path(&junk)
        )),
        Err("http.tls_client_ca".into())
    );
    assert_eq!(
        parse(&format!("tls_client_ca = {:?}", path(&cert))),
        Err("http.tls_client_ca".into())
    );
}

#[test]
fn plain_http_off_loopback_is_warned_about() {
    use wxtoken_coordinator::replica::plain_http_warning;
    let any: SocketAddr = "0.0.0.0:8088".parse().unwrap();
    let local: SocketAddr = "127.0.0.1:8088".parse().unwrap();
    let warning = plain_http_warning(any, false).expect("a warning");
    assert!(warning.contains("tls_cert"), "{warning}");
    assert_eq!(plain_http_warning(local, false), None);
    assert_eq!(
        plain_http_warning("[::1]:8088".parse().unwrap(), false),
        None
    );
    assert_eq!(plain_http_warning(any, true), None);
}
