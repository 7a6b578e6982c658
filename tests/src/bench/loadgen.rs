//! A closed-loop HTTP/1.1 load generator for the gateway section: C
//! keep-alive connections, each with one request in flight, sent back to
//! back for a fixed time on one dedicated thread (its own current-thread
//! runtime, so the in-process wechat-sim on the bench's runtime does not
//! share its scheduler). Every response is checked — status 200 and a body
//! that says the call worked — and counted as an error otherwise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a good response body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `getcallbackip`: an `ip_list` array and no non-zero `errcode`.
    IpList,
    /// `message/custom/send`: `errcode` 0.
    ErrcodeZero,
}

impl Check {
    /// `Err` with the reason when `body` is not a good answer.
    pub fn verify(self, body: &[u8]) -> Result<(), String> {
        let v: Value = serde_json::from_slice(body).map_err(|_| {
            format!(
                "body is not JSON: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )
        })?;
        let errcode = v.get("errcode").and_then(Value::as_i64).unwrap_or(0);
        let ok = match self {
            Self::IpList => errcode == 0 && v.get("ip_list").is_some_and(Value::is_array),
            Self::ErrcodeZero => v.get("errcode").and_then(Value::as_i64) == Some(0),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("bad answer: {v}"))
        }
    }
}

/// One endpoint as the loader calls it: where, the raw request bytes, and
/// how to judge the answer.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub request: Vec<u8>,
    pub check: Check,
}

impl Target {
    /// A `GET` or `POST` (with a JSON `body`) of `path_and_query`, plus
    /// `extra` header lines (each ending in `\r\n`).
    pub fn new(addr: SocketAddr, path_and_query: &str, body: Option<&str>, extra: &str) -> Self {
        let request = match body {
            None => format!("GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n"),
            Some(b) => format!(
                "POST {path_and_query} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ),
        };
        let check = if body.is_some() {
            Check::ErrcodeZero
        } else {
            Check::IpList
        };
        Self {
            addr,
            request: request.into_bytes(),
            check,
        }
    }
}

/// What one or more load runs measured: every request's latency (ns) and
/// the errors.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    pub lat_ns: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// CPU time of the loader thread.
    pub loader_cpu: Duration,
}

impl Sample {
    /// Adds another run of the same point (rounds are pooled).
    pub fn merge(&mut self, other: Self) {
        self.lat_ns.extend(other.lat_ns);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.loader_cpu += other.loader_cpu;
    }

    pub fn requests(&self) -> u64 {
        self.lat_ns.len() as u64
    }

    pub fn rps(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// The `p`-th percentile in µs (sorts on first use).
    pub fn pct_us(&mut self, p: f64) -> f64 {
        if self.lat_ns.is_empty() {
            return f64::NAN;
        }
        if !self.lat_ns.is_sorted() {
            self.lat_ns.sort_unstable();
        }
        let i = ((self.lat_ns.len() as f64 * p / 100.0) as usize).min(self.lat_ns.len() - 1);
        f64::from(self.lat_ns[i]) / 1e3
    }
}

/// One keep-alive connection, one request in flight.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of the last response's body still at the head of `buf`.
    last_body: usize,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
            last_body: 0,
        })
    }

    /// Sends `request`, reads one whole response (`Content-Length` framed);
    /// returns its status and body.
    async fn call(&mut self, request: &[u8]) -> Result<(u16, &[u8])> {
        self.buf.drain(..self.last_body);
        self.last_body = 0;
        self.stream
            .write_all(request)
            .await
            .context("writing the request")?;
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let (status, len) = response_head(&self.buf[..head_end])?;
        while self.buf.len() < head_end + len {
            self.fill().await?;
        }
        // The body is dropped at the next call (one request in flight:
        // nothing follows it in the buffer).
        self.buf.drain(..head_end);
        self.last_body = len;
        Ok((status, &self.buf[..len]))
    }

    async fn fill(&mut self) -> Result<()> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("reading the response")?;
        ensure!(n > 0, "the server closed the connection");
        Ok(())
    }
}

/// One checked call on a fresh connection: the body of a good answer.
pub async fn probe(target: &Target) -> Result<String> {
    let mut conn = Conn::connect(target.addr).await?;
    let (status, body) = conn.call(&target.request).await?;
    let text = String::from_utf8_lossy(body).into_owned();
    ensure!(status == 200, "HTTP {status}: {text}");
    target.check.verify(body).map_err(anyhow::Error::msg)?;
    Ok(text)
}

