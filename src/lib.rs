//! libcaps for Linux: a C-ABI drop-in replacement for DragonFly BSD's
//! `libcaps` (LWKT threads, LWKT message ports, the slab allocator and CAPS
//! IPC).
//!
//! Layers: `abi` holds the `#[repr(C)]` types and constants exactly as the
//! C headers declare them; `capi` holds every exported C function, one
//! module per header, and only validates arguments before calling the
//! core (`lwkt`, ...). Data flows one way: `capi` → core → `abi`.

pub mod abi;
mod atfork;
pub mod capi;
pub mod caps;
pub mod cpu;
pub mod diag;
pub mod encoding;
pub mod lwkt;
pub mod san;
pub mod slab;
