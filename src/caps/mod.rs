//! CAPS IPC: named services between processes over Unix-domain sockets,
//! with kernel-verified credentials.

mod conn;
pub mod cred;
pub mod errno;
mod idhash;
pub mod port;
pub mod probe;
pub mod rendezvous;
pub mod shm;
pub mod sys;
pub mod wire;
