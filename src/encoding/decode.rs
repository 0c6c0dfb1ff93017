//! The decoder: text → C structure in memory.
//!
//! Never reads outside the input slice, never panics. Strings for
//! `CAPS_OP_STRPTR_T` fields are allocated with `malloc`; the
//! [`Decoder`] remembers which fields it filled so that a field given twice
//! does not leak its first string, and so that on error every string it
//! allocated is freed again and its field set back to NULL.

use core::ffi::{c_char, c_int, c_void};
use core::ops::Range;

use super::buf::Reader;
use super::encode::MAX_DEPTH;
use super::schema::{self, count, stride};
use crate::abi::{
    CAPS_OP_INT_T, CAPS_OP_OPAQUE_T, CAPS_OP_STRBUF_T, CAPS_OP_STRPTR_T, CAPS_OP_UINT_T,
    caps_label, caps_struct,
};

/// Why a data token could not be stored: the byte offset (inside the token)
/// of the offending character.
pub type BadAt = usize;

fn hexval(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parse `[-]hex`, at least one digit. Returns (negative, magnitude).
fn parse_int(tok: &[u8]) -> Result<(bool, u64), BadAt> {
    let (neg, digits, skip) = match tok.first() {
        Some(b'-') => (true, &tok[1..], 1),
        _ => (false, tok, 0),
    };
    if digits.is_empty() {
        return Err(tok.len());
    }
    let mut v: u64 = 0;
    for (i, &c) in digits.iter().enumerate() {
        let d = hexval(c).ok_or(skip + i)?;
        if v >> 60 != 0 {
            return Err(skip + i); // more than 64 bits
        }
        v = (v << 4) | u64::from(d);
    }
    Ok((neg, v))
}

/// Parse a field id (unsigned hex, at most 32 bits).
pub fn parse_fid(tok: &[u8]) -> Result<u32, BadAt> {
    match parse_int(tok)? {
        (false, v) => u32::try_from(v).map_err(|_| tok.len() - 1),
        (true, _) => Err(0),
    }
}

/// Decode the inside of a quoted token (`"…"`, quotes included in `tok`)
/// into `out`, stopping once `out` holds `limit` bytes (the rest is still
/// checked). `%hh` escapes accept either case.
fn unquote(tok: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), BadAt> {
    if tok.len() < 2 || tok[0] != b'"' || tok[tok.len() - 1] != b'"' {
        return Err(0);
    }
    let body = &tok[1..tok.len() - 1];
    let mut i = 0;
    while i < body.len() {
        let c = if body[i] == b'%' {
            let hi = body.get(i + 1).copied().and_then(hexval).ok_or(1 + i)?;
            let lo = body.get(i + 2).copied().and_then(hexval).ok_or(1 + i)?;
            i += 3;
            (hi << 4) | lo
        } else {
            i += 1;
            body[i - 1]
        };
        if out.len() < limit {
            out.push(c);
        }
    }
    Ok(())
}

/// Store an integer token into a `size`-byte field. The value must fit the
/// field as a signed or as an unsigned number.
///
/// # Safety
/// `ptr` is valid for writes of `size` bytes.
unsafe fn store_int(ptr: *mut u8, size: c_int, tok: &[u8]) -> Result<(), BadAt> {
    if tok.first() == Some(&b'"') {
        return Err(0);
    }
    let (neg, mag) = parse_int(tok)?;
    let bits = match size {
        1 | 2 | 4 | 8 => size as u32 * 8,
        _ => return Err(0),
    };
    let fits = if neg {
        // magnitude <= 2^(bits-1)
        mag <= 1u64 << (bits - 1)
    } else {
        bits == 64 || mag >> bits == 0
    };
    if !fits {
        return Err(tok.len().saturating_sub(1));
    }
    let v = if neg { mag.wrapping_neg() } else { mag };
    // SAFETY: `ptr` is valid for `size` bytes (contract); unaligned writes.
    unsafe {
        match size {
            1 => ptr.write(v as u8),
            2 => ptr.cast::<u16>().write_unaligned(v as u16),
            4 => ptr.cast::<u32>().write_unaligned(v as u32),
            _ => ptr.cast::<u64>().write_unaligned(v),
        }
    }
    Ok(())
}

/// Store one data token into a scalar field of type `ty`/`size`.
///
/// For `CAPS_OP_STRPTR_T` a new `malloc`ed string (NULL for an empty
/// token) is written into the field; its previous value is not looked at:
/// the caller decides whether it must be freed. Nothing is written on
/// error.
///
/// # Safety
/// `ptr` points to a field of that type and size.
pub unsafe fn store(ptr: *mut u8, ty: c_int, size: c_int, tok: &[u8]) -> Result<(), BadAt> {
    let usize_size = size.max(0) as usize;
    match ty {
        // SAFETY: the field is an integer of `size` bytes (contract).
        CAPS_OP_INT_T | CAPS_OP_UINT_T => unsafe { store_int(ptr, size, tok) },
        CAPS_OP_STRPTR_T => {
            let s: *mut c_char = if tok.is_empty() {
                core::ptr::null_mut()
            } else {
                let limit = if usize_size == 0 {
                    usize::MAX
                } else {
                    usize_size
                };
                let mut bytes = Vec::new();
                unquote(tok, limit, &mut bytes)?;
                // SAFETY: plain allocation; checked for NULL below.
                let p = unsafe { libc::malloc(bytes.len() + 1) }.cast::<u8>();
                if p.is_null() {
                    return Err(0);
                }
                // SAFETY: `p` has room for `len + 1` bytes.
                unsafe {
                    p.copy_from_nonoverlapping(bytes.as_ptr(), bytes.len());
                    p.add(bytes.len()).write(0);
                }
                p.cast()
            };
            // SAFETY: the field holds a `char *`.
            unsafe { ptr.cast::<*mut c_char>().write_unaligned(s) };
            Ok(())
        }
        CAPS_OP_STRBUF_T => {
            let mut bytes = Vec::new();
            unquote(tok, usize_size.saturating_sub(1), &mut bytes)?;
            if usize_size > 0 {
                // SAFETY: `bytes.len() < size`, so text and NUL fit the field.
                unsafe {
                    ptr.copy_from_nonoverlapping(bytes.as_ptr(), bytes.len());
                    ptr.add(bytes.len()).write(0);
                }
            }
            Ok(())
        }
        CAPS_OP_OPAQUE_T => {
            let mut bytes = Vec::new();
            unquote(tok, usize_size, &mut bytes)?;
            // SAFETY: `bytes.len() <= size`; the rest of the field is zeroed.
            unsafe {
                ptr.copy_from_nonoverlapping(bytes.as_ptr(), bytes.len());
                ptr.add(bytes.len())
                    .write_bytes(0, usize_size - bytes.len());
            }
            Ok(())
        }
        _ => Err(0),
    }
}

/// Decoding state over one input buffer.
pub struct Decoder<'a> {
    pub r: Reader<'a>,
    /// `char *` fields this decoder stored a string into.
    filled: Vec<*mut *mut c_char>,
}

