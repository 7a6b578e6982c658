//! The Redis key schema of SPEC §3: the only place key strings are spelled.
//!
//! Every key of one credential is `P:{ID}:<suffix>`; the braces are a Redis
//! Cluster hash tag, so all of a credential's keys share one slot and the
//! Lua scripts run on Cluster too. Prefixes may not contain braces, so the
//! only hash tag in a key is the credential's. This module builds names; it
//! never talks to Redis.

use std::fmt;

use crate::{CredentialId, CredentialRef, QuotaDay, QuotaPeriod, Slot, TicketType};

/// The default key prefix (`[redis] key_prefix`).
pub const DEFAULT_PREFIX: &str = "wxtoken";

/// A validated key prefix and the key builders for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

/// Why a key prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "key prefix {input:?} is invalid: use 1-64 characters of [A-Za-z0-9_.:-] (no braces, which are Redis Cluster hash tags)"
)]
pub struct InvalidPrefix {
    pub input: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        let ok = !prefix.is_empty()
            && prefix.len() <= 64
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
        if ok {
            Ok(Self {
                prefix: prefix.to_owned(),
            })
        } else {
            Err(InvalidPrefix {
                input: prefix.chars().take(80).collect(),
            })
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, id: &CredentialId, suffix: &str) -> String {
        format!("{}:{{{}}}:{}", self.prefix, id, suffix)
    }

    /// `P:{ID}:access_token` — the token; expires at the token's real expiry.
    pub fn access_token(&self, id: &CredentialId) -> String {
        self.key(id, "access_token")
    }

    /// `P:{ID}:meta` — hash of [`crate::meta`] fields; never the token or secret.
    pub fn meta(&self, id: &CredentialId) -> String {
        self.key(id, "meta")
    }

    /// `P:{ID}:lock` — owner of the refresh in progress.
    pub fn lock(&self, id: &CredentialId) -> String {
        self.key(id, "lock")
    }

    /// `P:{ID}:fence` — counter, one increment per lock grant.
    pub fn fence(&self, id: &CredentialId) -> String {
        self.key(id, "fence")
    }

    /// `P:{ID}:epoch` — random id of this Redis dataset's lifetime.
    pub fn epoch(&self, id: &CredentialId) -> String {
        self.key(id, "epoch")
    }

    /// `P:{ID}:quota:YYYYMMDD` — upstream calls the fleet made that quota day.
    pub fn quota(&self, id: &CredentialId, day: QuotaDay) -> String {
        self.key(id, &format!("quota:{}", day.key_suffix()))
    }

    /// `P:{ID}:report` — the generation a reader reported as rejected by
    /// WeChat (written by `invalidate.lua`, expires by itself); readers may
    /// write only this key. A coordinator checks the token before acting.
    pub fn report(&self, id: &CredentialId) -> String {
        self.key(id, "report")
    }

    /// `P:{ID}:quota:verify:YYYYMMDD` — token checks (one cheap WeChat call
    /// each) the fleet made that quota day for reports.
    pub fn verify_quota(&self, id: &CredentialId, day: QuotaDay) -> String {
        self.key(id, &format!("quota:verify:{}", day.key_suffix()))
    }

    /// `P:{ID}:refresh_token` — an authorizer's refresh token (SPEC §9),
    /// sealed with the coordinators' state key; written with the access
    /// token in one fenced commit. Reader ACL users cannot read it.
    pub fn refresh_token(&self, id: &CredentialId) -> String {
        self.key(id, "refresh_token")
    }

    /// `P:{COMPONENT}:verify_ticket` — the latest `component_verify_ticket`
    /// WeChat pushed (sealed). Reader ACL users cannot read it.
    pub fn verify_ticket(&self, component: &CredentialId) -> String {
        self.key(component, "verify_ticket")
    }

    /// `P:{COMPONENT}:authorizers` — the registry: a hash of authorizer
    /// appid → state (`active` | `revoked`), read with HSCAN.
    pub fn authorizers(&self, component: &CredentialId) -> String {
        self.key(component, "authorizers")
    }

    /// `P:{COMPONENT}:push:SHA1` — a push seen (its signature), kept for
    /// the timestamp window so a replayed push is refused fleet-wide.
    pub fn push_seen(&self, component: &CredentialId, signature: &str) -> String {
        self.key(component, &format!("push:{signature}"))
    }

    /// `P:{COMPONENT}:recovery` — the lease of the replica rebuilding a
    /// component's registry after Redis lost its data.
    pub fn recovery(&self, component: &CredentialId) -> String {
        self.key(component, "recovery")
    }

    /// `P:fleet` — a random marker the replicas keep in Redis; when it is gone
    /// or changed, Redis lost the fleet's data without a restart (FLUSHALL,
    /// failover to an empty replica) and every credential is re-read.
    pub fn fleet_marker(&self) -> String {
        format!("{}:fleet", self.prefix)
    }

