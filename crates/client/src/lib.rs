//! `wxtoken-client`: what services embed to read the WeChat access token that
//! wxtoken coordinators keep fresh in Redis.
//!
//! It reads Redis (the keys of SPEC §3), listens to the credential event
//! channels, and reports rejected tokens by value. It never calls WeChat and
//! never sees an appsecret. The coordinator reuses its event subscription, so
//! there is one implementation of "follow the fleet's events".

pub mod events;
pub mod keyspace;
