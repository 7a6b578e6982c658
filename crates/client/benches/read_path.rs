//! Read-path benchmarks (issue 4): the cached `access_token` on 1 and 2
//! threads, and a cache miss next to a raw redis `GET` in the same run.
//!
//! `cargo bench -p wxtoken-client --bench read_path`
//!
//! A real `redis-server` is started on a free port (testkit). The token is
//! written with plain commands standing in for a coordinator's commit.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use wxtoken_client::TokenClient;
use wxtoken_testkit::RedisServer;

const ID: &str = "shop";

fn seed(redis: &RedisServer, prefix: &str) {
    let mut c = redis.client().get_connection().expect("redis");
    let token = "T".repeat(136); // a WeChat-sized token
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}:{{{ID}}}:access_token"))
        .arg(token)
        .arg("PX")
        .arg(3_600_000)
        .query(&mut c)
        .expect("SET");
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:{{{ID}}}:meta"))
        .arg("generation")
        .arg(1)
        .query(&mut c)
        .expect("HSET");
}

fn benches(c: &mut Criterion) {
    let redis = RedisServer::spawn();
    let prefix = "bench";
    seed(&redis, prefix);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let cached = rt.block_on(async {
        let client = TokenClient::builder(&redis.url())
            .key_prefix(prefix)
            .connect()
            .await
            .expect("client");
        assert!(client.wait_events_up(Duration::from_secs(5)).await);
        client.access_token(ID).await.expect("token");
        client
    });

    let mut group = c.benchmark_group("cached_read");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cached/1_thread", |b| {
        b.iter(|| black_box(cached.cached(black_box(ID))))
    });
    group.bench_function("access_token/1_thread", |b| {
        b.iter(|| {
            black_box(futures_util::FutureExt::now_or_never(
                cached.access_token(black_box(ID)),
            ))
        })
    });
    group.throughput(Throughput::Elements(2));
    let shared = Arc::new(cached.clone());
    group.bench_function("cached/2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..2 {
                    let client = shared.clone();
                    s.spawn(move || {
                        for _ in 0..iters {
                            black_box(client.cached(black_box(ID)));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    group.finish();

    // Miss path: no events and zero staleness, so every call reads Redis.
    let (uncached, mut raw) = rt.block_on(async {
        let uncached = TokenClient::builder(&redis.url())
            .key_prefix(prefix)
            .subscribe(false)
            .max_staleness(Duration::ZERO)
            .connect()
            .await
            .expect("client");
        let raw = redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("raw");
        (uncached, raw)
    });
    let key = format!("{prefix}:{{{ID}}}:access_token");
    let mut group = c.benchmark_group("miss_vs_raw_get");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_redis_get", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = raw.clone();
            let key = key.clone();
            async move {
                let v: Option<String> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .expect("GET");
                black_box(v)
            }
        })
    });
    group.bench_function("client_miss", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(uncached.access_token(ID).await.expect("token")) })
    });
    group.finish();
    let _ = &mut raw;
}

criterion_group! {
    name = read_path;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = benches
}
criterion_main!(read_path);
