//! The `caps_struct` text codec (spec §7): a C structure described by a
//! label table ⇄ a short ASCII string that names fields by id, so that two
//! programs with different structure layouts can exchange it.
//!
//! `buf` holds the cursors and the tokenizer, `encode` and `decode` the two
//! directions, `schema` the label-table walker and the passwd schema. No
//! C calling conventions here: `crate::capi::caps_struct` wraps it.

pub mod buf;
pub mod decode;
pub mod encode;
pub mod schema;

use core::ffi::c_int;

use crate::abi::caps_struct;
use buf::{Reader, Writer};
use decode::Decoder;

/// Encode the structure at `data` into `out` (truncated if too small; a NUL
/// follows when there is room). Returns the length the whole encoding needs
/// and 0 or `EINVAL` (some field had an unsupported type and was written
/// `D?`).
///
/// # Safety
/// `cs` is a valid description of the structure at `data`.
pub unsafe fn encode(out: &mut [u8], data: *const u8, cs: &caps_struct) -> (usize, c_int) {
    let mut w = Writer::new(out);
    // SAFETY: passed through (contract).
    unsafe { encode::structure(&mut w, data, cs, 0) };
    w.terminate();
    (w.index, w.error)
}

/// Encode into a new vector (tests, benchmarks).
///
/// # Safety
/// As for [`encode()`].
pub unsafe fn encode_to_vec(data: *const u8, cs: &caps_struct) -> Vec<u8> {
    let mut v = vec![0u8; 256];
    loop {
        // SAFETY: passed through (contract).
        let (n, _) = unsafe { encode(&mut v, data, cs) };
        if n <= v.len() {
            v.truncate(n);
            return v;
        }
        v.resize(n, 0);
    }
}

/// Find `S<name>{…}` for `cs` in `input` and decode it into `data`.
/// Returns the offset reached (just past the closing `}` on success, the
/// offending byte on `EINVAL`) and the error: 0, `EINVAL` for bad input
/// (every string allocated by this call has then been freed and its field
/// set to NULL), or `ENOENT` if the structure is not in the input.
///
/// # Safety
/// `cs` is a valid description of the structure at `data`; pointer fields
/// of `data` that the input fills are overwritten without being freed.
pub unsafe fn decode(input: &[u8], data: *mut u8, cs: &caps_struct) -> (usize, c_int) {
    let mut d = Decoder::new(Reader::new(input));
    // SAFETY: passed through (contract).
    let found = unsafe { d.find_structure(data, cs) };
    let r = d.finish();
    let error = if r.error != 0 {
        r.error
    } else if !found {
        libc::ENOENT
    } else {
        0
    };
    (r.index, error)
}

#[cfg(test)]
mod tests;
