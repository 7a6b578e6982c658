//! Credential kinds (SPEC §8): what differs between an app's access token,
//! its JS-SDK tickets, a WeCom agent's token and its tickets. Everything else
//! — lock, fence, quota, fetch under the lock, fenced commit, gate, events,
//! data-loss refill, reports, metrics, status — is one protocol that never
//! names a kind (`store`, `refresher`, `http`, `status`).
//!
//! A kind is a type implementing [`Kind`], one per module here, holding its
//! own parameters (appid, secret, parent, host). [`CATALOG`] turns the
//! config into credentials: each kind module contributes one function. To
//! add a kind: write its module (fetch, life, limits, check, lead), add its
//! entry to [`CATALOG`], give the simulator its rules, and test it; see
//! ARCHITECTURE.md "Adding a credential kind".

mod app_token;
mod authorizer;
mod component;
mod js_ticket;
mod wecom;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use secrecy::SecretString;
use wxtoken_common::{CredentialId, CredentialRef, Window};

use crate::config::{Config, FollowConfig, RefreshConfig};
use crate::upstream::{FetchError, Upstream};
use crate::vault::Vault;

pub use crate::store::Life;
pub use app_token::AppToken;
pub use authorizer::{AuthorizerToken, authorizer_id};
pub use component::ComponentToken;
pub use js_ticket::JsTicket;
pub use wecom::{WecomTicket, WecomToken};

/// Builds the credentials a config describes, one function per kind.
pub const CATALOG: &[fn(&Config) -> Vec<Credential>] = &[
    app_token::from_config,
    js_ticket::from_config,
    wecom::tokens_from_config,
    wecom::tickets_from_config,
    component::from_config,
];

/// One credential the fleet keeps: its name, its kind and where its value
/// comes from.
#[derive(Debug)]
pub struct Credential {
    pub cref: CredentialRef,
    pub kind: Box<dyn Kind>,
    /// `Some`: taken from another fleet's watch endpoint, never from WeChat
    /// (SPEC §12, `follow`); `None`: fetched from WeChat by the refresher.
    pub follow: Option<Arc<FollowConfig>>,
}

impl Credential {
    pub fn new(cref: CredentialRef, kind: impl Kind) -> Self {
        Self {
            cref,
            kind: Box::new(kind),
            follow: None,
        }
    }

    /// The same credential, followed from `follow` when it is set.
    pub fn followed(mut self, follow: Option<&FollowConfig>) -> Self {
        self.follow = follow.cloned().map(Arc::new);
        self
    }
}

/// Every credential of `config`, in config order (an app, then its tickets).
pub fn credentials(config: &Config) -> Vec<Arc<Credential>> {
    let mut all: Vec<Arc<Credential>> = CATALOG
        .iter()
        .flat_map(|build| build(config))
        .map(Arc::new)
        .collect();
    all.sort_by(|a, b| a.cref.cmp(&b.cref));
    all
}

