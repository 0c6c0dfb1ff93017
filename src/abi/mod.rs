//! `#[repr(C)]` types, typedefs and constants, exactly as the C headers
//! declare them. One file per C header. No functions live here.
//!
//! These files are also read by cbindgen and by the ctest2-based ABI test,
//! so they keep to plain syntax (no `crate::` paths in types, no nested
//! `use` groups, no `let-else`).
#![allow(non_camel_case_types, non_snake_case)]

pub mod caps;
pub mod libcaps_caps_struct;
pub mod libcaps_globaldata;
pub mod msgport;
pub mod opaque;
pub mod slaballoc;
pub mod sys_thread;

pub use caps::*;
pub use libcaps_caps_struct::*;
pub use libcaps_globaldata::*;
pub use msgport::*;
pub use opaque::*;
pub use slaballoc::*;
pub use sys_thread::*;
