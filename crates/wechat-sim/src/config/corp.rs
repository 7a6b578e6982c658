//! WeCom (企业微信) corps as the simulator knows them: a corp ([`SimCorp`]) is
//! a corpid with agents ([`SimAgent`]), each agent one secret with its own
//! token. Plus the builders that add them to a [`SimConfig`] and the checks
//! that keep their names apart from the apps'.
//!
//! Like the rest of `config`, this only describes; the WeCom rules live in
//! `state/wecom.rs`.

use std::fmt;
use std::time::Duration;

use super::{ConfigError, SimConfig};

/// One WeCom corp and the secrets (agents) it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCorp {
    /// The corpid (`ww…`), the `corpid` of `gettoken`.
    pub corpid: String,
    /// Its agents; each secret has its own token and ticket budget.
    pub agents: Vec<SimAgent>,
}

/// One secret of a corp: an application (with an agentid) or a secret
/// without one (the contacts secret, for instance).
#[derive(Clone, PartialEq, Eq)]
pub struct SimAgent {
    /// The agentid, when the secret belongs to an application. Its stats
    /// key is `"{corpid}:{agentid}"` (`"{corpid}:"` without one).
    pub agentid: Option<u64>,
    /// The `corpsecret` of `gettoken`.
    pub secret: String,
}

impl fmt::Debug for SimAgent {
    // Secrets never reach Debug output, even a simulator's (SPEC §4.3).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimAgent")
            .field("agentid", &self.agentid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The key a WeCom agent has in `Stats.apps`: `"{corpid}:{agentid}"`, with
/// an empty agentid when the secret has none.
pub(crate) fn agent_key(corpid: &str, agentid: Option<u64>) -> String {
    match agentid {
        Some(id) => format!("{corpid}:{id}"),
        None => format!("{corpid}:"),
    }
}

impl SimConfig {
    /// Adds one secret (agent) to corp `corpid`, adding the corp if new.
    /// `agentid` is `None` for a secret without one (e.g. the contacts
    /// secret).
    pub fn corp_agent(
        mut self,
        corpid: impl Into<String>,
        agentid: Option<u64>,
        secret: impl Into<String>,
    ) -> Self {
        let corpid = corpid.into();
        let agent = SimAgent {
            agentid,
            secret: secret.into(),
        };
        match self.corps.iter_mut().find(|c| c.corpid == corpid) {
            Some(corp) => corp.agents.push(agent),
            None => self.corps.push(SimCorp {
                corpid,
                agents: vec![agent],
            }),
        }
        self
    }

    /// Sets the WeCom ticket cap per agent, per type, per window.
    pub fn wecom_ticket_agent_hourly(mut self, calls: u32) -> Self {
        self.wecom_ticket_agent_hourly = calls;
        self
    }

    /// Sets the WeCom ticket cap per corp (all agents), per type, per window.
    pub fn wecom_ticket_corp_hourly(mut self, calls: u32) -> Self {
        self.wecom_ticket_corp_hourly = calls;
        self
    }

    /// Sets the sliding window of the WeCom ticket caps (default 1 hour).
    pub fn wecom_ticket_window(mut self, window: Duration) -> Self {
        self.wecom_ticket_window = window;
        self
    }

    /// Corps: non-empty names, no duplicate (corpid, agentid) or (corpid,
    /// secret), no name shared with an app.
    pub(super) fn validate_corps(&self) -> Result<(), ConfigError> {
        let is_app = |name: &str| self.apps.iter().any(|a| a.appid == name);
        for (i, corp) in self.corps.iter().enumerate() {
            let id = &corp.corpid;
            if id.is_empty() || id.contains(':') || corp.agents.iter().any(|a| a.secret.is_empty())
            {
                return Err(ConfigError::EmptyCorp(i));
            }
            if self.corps[..i].iter().any(|c| c.corpid == *id) {
                return Err(ConfigError::DuplicateCorp(id.clone()));
            }
            if is_app(id) {
                return Err(ConfigError::CorpCollidesWithApp(id.clone()));
            }
            for (j, agent) in corp.agents.iter().enumerate() {
                let before = &corp.agents[..j];
                if before.iter().any(|a| a.agentid == agent.agentid) {
                    return Err(ConfigError::DuplicateAgent {
                        corpid: id.clone(),
                        agentid: agent.agentid,
                    });
                }
                if before.iter().any(|a| a.secret == agent.secret) {
                    return Err(ConfigError::DuplicateCorpSecret(id.clone()));
                }
                if is_app(&agent_key(id, agent.agentid)) {
                    return Err(ConfigError::CorpCollidesWithApp(id.clone()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corp_agent_groups_agents_under_one_corp() {
        let c = SimConfig::new()
            .corp_agent("ww1", Some(1000002), "s1")
            .corp_agent("ww1", None, "contacts")
            .corp_agent("ww2", Some(1), "s2");
        assert_eq!(c.corps.len(), 2);
        assert_eq!(c.corps[0].agents.len(), 2);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(agent_key("ww1", Some(1000002)), "ww1:1000002");
        assert_eq!(agent_key("ww1", None), "ww1:");
    }

    #[test]
    fn validate_refuses_duplicates_and_collisions() {
        let c = SimConfig::new()
            .corp_agent("ww1", Some(1), "a")
            .corp_agent("ww1", Some(1), "b");
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicateAgent {
                agentid: Some(1),
                ..
            })
        ));
        let c = SimConfig::new()
            .corp_agent("ww1", Some(1), "a")
            .corp_agent("ww1", Some(2), "a");
        assert_eq!(
            c.validate(),
            Err(ConfigError::DuplicateCorpSecret("ww1".into()))
        );
        let c = SimConfig::new()
            .app("ww1", "x")
            .corp_agent("ww1", None, "a");
        assert_eq!(
            c.validate(),
            Err(ConfigError::CorpCollidesWithApp("ww1".into()))
        );
        let c = SimConfig::new().corp_agent("ww1", None, "");
        assert_eq!(c.validate(), Err(ConfigError::EmptyCorp(0)));
        let c = SimConfig::new().corp_agent("w:w", None, "a");
        assert_eq!(c.validate(), Err(ConfigError::EmptyCorp(0)));
        let mut c = SimConfig::new().corp_agent("ww1", None, "a");
        c.corps.push(c.corps[0].clone());
        assert_eq!(c.validate(), Err(ConfigError::DuplicateCorp("ww1".into())));
    }

    #[test]
    fn debug_redacts_agent_secret() {
        let c = SimConfig::new().corp_agent("ww1", Some(7), "topsecret");
        let dbg = format!("{c:?}");
        assert!(dbg.contains("ww1") && dbg.contains('7'));
        assert!(!dbg.contains("topsecret"));
    }
}
