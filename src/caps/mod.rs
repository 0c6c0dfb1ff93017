//! CAPS IPC: named services between processes over Unix-domain sockets,
//! with kernel-verified credentials.

pub mod cred;
pub mod rendezvous;
pub mod wire;
