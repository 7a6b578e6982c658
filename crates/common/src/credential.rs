//! What a credential is, by name: an id ([`CredentialId`]) and the value of
//! it a fleet shares ([`Slot`]): the access token, or one of the tickets
//! derived from it. `shop` and `shop/ticket:jsapi` are two credentials with
//! their own lock, fence, quota and life, under the same Redis hash tag.
//!
//! This module names things; which kind fetches what, and how, is the
//! coordinator's `kind` module.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::CredentialId;

/// A JS-SDK ticket type (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TicketType {
    /// `jsapi`: WeChat's `jsapi_ticket` (wx.config), or WeCom's corp ticket.
    Jsapi,
    /// `wx_card`: WeChat's card ticket.
    WxCard,
    /// `agent_config`: a WeCom agent's ticket (wx.agentConfig).
    AgentConfig,
}

impl TicketType {
    pub const ALL: [TicketType; 3] = [Self::Jsapi, Self::WxCard, Self::AgentConfig];

    /// The wire name (`type=` in WeChat's APIs, the Redis key segment).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsapi => "jsapi",
            Self::WxCard => "wx_card",
            Self::AgentConfig => "agent_config",
        }
    }
}

impl fmt::Display for TicketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a string is not a ticket type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ticket type {0:?}; known: jsapi, wx_card, agent_config")]
pub struct UnknownTicketType(pub String);

impl FromStr for TicketType {
    type Err = UnknownTicketType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTicketType(s.chars().take(40).collect()))
    }
}

impl Serialize for TicketType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TicketType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Which value of a credential id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Slot {
    /// The access token (Part I's keys, unchanged).
    #[default]
    AccessToken,
    /// A ticket fetched with the access token of the same id.
    Ticket(TicketType),
}

impl Slot {
    /// Every slot, in a fixed order (see [`Slot::index`]).
    pub const ALL: [Slot; 4] = [
        Self::AccessToken,
        Self::Ticket(TicketType::Jsapi),
        Self::Ticket(TicketType::WxCard),
        Self::Ticket(TicketType::AgentConfig),
    ];

    /// A dense index into [`Slot::ALL`], for per-slot arrays.
    pub fn index(self) -> usize {
        match self {
            Self::AccessToken => 0,
            Self::Ticket(TicketType::Jsapi) => 1,
            Self::Ticket(TicketType::WxCard) => 2,
            Self::Ticket(TicketType::AgentConfig) => 3,
        }
    }

    /// `None` for the access token, `ticket:jsapi` … otherwise: the
    /// `slot` field of events and the Redis key segment.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::AccessToken => None,
            Self::Ticket(TicketType::Jsapi) => Some("ticket:jsapi"),
            Self::Ticket(TicketType::WxCard) => Some("ticket:wx_card"),
            Self::Ticket(TicketType::AgentConfig) => Some("ticket:agent_config"),
        }
    }

    /// The slot an event's `slot` field names (absent: the access token).
    pub fn parse(name: Option<&str>) -> Option<Self> {
        match name {
            None => Some(Self::AccessToken),
            Some(n) => Self::ALL.into_iter().find(|s| s.name() == Some(n)),
        }
    }

    pub fn ticket(self) -> Option<TicketType> {
        match self {
            Self::Ticket(t) => Some(t),
            Self::AccessToken => None,
        }
    }
}

/// One credential: an id and a slot. Displays as `shop` or
/// `shop/ticket:jsapi`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialRef {
    pub id: CredentialId,
    pub slot: Slot,
}

impl CredentialRef {
    /// The access token of `id`.
    pub fn token(id: CredentialId) -> Self {
        Self {
            id,
            slot: Slot::AccessToken,
        }
    }

    /// A ticket of `id`.
    pub fn ticket(id: CredentialId, ticket: TicketType) -> Self {
        Self {
            id,
            slot: Slot::Ticket(ticket),
        }
    }

    /// The access token of the same id (a ticket's parent).
    pub fn token_of_same_id(&self) -> Self {
        Self::token(self.id.clone())
    }
}

impl fmt::Display for CredentialRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot.name() {
            None => write!(f, "{}", self.id),
            Some(slot) => write!(f, "{}/{slot}", self.id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_name_and_index_round_trip() {
        for (i, slot) in Slot::ALL.into_iter().enumerate() {
            assert_eq!(slot.index(), i);
            assert_eq!(Slot::parse(slot.name()), Some(slot));
        }
        assert_eq!(Slot::parse(Some("ticket:nope")), None);
        assert_eq!("wx_card".parse::<TicketType>(), Ok(TicketType::WxCard));
        assert!("card".parse::<TicketType>().is_err());
        let id = CredentialId::parse("shop").unwrap();
        assert_eq!(CredentialRef::token(id.clone()).to_string(), "shop");
        assert_eq!(
            CredentialRef::ticket(id, TicketType::Jsapi).to_string(),
            "shop/ticket:jsapi"
        );
    }
}
