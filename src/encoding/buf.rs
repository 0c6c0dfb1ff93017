//! The two cursors of the codec: [`Writer`] (encoding: stores while there
//! is room, always counts) and [`Reader`] (decoding: the tokenizer).

use core::ffi::c_int;
use core::marker::PhantomData;
use core::ops::Range;

/// Output cursor over `cap` bytes at `base`. `index` keeps counting past
/// `cap`, so after encoding it is the length the whole encoding needs.
pub struct Writer<'a> {
    base: *mut u8,
    cap: usize,
    pub index: usize,
    pub error: c_int,
    _buf: PhantomData<&'a mut [u8]>,
}

impl<'a> Writer<'a> {
    /// A writer over a Rust buffer, starting at index 0.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            base: buf.as_mut_ptr(),
            cap: buf.len(),
            index: 0,
            error: 0,
            _buf: PhantomData,
        }
    }

    /// A writer over C memory.
    ///
    /// # Safety
    /// `base` must be valid for writes of `cap` bytes for `'a` (or `cap`
    /// must be 0), and nothing else may access those bytes meanwhile.
    pub unsafe fn from_raw(base: *mut u8, cap: usize, index: usize) -> Self {
        Writer {
            base,
            cap,
            index,
            error: 0,
            _buf: PhantomData,
        }
    }

    /// Store `c` if there is room; count it either way.
    #[inline]
    pub fn putc(&mut self, c: u8) {
        if self.index < self.cap {
            // SAFETY: index < cap and `base` is valid for `cap` bytes
            // (constructor contract).
            unsafe { self.base.add(self.index).write(c) };
        }
        self.index = self.index.saturating_add(1);
    }

    /// Store every byte of `s` that fits; count all of them.
    #[inline]
    pub fn put(&mut self, s: &[u8]) {
        for &c in s {
            self.putc(c);
        }
    }

    /// Lower-case hexadecimal without leading zeros (`"%x"`); `0` for zero.
    pub fn put_hex(&mut self, v: u64) {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut v = v;
        loop {
            digits[n] = HEX[(v & 15) as usize];
            n += 1;
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        for i in (0..n).rev() {
            self.putc(digits[i]);
        }
    }

    /// Store a NUL after the output if there is room, without counting it.
    pub fn terminate(&mut self) {
        if self.index < self.cap {
            // SAFETY: as in `putc`.
            unsafe { self.base.add(self.index).write(0) };
        }
    }
}

pub const HEX: &[u8; 16] = b"0123456789abcdef";

/// Input cursor and tokenizer over a byte slice.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub index: usize,
    pub error: c_int,
}

/// Characters allowed inside a quoted run (between the quotes).
pub fn is_quoted_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'+' | b'%' | b'-')
}

/// Characters allowed in an unquoted run. The original allowed
/// `[a-z0-9._]`; `-` (negative integers) and `?` (the encoder's mark for an
/// unsupported field) are added so that everything the encoder writes can
/// be read back.
pub fn is_unquoted_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-' | b'?')
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            index: 0,
            error: 0,
        }
    }

    /// `caps_msgbuf_getc`: the byte at `index` (0 past the end); always
    /// advances.
    pub fn getc(&mut self) -> u8 {
        let c = self.buf.get(self.index).copied().unwrap_or(0);
        self.index = self.index.saturating_add(1);
        c
    }

    /// Record `eno` (if non-zero) and move back `undo` bytes (not below 0).
    pub fn set_error(&mut self, eno: c_int, undo: usize) {
        if eno != 0 {
            self.error = eno;
        }
        self.index = self.index.saturating_sub(undo);
    }

    /// Fail with `EINVAL` at byte `at` (the offending character). Keeps the
    /// first error.
    pub fn fail(&mut self, at: usize) {
        if self.error == 0 {
            self.error = libc::EINVAL;
            self.index = at.min(self.buf.len());
        }
    }

    /// Next token. Returns `,`, `{` or `}` as themselves, an upper-case
    /// class letter with the range of its data (quotes included), or 0 at
    /// the end of the buffer or on a syntax error (then `error` is
    /// `EINVAL` and `index` points at the offending byte).
    pub fn getclass(&mut self) -> (u8, Range<usize>) {
        let empty = self.index..self.index;
        if self.error != 0 {
            return (0, empty);
        }
        let buf = self.buf;
        let mut i = self.index;
        while i < buf.len() && matches!(buf[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        if i >= buf.len() {
            self.index = i;
            return (0, i..i);
        }
        let c = buf[i];
        match c {
            b',' | b'{' | b'}' => {
                self.index = i + 1;
                (c, i + 1..i + 1)
            }
            b'A'..=b'Z' => {
                let start = i + 1;
                let mut j = start;
                if buf.get(j) == Some(&b'"') {
                    j += 1;
                    loop {
                        match buf.get(j) {
                            Some(b'"') => {
                                j += 1;
                                break;
                            }
                            Some(&q) if is_quoted_char(q) => j += 1,
                            _ => {
                                // Bad character, or no closing quote.
                                self.fail(j);
                                return (0, j..j);
                            }
                        }
                    }
                } else {
                    while j < buf.len() && is_unquoted_char(buf[j]) {
                        j += 1;
                    }
                }
                self.index = j;
                (c, start..j)
            }
            _ => {
                self.fail(i);
                (0, i..i)
            }
        }
    }
}
