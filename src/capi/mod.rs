//! The C entry points, one module per C header. Each function checks its
//! arguments as the contract says (NULL → `EINVAL` where the function
//! returns an error, otherwise a one-line diagnostic and `abort()`), then
//! calls the core.

pub mod msgport;
pub mod slaballoc;
