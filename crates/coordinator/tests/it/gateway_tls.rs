//! The gateway's own transport over TLS (`upstream/conn.rs`): WeChat's
//! hosts are `https`, so the TLS path is what production uses. A host with
//! a certificate from a CA made here answers a JSON reply (its errcode read)
//! and a binary one (streamed); calls reuse one connection; a client that
//! does not trust the CA is refused at the handshake.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::routing::get;
use wxtoken_coordinator::config::GatewayConfig;
use wxtoken_coordinator::config::tls::TlsFiles;
use wxtoken_coordinator::http::tls::TlsListener;
use wxtoken_coordinator::upstream::proxy::{Answer, Call, Payload, Proxy};

use crate::pki::{Ca, write};

/// An HTTPS host on 127.0.0.1 serving `/cgi-bin/getcallbackip` (JSON,
/// records each request target) and `/wxa/img` (64 KiB of PNG).
async fn host(dir: &std::path::Path, ca: &Ca) -> (u16, Arc<Mutex<Vec<String>>>) {
    let leaf = ca.server();
    let files = TlsFiles {
        cert: write(dir, "host.pem", &leaf.cert),
        key: write(dir, "host.key", &leaf.key),
        client_ca: None,
    };
    let tls = Arc::new(TlsListener::new(files).unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new()
        .route(
            "/cgi-bin/getcallbackip",
            get(move |uri: Uri| {
                let log = log.clone();
                async move {
                    log.lock().unwrap().push(uri.to_string());
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        r#"{"ip_list":["101.226.103.0/25"]}"#,
                    )
                }
            }),
        )
        .route(
            "/wxa/img",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "image/png")],
                    vec![0x89_u8; 64 << 10],
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let limits = wxtoken_coordinator::http::ConnLimits {
        header_read_timeout: Duration::from_secs(5),
        max_connections: 100,
        name: "host",
        workers: 0,
    };
    tokio::spawn(wxtoken_coordinator::http::serve(
        listener,
        app,
        limits,
        Some(tls),
        std::future::pending(),
    ));
    (port, seen)
}

/// A TCP forwarder to `to` on a port of its own, counting the connections
/// it accepts.
async fn counting_forwarder(to: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    (port, accepted)
}

fn trusting(ca: Option<&Ca>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        roots
            .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
            .unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn call(proxy: &Proxy, port: u16, target: &str) -> Result<Answer, String> {
    let base = proxy
        .base(&format!("https://localhost:{port}"))
        .map_err(|e| e.to_string())?;
    let headers = HeaderMap::new();
    let call = Call {
        method: &Method::GET,
        base: &base,
        target,
        headers: &headers,
        deadline: tokio::time::Instant::now() + Duration::from_secs(5),
    };
    proxy
        .send(&call, "TOKEN+/=", &Payload::Kept(Bytes::new()), None)
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_transport_speaks_tls_to_a_host_it_trusts_and_only_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wechat host CA");
    let (host_port, seen) = host(dir.path(), &ca).await;
    // In front of the host, to count the connections the gateway opens.
    let (port, accepted) = counting_forwarder(host_port).await;
    let proxy = Proxy::with_tls(&GatewayConfig::default(), trusting(Some(&ca)));

    for _ in 0..3 {
        match call(&proxy, port, "/cgi-bin/getcallbackip?x=1")
            .await
            .unwrap()
        {
            Answer::Read {
                status,
                errcode,
                body,
                ..
            } => {
                assert_eq!((status.as_u16(), errcode), (200, 0));
                assert!(String::from_utf8_lossy(&body).contains("ip_list"));
            }
            other => panic!("a JSON reply is read: {other:?}"),
        }
    }
    assert_eq!(
        seen.lock().unwrap().last().map(String::as_str),
        Some("/cgi-bin/getcallbackip?x=1&access_token=TOKEN%2B%2F%3D"),
        "the token is added to the caller's query, encoded"
    );
    match call(&proxy, port, "/wxa/img").await.unwrap() {
        Answer::Streaming { status, body, .. } => {
            assert_eq!(status.as_u16(), 200);
            let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            assert_eq!(bytes.len(), 64 << 10);
        }
        other => panic!("a binary reply streams: {other:?}"),
    }
    // One TLS connection carried all four calls (a pooled TLS connection
    // is reused: the host's session tickets are no close).
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        1,
        "TLS connections opened for 4 sequential calls"
    );

    // A client that does not trust the host's CA does not get through.
    let blind = Proxy::with_tls(&GatewayConfig::default(), trusting(None));
    let refused = call(&blind, port, "/cgi-bin/getcallbackip")
        .await
        .unwrap_err();
    assert!(refused.contains("TLS"), "{refused}");
    assert_eq!(
        seen.lock().unwrap().len(),
        3,
        "the untrusted call reached the host"
    );
}
