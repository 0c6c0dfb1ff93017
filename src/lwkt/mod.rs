//! The LWKT core: message ports, threads and their scheduler, the context
//! switch, stacks, wait queues and tokens. Nothing here uses C calling
//! conventions except callbacks stored in C structures; `crate::capi`
//! wraps it.

pub mod arch;
pub mod msgport;
pub mod overflow;
pub mod queue;
pub mod san;
pub mod stack;
pub mod tdqueue;
pub mod thread;
pub mod wait;
