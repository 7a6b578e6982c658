//! WeCom's rules: corps and their agents ([`CorpBook`]), `gettoken` (one
//! token per (corp, secret), the same while valid, a new one only after
//! expiry or revocation, no overlap rule), and the ticket calls with their
//! hourly caps (per agent and per corp, per ticket type, sliding windows).
//!
//! `expires_in` is always the FULL life, for tokens and tickets alike, even
//! when a still-valid value is handed out again: WeCom's documentation does
//! not promise the remaining life, and a client that counts life from the
//! reply must be caught overestimating (the harsher reading).

use crate::config::{SimCorp, agent_key};
use crate::errcode::WecomError;
use crate::quota::SlidingWindow;
use crate::stats::{AgentTicketStats, CorpStats};
use crate::ticket::{TicketGrant, TicketKind, TicketSlot, TicketUnusable};
use crate::token::{Now, TokenSource, TokenState};

use super::{Grant, World, present};

/// One window per WeCom ticket type.
#[derive(Debug, Clone, Default)]
struct KindWindows {
    jsapi: SlidingWindow,
    agent_config: SlidingWindow,
}

impl KindWindows {
    fn get(&mut self, kind: TicketKind) -> &mut SlidingWindow {
        match kind {
            TicketKind::AgentConfig => &mut self.agent_config,
            _ => &mut self.jsapi,
        }
    }

    fn each(&self) -> [(&'static str, &SlidingWindow); 2] {
        [("jsapi", &self.jsapi), ("agent_config", &self.agent_config)]
    }
}

/// One secret of a corp: its current token, agent ticket and window.
#[derive(Debug)]
struct AgentBook {
    agentid: Option<u64>,
    secret: String,
    /// `Stats.apps` key and token owner: `corpid:agentid`.
    key: String,
    current: Option<String>,
    agent_config: TicketSlot,
    windows: KindWindows,
}

/// One corp: its agents, the corp jsapi ticket and the corp-wide windows.
#[derive(Debug)]
pub(super) struct CorpBook {
    agents: Vec<AgentBook>,
    jsapi: TicketSlot,
    windows: KindWindows,
}

impl CorpBook {
    pub(super) fn new(corp: &SimCorp) -> Self {
        let agents = corp
            .agents
            .iter()
            .map(|a| AgentBook {
                agentid: a.agentid,
                secret: a.secret.clone(),
                key: agent_key(&corp.corpid, a.agentid),
                current: None,
                agent_config: TicketSlot::default(),
                windows: KindWindows::default(),
            })
            .collect();
        Self {
            agents,
            jsapi: TicketSlot::default(),
            windows: KindWindows::default(),
        }
    }

    pub(super) fn reset(&mut self) {
        self.jsapi = TicketSlot::default();
        self.windows = KindWindows::default();
        for agent in &mut self.agents {
            agent.current = None;
            agent.agent_config = TicketSlot::default();
            agent.windows = KindWindows::default();
        }
    }

    /// Empties the windows (an operator clearing the caps); peaks are kept.
    pub(super) fn clear_windows(&mut self) {
        let keep_peak = |w: &mut KindWindows| {
            for kind in [TicketKind::WecomJsapi, TicketKind::AgentConfig] {
                let peak = w.get(kind).max_seen();
                *w.get(kind) = SlidingWindow::with_peak(peak);
            }
        };
        keep_peak(&mut self.windows);
        self.agents
            .iter_mut()
            .for_each(|a| keep_peak(&mut a.windows));
    }
}

/// Splits an agent key back into corpid and agentid text.
pub(crate) fn split_agent_key(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once(':')
}

impl World {
    /// The agent key `corpsecret` belongs to in `corpid`, if any.
    pub(crate) fn agent_for_secret(&self, corpid: &str, secret: &str) -> Option<&str> {
        self.corps
            .get(corpid)?
            .agents
            .iter()
            .find(|a| a.secret == secret)
            .map(|a| a.key.as_str())
    }

    /// True when `corpid` is a configured corp.
    pub(crate) fn knows_corp(&self, corpid: &str) -> bool {
        self.corps.contains_key(corpid)
    }

