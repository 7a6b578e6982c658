//! wxtoken-msgcrypt's integration tests, one binary: published vectors,
//! refusals, properties, the component events, and wechatpy as an
//! independent implementation of the same scheme.

mod events;
mod props;
mod python;
mod refusals;
mod vectors;
mod wechatpy;
