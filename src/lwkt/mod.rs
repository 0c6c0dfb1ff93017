//! The LWKT core: message ports, threads and their scheduler, the idle
//! loop, the start of cpus, the context switch, stacks, wait queues and
//! tokens. Above `cpu` (which it calls, never the reverse). Nothing here
//! uses C calling conventions except callbacks stored in C structures;
//! `crate::capi` wraps it.

pub mod arch;
pub mod boot;
pub mod fork;
pub mod idle;
pub mod mplock;
pub mod msgport;
pub mod overflow;
pub mod queue;
pub mod san;
pub mod sched;
pub mod stack;
pub mod tailq;
pub mod tdqueue;
#[cfg(test)]
mod testcpu;
pub mod thread;
pub mod wait;

pub use boot::{adopt, mycpu};