    /// WeCom `GET /qyapi/cgi-bin/gettoken`.
    pub(crate) fn wecom_token(
        &mut self,
        corpid: Option<&str>,
        corpsecret: Option<&str>,
        now: Now,
    ) -> Result<Grant, WecomError> {
        let corpid = present(corpid).ok_or(WecomError::CorpidMissing)?;
        let corpsecret = present(corpsecret).ok_or(WecomError::CorpsecretMissing)?;
        let corp = self.corps.get(corpid).ok_or(WecomError::InvalidCorpid)?;
        let agent = corp
            .agents
            .iter()
            .find(|a| a.secret == corpsecret)
            .ok_or(WecomError::InvalidSecret)?;
        let (key, current) = (agent.key.clone(), agent.current.clone());
        let full_life = Grant {
            token: String::new(),
            remaining: self.ttl,
            source: TokenSource::Wecom,
        };
        if let Some(current) = current {
            match self.tokens.get_mut(&current) {
                Some(rec) if rec.state(now.at) == TokenState::Valid => {
                    return Ok(Grant {
                        token: current,
                        ..full_life
                    });
                }
                Some(rec) => rec.replaced(now),
                None => {}
            }
        }
        let token = self.mint_token(&key, TokenSource::Wecom, now);
        if let Some(agent) = self.agent_mut(&key) {
            agent.current = Some(token.clone());
        }
        Ok(Grant { token, ..full_life })
    }

    /// A WeCom ticket call by agent `key`, whose token was valid: 45009 when
    /// the agent's or the corp's window for this type is full (a refused
    /// call uses neither); else the current ticket (the corp's for
    /// `WecomJsapi`, the agent's for `AgentConfig`), minted only when there
    /// is none or it expired.
    pub(crate) fn wecom_ticket(
        &mut self,
        key: &str,
        kind: TicketKind,
        now: Now,
    ) -> Result<TicketGrant, WecomError> {
        let rules = self.ticket_rules;
        let (corpid, _) = split_agent_key(key).ok_or(WecomError::InvalidAccessToken)?;
        let corp = self
            .corps
            .get_mut(corpid)
            .ok_or(WecomError::InvalidAccessToken)?;
        let agent = corp
            .agents
            .iter_mut()
            .find(|a| a.key == key)
            .ok_or(WecomError::InvalidAccessToken)?;
        let agent_room = agent
            .windows
            .get(kind)
            .has_room(now.at, rules.window, rules.agent_hourly);
        let corp_room = corp
            .windows
            .get(kind)
            .has_room(now.at, rules.window, rules.corp_hourly);
        if !(agent_room && corp_room) {
            return Err(WecomError::FreqOutOfLimit);
        }
        agent.windows.get(kind).admit(now.at);
        corp.windows.get(kind).admit(now.at);
        let slot = match kind {
            TicketKind::AgentConfig => &mut agent.agent_config,
            _ => &mut corp.jsapi,
        };
        let grant = slot.get_or_mint(kind, now, rules.ttl);
        if let Some(minted) = &grant.minted {
            self.record_ticket(key, minted);
        }
        Ok(grant)
    }

    pub(super) fn wecom_signing_ticket(
        &self,
        kind: TicketKind,
        corpid: &str,
        agentid: Option<u64>,
        now: Now,
    ) -> Option<(String, Result<&str, TicketUnusable>)> {
        let corp = self.corps.get(corpid)?;
        let agent = corp.agents.iter().find(|a| a.agentid == agentid)?;
        let slot = match kind {
            TicketKind::AgentConfig => &agent.agent_config,
            _ => &corp.jsapi,
        };
        Some((agent.key.clone(), slot.usable(now)))
    }

    /// Writes the windows of `corpid` as they stand at `now` into `stats`.
    pub(crate) fn fill_corp_stats(&self, corpid: &str, stats: &mut CorpStats, now: Now) {
        let Some(corp) = self.corps.get(corpid) else {
            return;
        };
        let rules = self.ticket_rules;
        stats.agent_hourly_cap = rules.agent_hourly.into();
        stats.corp_hourly_cap = rules.corp_hourly.into();
        for (ty, w) in corp.windows.each() {
            let last_hour = w.count(now.at, rules.window);
            stats
                .ticket_calls_last_hour
                .insert(ty.to_owned(), last_hour);
            stats
                .max_ticket_calls_per_hour
                .insert(ty.to_owned(), w.max_seen());
        }
        for agent in &corp.agents {
            let id = agent.agentid.map(|a| a.to_string()).unwrap_or_default();
            let entry: &mut AgentTicketStats = stats.agents.entry(id).or_default();
            for (ty, w) in agent.windows.each() {
                let last_hour = w.count(now.at, rules.window);
                entry
                    .ticket_calls_last_hour
                    .insert(ty.to_owned(), last_hour);
                entry
                    .max_ticket_calls_per_hour
                    .insert(ty.to_owned(), w.max_seen());
            }
        }
    }

    fn agent_mut(&mut self, key: &str) -> Option<&mut AgentBook> {
        let (corpid, _) = split_agent_key(key)?;
        self.corps
            .get_mut(corpid)?
            .agents
            .iter_mut()
            .find(|a| a.key == key)
    }
}