/// C connections on `target` for `duration`, on the loader thread.
pub async fn load(target: &Target, c: usize, duration: Duration) -> Result<Sample> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("loader runtime")?;
        let cpu0 = thread_cpu();
        let mut sample = rt.block_on(closed_loop(target, c, duration))?;
        sample.loader_cpu = thread_cpu().saturating_sub(cpu0);
        Ok(sample)
    })
    .await
    .context("loader thread")?
}

async fn closed_loop(target: Target, c: usize, duration: Duration) -> Result<Sample> {
    let mut conns = Vec::with_capacity(c);
    for _ in 0..c {
        conns.push(Conn::connect(target.addr).await?);
    }
    let start = Instant::now();
    let until = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let request = target.request.clone();
        let check = target.check;
        tasks.spawn(async move {
            let mut s = Sample {
                lat_ns: Vec::with_capacity(1 << 15),
                ..Sample::default()
            };
            let mut end = Instant::now();
            while end < until {
                let t = end;
                let verdict = match conn.call(&request).await {
                    Ok((200, body)) => check.verify(body),
                    Ok((status, body)) => Err(format!(
                        "HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    // The connection is unusable: count it, stop this worker.
                    Err(e) => {
                        s.errors += 1;
                        s.first_error.get_or_insert(format!("{e:#}"));
                        break;
                    }
                };
                end = Instant::now();
                if let Err(e) = verdict {
                    s.errors += 1;
                    s.first_error.get_or_insert(e);
                }
                s.lat_ns
                    .push(u32::try_from((end - t).as_nanos()).unwrap_or(u32::MAX));
            }
            s.elapsed = end.saturating_duration_since(start);
            s
        });
    }
    let mut all = Sample::default();
    while let Some(done) = tasks.join_next().await {
        let s = done.context("load task")?;
        all.elapsed = all.elapsed.max(s.elapsed);
        let elapsed = all.elapsed;
        all.merge(s);
        all.elapsed = elapsed;
    }
    if all.lat_ns.is_empty() && all.errors == 0 {
        bail!("no request completed in {duration:?}");
    }
    Ok(all)
}

/// User + system CPU time of the calling thread (`/proc`, 10 ms steps).
fn thread_cpu() -> Duration {
    proc_cpu("/proc/thread-self/stat").unwrap_or_default()
}

/// User + system CPU time of a process or thread from its `stat` file.
pub fn proc_cpu(stat: &str) -> Option<Duration> {
    proc_cpu_split(stat).map(|(user, system)| user + system)
}

/// The user and system (kernel) CPU time of the process or thread whose
/// `/proc/…/stat` is `stat`.
pub fn proc_cpu_split(stat: &str) -> Option<(Duration, Duration)> {
    let text = std::fs::read_to_string(stat).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    // utime and stime, fields 14 and 15 of proc(5) (index 0 is field 3).
    let ticks = |i: usize| -> Option<Duration> {
        Some(Duration::from_millis(
            fields.get(i)?.parse::<u64>().ok()? * 10,
        ))
    };
    Some((ticks(11)?, ticks(12)?))
}

/// The status and `Content-Length` of an HTTP/1.1 response head (through
/// its blank line); the bench's loaders read nothing else of it.
pub(super) fn response_head(head: &[u8]) -> Result<(u16, usize)> {
    let head = std::str::from_utf8(head).context("response head")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .with_context(|| format!("no content-length in {head:?}"))?;
    Ok((status, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_judged_by_their_body() {
        assert!(Check::IpList.verify(br#"{"ip_list":["1.1.1.1"]}"#).is_ok());
        assert!(Check::IpList.verify(br#"{"errcode":40001}"#).is_err());
        assert!(Check::IpList.verify(b"<html>").is_err());
        assert!(Check::ErrcodeZero.verify(br#"{"errcode":0}"#).is_ok());
        assert!(Check::ErrcodeZero.verify(br#"{"errcode":40001}"#).is_err());
        assert!(Check::ErrcodeZero.verify(br#"{}"#).is_err());
    }

    #[test]
    fn percentiles_pool_rounds() {
        let mut a = Sample {
            lat_ns: vec![3000, 1000],
            elapsed: Duration::from_secs(1),
            ..Sample::default()
        };
        a.merge(Sample {
            lat_ns: vec![2000, 4000],
            elapsed: Duration::from_secs(1),
            ..Sample::default()
        });
        assert_eq!(a.requests(), 4);
        assert!((a.rps() - 2.0).abs() < 1e-9);
        assert!((a.pct_us(50.0) - 3.0).abs() < 1e-9);
        assert!((a.pct_us(99.0) - 4.0).abs() < 1e-9);
    }
}