/// What one kind of credential is.
pub trait Kind: Send + Sync + fmt::Debug + 'static {
    /// The `kind` label of metrics and status: `app_token`, `jsapi_ticket`, ….
    fn name(&self) -> &'static str;
    /// The upstream endpoint, for latency metrics (`token`, `getticket`, …).
    fn api(&self) -> &'static str;
    /// How long before expiry the fleet refreshes. Zero when WeChat hands
    /// out the same value until it expires (tickets, WeCom tokens): a fetch
    /// ahead would only return it again, so the fleet fetches at expiry.
    fn lead(&self, s: &RefreshConfig) -> Duration;
    /// The fleet-wide limits of its fetch endpoint.
    fn limits(&self, s: &RefreshConfig) -> Limits;
    /// The credential whose current value a fetch carries (a ticket's token).
    fn parent(&self) -> Option<CredentialRef> {
        None
    }
    /// How the life of a fetched value is counted.
    fn life(&self) -> Life {
        Life::Reply
    }
    /// Credentials of the fleet that WeChat hands the same value (a WeCom
    /// corp's jsapi ticket, fetched through each of its agents): a value one
    /// of them already holds lives no longer than theirs.
    fn shares_value_with(&self) -> &[CredentialRef] {
        &[]
    }
    /// The one of [`Self::shares_value_with`] that fetches the shared value
    /// and hands it to the others; `None` when this credential is that one
    /// (or shares nothing). A follower fetches only when the leader has no
    /// value and is not getting one.
    fn follows(&self) -> Option<&CredentialRef> {
        None
    }
    /// How a reported value is judged.
    fn check(&self) -> CheckBy;
    /// Who the credential is for operators (status, compatible endpoints).
    fn describe(&self) -> Describe;
    /// One upstream fetch. Only `refresher` calls this, holding the lock with
    /// quota taken (invariant 1).
    fn fetch<'a>(&'a self, cx: FetchCx<'a>) -> BoxFuture<'a, Result<Fetched, FetchError>>;
    /// Whether [`Kind::judge`] needs to see what is stored before a commit.
    fn judges(&self) -> bool {
        false
    }
    /// What to do with a fetched value, given what is stored.
    fn judge(&self, _fetched: &Fetched, _stored: &Digest) -> Judgement {
        Judgement::Commit
    }
    /// Whether every fetch makes WeChat cut off the value issued before it
    /// (after the overlap): `cgi-bin/token`, component and authorizer
    /// tokens. A fetched value refused at commit as stale then means the
    /// stored one may die early, so the fleet replaces it.
    fn supersedes(&self) -> bool {
        false
    }
    /// Whether a value filled with many others (an import, a refill after
    /// data loss) is refreshed at a random point of its second half-life,
    /// to spread the lives that follow (authorizers: 100 000 at once).
    fn spreads_after_fill(&self) -> bool {
        false
    }
    /// The component and appid of an authorizer (registered at run time,
    /// revoked on 61023); `None` for every other kind.
    fn authorizer_of(&self) -> Option<(&CredentialId, &str)> {
        None
    }
    /// Whether a fetch needs a refresh token the fleet stores (authorizers):
    /// without one stored, the refresher does not even claim (only an
    /// authorization or an import brings one, and either wakes the
    /// credential), so 100 000 authorizers waiting for a rebuild after a
    /// data loss cost one GET each instead of a claim and a failure record.
    fn needs_refresh_token(&self) -> bool {
        false
    }
    /// Where business calls made with this value go (the gateway, SPEC §10):
    /// WeChat's API host for app and authorizer tokens, WeCom's for agents'
    /// tokens. `None` for values that are no `access_token` of business
    /// APIs (tickets, component tokens): the gateway does not proxy them.
    fn api_base(&self) -> Option<&str> {
        None
    }
    /// The endpoint whose daily count WeChat's `openapi/quota/get` reports
    /// and the fleet reconciles (`quota_check.rs`): only for kinds where a
    /// call by anyone else holding the secret harms the fleet and WeChat
    /// counts it with the fleet's — `cgi-bin/token` apps. `None` for the
    /// rest: `stable_token` (a third party's call returns the same token,
    /// and its lineage is apart from `cgi-bin/token`), tickets (a fetch by
    /// anyone returns the same ticket), WeCom (qyapi has no `quota/get`),
    /// components and authorizers (their counts are the component's, asked
    /// with a component token; not reconciled yet).
    fn fetch_quota(&self) -> Option<FetchQuota<'_>> {
        None
    }
    /// `clear_quota/v2` for the credential's account (appid + appsecret in
    /// the body: no token needed, so it works when the quota is spent);
    /// `None` for kinds without an appsecret of their own.
    fn clear_quota<'a>(
        &'a self,
        _upstream: &'a Upstream,
    ) -> Option<BoxFuture<'a, Result<(), FetchError>>> {
        None
    }
}

/// Where WeChat reports a fetch endpoint's daily count ([`Kind::fetch_quota`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchQuota<'a> {
    /// The API host (`https://api.weixin.qq.com`).
    pub base_url: &'a str,
    /// `quota/get`'s `cgi_path`: `/cgi-bin/token`.
    pub cgi_path: &'static str,
}

/// What a fetch has at hand.
#[derive(Debug)]
pub struct FetchCx<'a> {
    pub upstream: &'a Upstream,
    /// The parent's current value, when the kind has a parent.
    pub parent: Option<&'a SecretString>,
    /// An operator forced this refresh (stable_token sends `force_refresh`).
    pub force: bool,
    /// Sealed secrets: a component's verify ticket, an authorizer's
    /// refresh token (`None` only outside a replica: tests of one fetch).
    pub vault: Option<&'a Vault>,
}