impl<'a> Decoder<'a> {
    pub fn new(r: Reader<'a>) -> Self {
        Decoder {
            r,
            filled: Vec::new(),
        }
    }

    /// Finish: on error free every string this decoder allocated and NULL
    /// its field; return the reader (index and error).
    pub fn finish(mut self) -> Reader<'a> {
        if self.r.error != 0 {
            for slot in self.filled.drain(..) {
                // SAFETY: `slot` is a `char *` field we wrote a malloc'ed
                // string (or NULL) into; nobody else has seen it yet.
                unsafe {
                    libc::free(slot.read_unaligned().cast::<c_void>());
                    slot.write_unaligned(core::ptr::null_mut());
                }
            }
        }
        self.r
    }

    fn tok(&self, range: &Range<usize>) -> &'a [u8] {
        &self.r.buf[range.clone()]
    }

    /// Search for `Sname{…}` with `cs`'s name, skipping everything else,
    /// and decode it into `data`. Returns false (no error set) if the input
    /// ends without it.
    ///
    /// # Safety
    /// `cs` is a valid description and `data` a structure it describes.
    pub unsafe fn find_structure(&mut self, data: *mut u8, cs: &caps_struct) -> bool {
        // SAFETY: valid description (contract).
        let want = unsafe { schema::name(cs) };
        loop {
            let (c, range) = self.r.getclass();
            match c {
                0 => return false,
                b'S' if self.tok(&range) == want => {
                    // SAFETY: passed through (contract).
                    unsafe { self.structure_body(data, cs, 0) };
                    return true;
                }
                b'S' => self.skip_group(),
                b'{' => self.skip_rest(),
                _ => {}
            }
            if self.r.error != 0 {
                return true;
            }
        }
    }

    /// Consume the next token, which must be `{`.
    fn open(&mut self) -> bool {
        let at = self.r.index;
        match self.r.getclass().0 {
            b'{' => true,
            0 if self.r.error != 0 => false,
            _ => {
                self.r.fail(self.first_nonblank(at));
                false
            }
        }
    }

    fn first_nonblank(&self, mut at: usize) -> usize {
        while at < self.r.buf.len() && matches!(self.r.buf[at], b' ' | b'\t' | b'\r' | b'\n') {
            at += 1;
        }
        at
    }

    /// Skip a `{…}` group (nested groups included).
    pub fn skip_group(&mut self) {
        if self.open() {
            self.skip_rest();
        }
    }

    /// Skip to the `}` matching an already consumed `{`.
    fn skip_rest(&mut self) {
        let mut depth = 1usize;
        while depth > 0 {
            match self.r.getclass().0 {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                0 => {
                    let at = self.r.index;
                    self.r.fail(at); // unterminated group
                    return;
                }
                _ => {}
            }
        }
    }

    /// `{ field, … }` after `Sname`, into the structure at `data`.
    ///
    /// # Safety
    /// As for [`Decoder::find_structure`].
    pub unsafe fn structure_body(&mut self, data: *mut u8, cs: &caps_struct, depth: u32) {
        if depth >= MAX_DEPTH {
            let at = self.r.index;
            self.r.fail(at);
            return;
        }
        if !self.open() {
            return;
        }
        let mut cur: Option<&caps_label> = None;
        while self.r.error == 0 {
            let (c, range) = self.r.getclass();
            match c {
                0 => {
                    let at = self.r.index;
                    self.r.fail(at); // missing '}'
                }
                b'}' => return,
                b',' => cur = None,
                b'F' => match parse_fid(self.tok(&range)) {
                    // SAFETY: valid description (contract).
                    Ok(fid) => cur = unsafe { schema::labels(cs) }.find(|l| l.fid == fid),
                    Err(off) => self.r.fail(range.start + off),
                },
                b'D' => {
                    if let Some(l) = cur.filter(|l| l.csinfo.is_null()) {
                        // SAFETY: `l` is a label of `cs`, so its field lies
                        // inside the structure at `data`.
                        unsafe { self.data(data.add(l.offset as usize), l, range) };
                    }
                }
                b'S' => match cur.filter(|l| !l.csinfo.is_null()) {
                    // SAFETY: a label's non-NULL `csinfo` is valid.
                    Some(l) if self.tok(&range) == unsafe { schema::name(&*l.csinfo) } => {
                        // SAFETY: the embedded structure lies at `offset`
                        // and `csinfo` describes it.
                        unsafe {
                            self.structure_body(data.add(l.offset as usize), &*l.csinfo, depth + 1)
                        }
                    }
                    _ => self.skip_group(),
                },
                b'A' => match parse_fid(self.tok(&range)) {
                    Ok(n) => match cur {
                        Some(l) => {
                            // SAFETY: the array lies at `offset` (label of `cs`).
                            unsafe { self.array(data.add(l.offset as usize), n as usize, l, depth) }
                        }
                        None => self.skip_group(),
                    },
                    Err(off) => self.r.fail(range.start + off),
                },
                b'{' => self.skip_rest(),
                _ => {} // unknown class: ignored
            }
        }
    }

    /// `{elem[,] elem[,] …}` after `Acount`: up to `min(count, nary)`
    /// elements are stored, further ones are checked and dropped. A `,`
    /// after each element (what the original decoder expects) and no
    /// separator (what the original encoder wrote) are both accepted.
    ///
    /// # Safety
    /// `ptr` points to the first element of the array `l` describes (a
    /// label with `nary <= 1` is an array of one).
    pub unsafe fn array(&mut self, ptr: *mut u8, n: usize, l: &caps_label, depth: u32) {
        if !self.open() {
            return;
        }
        let limit = n.min(count(l));
        let step = stride(l);
        let mut i = 0usize;
        while self.r.error == 0 {
            let (c, range) = self.r.getclass();
            match c {
                0 => {
                    let at = self.r.index;
                    self.r.fail(at);
                }
                b'}' => return,
                b',' => {}
                b'D' => {
                    if i < limit && l.csinfo.is_null() {
                        // SAFETY: element `i` < nary lies inside the array.
                        unsafe { self.data(ptr.add(i * step), l, range) };
                    }
                    i += 1;
                }
                b'S' => {
                    // SAFETY: a label's non-NULL `csinfo` is valid.
                    let ok = !l.csinfo.is_null()
                        && self.tok(&range) == unsafe { schema::name(&*l.csinfo) };
                    if i < limit && ok {
                        // SAFETY: element `i` < nary, described by `csinfo`.
                        unsafe { self.structure_body(ptr.add(i * step), &*l.csinfo, depth + 1) };
                    } else {
                        self.skip_group();
                    }
                    i += 1;
                }
                b'{' => self.skip_rest(),
                _ => {}
            }
        }
    }

    /// Store a `D` token into the scalar field at `ptr`.
    ///
    /// # Safety
    /// `ptr` points to a field described by `l` (type and size).
    unsafe fn data(&mut self, ptr: *mut u8, l: &caps_label, range: Range<usize>) {
        let tok = self.tok(&range);
        let strptr = l.type_ == CAPS_OP_STRPTR_T;
        let slot = ptr.cast::<*mut c_char>();
        let again = strptr && self.filled.contains(&slot);
        if again {
            // The same field given twice: free the string we stored the
            // first time.
            // SAFETY: `slot` holds a pointer we malloc'ed (or NULL).
            unsafe {
                libc::free(slot.read_unaligned().cast::<c_void>());
                slot.write_unaligned(core::ptr::null_mut());
            }
        }
        // SAFETY: passed through (contract).
        match unsafe { store(ptr, l.type_, l.size, tok) } {
            Ok(()) => {
                if strptr && !again {
                    self.filled.push(slot);
                }
            }
            Err(off) => self.r.fail(range.start + off),
        }
    }
}