    /// `P:replicas` — a hash of the replicas that ran lately: per replica id,
    /// the config it runs (generation, digest) and when it was last seen.
    pub fn replicas(&self) -> String {
        format!("{}:replicas", self.prefix)
    }

    /// `P:quota_check` — the lease of the replica that reconciles WeChat's
    /// quota counts with the fleet's (`SET NX PX quota_check_interval`,
    /// never released: one check per interval fleet-wide).
    pub fn quota_check_lease(&self) -> String {
        format!("{}:quota_check", self.prefix)
    }

    /// `P:{ID}:clear_quota:YYYYMM` — `clear_quota` resets the fleet made
    /// for this credential's account in a calendar month (WeChat allows 10).
    pub fn clear_quota_uses(&self, id: &CredentialId, month: &str) -> String {
        self.key(id, &format!("clear_quota:{month}"))
    }

    /// `P:{ID}:events` — the pub/sub channel of this credential.
    pub fn events(&self, id: &CredentialId) -> String {
        self.key(id, "events")
    }

    /// `P:{*}:events` — a PSUBSCRIBE pattern matching every credential's channel.
    pub fn events_pattern(&self) -> String {
        format!("{}:{{*}}:events", self.prefix)
    }

    /// The credential whose events channel `channel` is, if it is one of ours.
    pub fn id_of_events_channel(&self, channel: &str) -> Option<CredentialId> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        let id = rest.strip_suffix("}:events")?;
        CredentialId::parse(id).ok()
    }

    /// Every key of one credential's access token, built once (scripts take
    /// them as KEYS). Part I's names: `P:{ID}:access_token`, `P:{ID}:meta`, ….
    pub fn credential(&self, id: &CredentialId) -> CredentialKeys {
        self.slot(&CredentialRef::token(id.clone()))
    }

    /// Every key of one credential (id + slot). The access token keeps Part
    /// I's names; a ticket lives at `P:{ID}:ticket:jsapi` with `:meta`,
    /// `:lock`, `:fence`, `:epoch`, `:report`, `:quota:…` beside it (SPEC
    /// §8). All share the id's hash tag and its events channel.
    pub fn slot(&self, cref: &CredentialRef) -> SlotKeys {
        let id = &cref.id;
        match cref.slot.name() {
            None => SlotKeys {
                slot: cref.slot,
                value: self.access_token(id),
                meta: self.meta(id),
                lock: self.lock(id),
                fence: self.fence(id),
                epoch: self.epoch(id),
                report: self.report(id),
                events: self.events(id),
                quota_base: self.key(id, "quota:"),
            },
            Some(slot) => {
                let base = self.key(id, slot);
                SlotKeys {
                    slot: cref.slot,
                    meta: format!("{base}:meta"),
                    lock: format!("{base}:lock"),
                    fence: format!("{base}:fence"),
                    epoch: format!("{base}:epoch"),
                    report: format!("{base}:report"),
                    events: self.events(id),
                    quota_base: format!("{base}:quota:"),
                    value: base,
                }
            }
        }
    }

    /// `P:{corp.CORPID}:quota:TYPE:YYYYMMDDHH` — a WeCom corp's hourly ticket
    /// count across all its agents (SPEC §8), under the corp's own hash tag.
    /// `None` when `corp.CORPID` is not a valid id.
    pub fn corp_quota(
        &self,
        corpid: &str,
        ticket: TicketType,
        period: &QuotaPeriod,
    ) -> Option<String> {
        self.shared_quota(&format!("corp.{corpid}"), ticket.as_str(), period)
    }

    /// `P:{TAG}:quota:NAME:PERIOD` — a limit several credentials share
    /// (a corp's ticket cap, a component's per-minute authorizer calls),
    /// under the tag of what they share. `None` when `TAG` is not a valid id.
    pub fn shared_quota(&self, tag: &str, name: &str, period: &QuotaPeriod) -> Option<String> {
        let tag = CredentialId::parse(tag).ok()?;
        Some(self.key(&tag, &format!("quota:{name}:{}", period.key_suffix())))
    }
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({:?})", self.prefix)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// The key names of one credential (id + slot), precomputed so hot paths do
/// not format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotKeys {
    pub slot: Slot,
    /// The value: the access token or the ticket. `GET` + `PTTL` is all a
    /// plain reader needs.
    pub value: String,
    pub meta: String,
    pub lock: String,
    pub fence: String,
    pub epoch: String,
    pub report: String,
    /// The id's events channel, shared by its slots (events say `slot`).
    pub events: String,
    quota_base: String,
}

/// Part I's name for the keys of a credential.
pub type CredentialKeys = SlotKeys;

impl SlotKeys {
    /// `P:{ID}:quota:YYYYMMDD` (a ticket's: `P:{ID}:ticket:jsapi:quota:…`).
    pub fn quota(&self, day: QuotaDay) -> String {
        format!("{}{}", self.quota_base, day.key_suffix())
    }

    /// The counter of one period (a day or an hour).
    pub fn quota_in(&self, period: &QuotaPeriod) -> String {
        format!("{}{}", self.quota_base, period.key_suffix())
    }

