//! The C entry points, one module per C header. Each function checks its
//! arguments as the contract says (NULL → `EINVAL` where the function
//! returns an error, otherwise a one-line diagnostic and `abort()`), then
//! calls the core.

// The C entry points: their contracts are in the C headers and man pages.
#![allow(clippy::missing_safety_doc)]

pub mod caps;
pub mod caps_struct;
pub mod globaldata;
pub mod msgport;
pub mod shim;
pub mod slaballoc;
pub mod thread;
