//! The LWKT core: message ports (and, as they land, threads, tokens,
//! wait queues and IPI queues). Nothing here uses C calling conventions;
//! `crate::capi` wraps it.

pub mod msgport;
pub mod queue;
