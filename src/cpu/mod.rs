//! Per-cpu machinery: the event loop (and, with the thread subsystem,
//! globaldata, idle loop and virtual cpus).

pub mod evloop;
