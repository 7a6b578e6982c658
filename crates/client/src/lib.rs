//! `wxtoken-client`: what services embed to read the WeChat access token that
//! wxtoken coordinators keep fresh in Redis.
//!
//! It reads Redis (the keys of SPEC §3), follows the credential event
//! channels to keep an in-process cache current, and reports rejected tokens
//! by value. It never calls WeChat's token endpoints and never sees an
//! appsecret. The coordinator reuses its event subscription and read path, so
//! there is one implementation of each.
//!
//! ```no_run
//! use std::time::Duration;
//! use wxtoken_client::{Invalidation, TokenClient, Verdict, wechat::Api};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One client per process; clones share the cache.
//! let client = TokenClient::builder("redis://127.0.0.1:6379")
//!     .key_prefix("wxtoken")
//!     .token_wait(Duration::from_secs(5))
//!     .connect()
//!     .await?;
//!
//! // Nanoseconds when cached; one Redis round trip otherwise.
//! let token = client.access_token("shop").await?;
//! println!("generation {} expires in {:?}", token.generation(), token.ttl());
//!
//! // If WeChat rejects it (40001/40014/42001), report it by value: the fleet
//! // checks it with WeChat and refreshes once if WeChat really rejects it.
//! if let Invalidation::Reported { generation } = client.invalidate("shop", token.value()).await? {
//!     match client.wait_for_verdict("shop", generation, Duration::from_secs(10)).await? {
//!         Verdict::Replaced(fresh) => assert!(fresh.generation() > token.generation()),
//!         Verdict::Refused { reason, .. } => println!("kept the token: {reason}"),
//!     }
//! }
//!
//! // Or let the helper do all of that around a WeChat API call.
//! let api = Api::new(client.clone(), "https://api.weixin.qq.com")?;
//! let ips = api.get("shop", "/cgi-bin/getcallbackip", &[]).await?;
//! println!("{ips}");
//! # Ok(()) }
//! ```

mod cache;
mod client;
pub mod connect;
mod error;
pub mod events;
pub mod keyspace;
mod token;
pub mod wechat;

pub use client::{TokenClient, TokenClientBuilder, Verdict};
pub use error::ClientError;
pub use keyspace::Invalidation;
pub use token::Token;