/// A value WeChat issued.
pub struct Fetched {
    pub value: SecretString,
    /// `expires_in` as WeChat said it.
    pub expires_in: Duration,
    /// The meta hash's `source` (`token`, `stable_token`, `getticket`, …).
    pub source: &'static str,
    /// When the request was sent (WeChat issued the value after that) and
    /// how long the reply took; the refresher sets both.
    pub sent: Instant,
    pub took: Duration,
    /// The refresh token that came with the value (an authorizer's), stored
    /// with it in the same fenced commit.
    pub refresh_token: Option<SecretString>,
}

impl Fetched {
    pub fn new(value: SecretString, expires_in: Duration, source: &'static str) -> Self {
        Self {
            value,
            expires_in,
            source,
            sent: Instant::now(),
            took: Duration::ZERO,
            refresh_token: None,
        }
    }

    /// The life left now, counted from when the request was sent: never
    /// more than WeChat's own.
    pub fn remaining(&self) -> Duration {
        self.expires_in.saturating_sub(self.sent.elapsed())
    }
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("value", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .field("source", &self.source)
            .field("took", &self.took)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

/// Fleet-wide limits of a fetch endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The credential's own counter: per quota day or per hour.
    pub window: Window,
    /// Calls per window (an hourly limit holds for any 60 minutes: the
    /// current and the previous clock hour are counted together).
    pub budget: u64,
    /// A second limit shared with other credentials (a WeCom corp's hourly
    /// ticket cap across its agents), taken after the own one.
    pub shared: Option<SharedLimit>,
}

/// A limit several credentials share, under its own hash tag (a WeCom
/// corp's hourly ticket cap across its agents, a component's per-minute
/// `api_authorizer_token` calls across its authorizers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedLimit {
    /// The hash tag of what is shared (`corp.CORPID`, the component id).
    pub tag: String,
    /// The counter's name under that tag (`jsapi`, `authorizer_token`).
    pub name: String,
    pub window: Window,
    pub budget: u64,
    /// What is limited, for the refusal's message ("corp ww1's jsapi
    /// tickets (all agents)").
    pub what: String,
    /// The refusal's code in status (`corp_cap`, `component_rate`).
    pub code: &'static str,
    /// How many units a replica reserves at once (1: one per call). A large
    /// per-minute limit many credentials share is taken in chunks, so most
    /// refreshes cost no Redis command for it; units a replica reserved and
    /// did not use are lost with their period (at most `reserve - 1` per
    /// replica and period).
    pub reserve: u64,
}

/// How a reported value is judged before any refresh (invariant 7).
#[derive(Debug, Clone)]
pub enum CheckBy {
    /// Shown to WeChat with a cheap call that needs a token (`url`);
    /// `rejects` says which errcodes mean the token is bad.
    Call {
        url: String,
        rejects: fn(i64) -> bool,
    },
    /// Fetched again (under the report budget and spacing): WeChat hands out
    /// the same value while it is valid, so a new value proves the old one
    /// dead and is itself the refresh.
    Fetch,
}

/// Who a credential is for, as operators and compatible endpoints see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Describe {
    pub family: Family,
    /// The appid, or the WeCom corpid.
    pub owner: String,
    /// `token` / `stable_token` for app tokens; the kind's API otherwise.
    pub api: &'static str,
    /// The WeCom agent, if any.
    pub agentid: Option<u64>,
}

/// Which config section a credential comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `[[apps]]`: an official account or mini program.
    App,
    /// `[[wecom]]`: a WeCom agent.
    Wecom,
    /// `[[components]]`: a third-party platform's component token.
    Component,
    /// An account that authorized a component (registered at run time).
    Authorizer,
}

/// What is stored, for [`Kind::judge`]: SHA-1s, never values.
#[derive(Debug, Clone, Default)]
pub struct Digest {
    pub stored_sha1: Option<String>,
    pub invalidated_sha1: Option<String>,
}

/// What to do with a fetched value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    Commit,
    /// It is the stored value: nothing to commit.
    Unchanged,
    /// It is the value a reader reported dead: fetch again with force.
    Force,
}

/// SHA-1 (hex) of a value, as the meta hash records it.
pub fn sha1_hex(value: &str) -> String {
    sha1_smol::Sha1::from(value).hexdigest()
}