    /// `…:quota:verify:YYYYMMDD` — token checks for reports that day.
    pub fn verify_quota(&self, day: QuotaDay) -> String {
        format!("{}verify:{}", self.quota_base, day.key_suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(s: &str) -> CredentialId {
        CredentialId::parse(s).unwrap()
    }

    #[test]
    fn spells_the_spec_keys() {
        let k = Keys::default();
        let i = id("shop");
        assert_eq!(k.access_token(&i), "wxtoken:{shop}:access_token");
        assert_eq!(k.meta(&i), "wxtoken:{shop}:meta");
        assert_eq!(k.lock(&i), "wxtoken:{shop}:lock");
        assert_eq!(k.fence(&i), "wxtoken:{shop}:fence");
        assert_eq!(k.epoch(&i), "wxtoken:{shop}:epoch");
        assert_eq!(k.events(&i), "wxtoken:{shop}:events");
        let day = QuotaDay::from_unix_ms(1_700_000_000_000, Default::default());
        assert_eq!(k.quota(&i, day), "wxtoken:{shop}:quota:20231115");
        assert_eq!(k.credential(&i).quota(day), k.quota(&i, day));
        assert_eq!(k.events_pattern(), "wxtoken:{*}:events");
        assert_eq!(k.report(&i), "wxtoken:{shop}:report");
        let t = k.slot(&CredentialRef::ticket(i.clone(), TicketType::Jsapi));
        assert_eq!(t.value, "wxtoken:{shop}:ticket:jsapi");
        assert_eq!(t.meta, "wxtoken:{shop}:ticket:jsapi:meta");
        assert_eq!(t.lock, "wxtoken:{shop}:ticket:jsapi:lock");
        assert_eq!(t.quota(day), "wxtoken:{shop}:ticket:jsapi:quota:20231115");
        assert_eq!(t.events, "wxtoken:{shop}:events");
        let hour = crate::Window::Hour.at(1_700_000_000_000, Default::default());
        assert_eq!(
            k.corp_quota("ww0123", TicketType::Jsapi, &hour).as_deref(),
            Some("wxtoken:{corp.ww0123}:quota:jsapi:2023111506")
        );
        assert_eq!(
            k.verify_quota(&i, day),
            "wxtoken:{shop}:quota:verify:20231115"
        );
    }

    #[test]
    fn prefix_validation() {
        assert!(Keys::new("prod:wxtoken").is_ok());
        for bad in ["", "a{b", "a}b", "a b", &"p".repeat(65)] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_channel_round_trip_and_foreign_channels() {
        let k = Keys::new("p").unwrap();
        assert_eq!(k.id_of_events_channel("p:{shop}:events"), Some(id("shop")));
        assert_eq!(k.id_of_events_channel("q:{shop}:events"), None);
        assert_eq!(k.id_of_events_channel("p:{sh{op}:events"), None);
        assert_eq!(k.id_of_events_channel("p:{shop}:meta"), None);
    }

    /// The Redis Cluster hash tag of a key: the text between the first `{` and
    /// the first `}` after it, when non-empty (Redis' own rule).
    fn hash_tag(key: &str) -> Option<&str> {
        let open = key.find('{')?;
        let close = key[open + 1..].find('}')? + open + 1;
        (close > open + 1).then(|| &key[open + 1..close])
    }

    proptest! {
        #[test]
        fn every_key_hashes_to_its_own_id(prefix in "[A-Za-z0-9_.:-]{1,20}", raw in "[A-Za-z0-9_.-]{1,64}") {
            let k = Keys::new(&prefix).unwrap();
            let i = id(&raw);
            let day = QuotaDay::from_unix_ms(0, Default::default());
            let c = k.credential(&i);
            let t = k.slot(&CredentialRef::ticket(i.clone(), TicketType::Jsapi));
            for key in [&c.value, &c.meta, &c.lock, &c.fence, &c.epoch, &c.events, &c.report, &c.quota(day),
                        &t.value, &t.meta, &t.lock, &t.fence, &t.epoch, &t.report, &t.quota(day)] {
                prop_assert_eq!(hash_tag(key), Some(raw.as_str()));
                let head = format!("{}:{{", prefix);
                prop_assert!(key.starts_with(&head));
            }
            prop_assert_eq!(k.id_of_events_channel(&c.events), Some(i));
        }

        #[test]
        fn distinct_ids_never_share_a_key(a in "[A-Za-z0-9_.-]{1,16}", b in "[A-Za-z0-9_.-]{1,16}") {
            prop_assume!(a != b);
            let k = Keys::default();
            let (ka, kb) = (k.credential(&id(&a)), k.credential(&id(&b)));
            let all_a = [&ka.value, &ka.meta, &ka.lock, &ka.fence, &ka.epoch, &ka.events];
            let all_b = [&kb.value, &kb.meta, &kb.lock, &kb.fence, &kb.epoch, &kb.events];
            for x in all_a {
                prop_assert!(!all_b.contains(&x));
            }
        }
    }
}