/// Free and NULL every `CAPS_OPF_PTR` field of the structure at `data`,
/// recursing into embedded structures and arrays.
///
/// # Safety
/// `cs` describes `data`; every pointer field is NULL or `malloc`ed.
pub unsafe fn free_structure(data: *mut u8, cs: &caps_struct, depth: u32) {
    if depth >= MAX_DEPTH {
        return;
    }
    // SAFETY: valid description (contract).
    for l in unsafe { schema::labels(cs) } {
        // SAFETY: the field lies at `offset` inside the structure.
        unsafe { free_array(data.add(l.offset as usize), l, depth) };
    }
}

/// Free the pointer fields of the field (or array of `nary` elements)
/// starting at `ptr`.
///
/// # Safety
/// `ptr` points to the first element described by `l`.
pub unsafe fn free_array(ptr: *mut u8, l: &caps_label, depth: u32) {
    let step = stride(l);
    for i in 0..count(l) {
        // SAFETY: element `i` < nary lies in the array.
        let elem = unsafe { ptr.add(i * step) };
        if !l.csinfo.is_null() {
            // SAFETY: `csinfo` describes each element.
            unsafe { free_structure(elem, &*l.csinfo, depth + 1) };
        } else if l.type_ & crate::abi::CAPS_OPF_PTR != 0 {
            let slot = elem.cast::<*mut c_void>();
            // SAFETY: the field is a malloc'ed pointer or NULL (contract).
            unsafe {
                libc::free(slot.read_unaligned());
                slot.write_unaligned(core::ptr::null_mut());
            }
        }
    }
}
