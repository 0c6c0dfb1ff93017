//! The shared region of one connection: a `memfd`, sealed against
//! shrinking and growing, mapped by exactly the two processes of the
//! connection; a region header, the control blocks of the two rings, and
//! their data areas.
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0 | 64 | region header (magic, version, ring size, data offset) |
//! | 128 | 256 | control block of ring 0 (requests, client → service) |
//! | 384 | 256 | control block of ring 1 (replies, service → client) |
//! | 4096 | R | data of ring 0 |
//! | 4096 + R | R | data of ring 1 |
//!
//! The side that receives the descriptor checks it before mapping it
//! ([`verify_memfd`]): a memfd (regular file that supports seals) with
//! exactly the seals `F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL` (plus
//! `F_SEAL_EXEC`, which kernels may add by themselves) and exactly the
//! agreed size. Sealed so, the peer cannot truncate the file under our
//! mapping (which would make our next access fault). The mapping sits
//! between two inaccessible guard pages.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::ShmError;
use super::ring::{CTL_LEN, Consumer, Producer, RingMem};

/// "CAPR" little-endian: the region header's magic.
pub const REGION_MAGIC: u32 = u32::from_le_bytes(*b"CAPR");
/// Version of the region layout.
pub const REGION_VERSION: u32 = 1;
/// Offset of ring 0's data (the control page comes first).
pub const DATA_OFFSET: usize = 4096;
/// Offset of ring `i`'s control block: `CTL_BASE + i * CTL_LEN`.
pub const CTL_BASE: usize = 128;
/// Bytes in each ring by default: the smallest power of two that holds
/// the largest v1 frame (48 + 66480 bytes), so a v1 frame never needs the
/// socket; the largest v2 frames (up to 48 + 131072 bytes) go on the socket
/// behind a marker.
pub const DEFAULT_RING: usize = 128 * 1024;
/// Smallest and largest ring sizes a region may have.
pub const MIN_RING: usize = 4096;
pub const MAX_RING: usize = 16 << 20;
/// The seals a region must carry, no more and no less (but `F_SEAL_EXEC`).
pub const REQUIRED_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;

/// Offsets in the region header (u32 words).
const HDR_MAGIC: usize = 0;
const HDR_VERSION: usize = 4;
const HDR_RING: usize = 8;
const HDR_DATA: usize = 12;
/// Bytes of the region header; the words after `HDR_DATA` are 0.
const HDR_LEN: usize = 64;

/// Bytes of a region whose rings have `ring` bytes each.
pub const fn region_len(ring: usize) -> usize {
    DATA_OFFSET + 2 * ring
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as usize } else { 4096 }
}

/// A shared mapping of a region between two `PROT_NONE` guard pages;
/// unmapped when the last ring or region holding it goes.
pub(super) struct Mapping {
    /// The first byte of the region (one page after the reservation).
    base: *mut u8,
    /// Bytes of the region.
    len: usize,
}

// SAFETY: the mapping is plain memory shared with another process; all
// access to it goes through atomics (`ring.rs`, `Region::check_header`),
// so handing the owner to another thread is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only gives out its address.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Map `len` bytes of `fd` shared, read and write, with a guard page on
    /// each side.
    fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Mapping, ShmError> {
        let page = page_size();
        let total = len + 2 * page;
        // SAFETY: a fresh anonymous reservation; nothing else is at the
        // address the kernel picks.
        let res = unsafe {
            libc::mmap(
                ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if res == libc::MAP_FAILED {
            return Err(ShmError::Os(errno()));
        }
        // SAFETY: `res + page .. res + page + len` lies inside the
        // reservation we own, so MAP_FIXED replaces only our own pages.
        let map = unsafe {
            libc::mmap(
                res.cast::<u8>().add(page).cast(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            let e = errno();
            // SAFETY: unmapping the reservation made above, used by nobody.
            unsafe { libc::munmap(res, total) };
            return Err(ShmError::Os(e));
        }
        Ok(Mapping {
            base: map.cast(),
            len,
        })
    }

    /// Give back this mapping's pages in `off .. off + len` (page
    /// aligned): `libc::MADV_REMOVE` frees the memfd's pages there (both
    /// sides read zeros from then on: only the producer of a data area
    /// whose reader read everything may do that), `libc::MADV_DONTNEED`
    /// drops only this process's view of them (the next access maps the
    /// same bytes again, the peer's view is untouched).
    pub(super) fn advise(&self, off: usize, len: usize, advice: i32) -> Result<(), ShmError> {
        debug_assert!(off + len <= self.len && off.is_multiple_of(page_size()));
        // SAFETY: the range lies inside our own shared mapping; neither
        // advice unmaps it or changes what a later access may touch, and
        // every access to it is atomic (a page given back reads as zeros
        // or as the file's bytes, which the ring checks as any others).
        if unsafe { libc::madvise(self.base.add(off).cast(), len, advice) } != 0 {
            return Err(ShmError::Os(errno()));
        }
        Ok(())
    }

    /// Bytes of the region.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The address of the region's first byte (tests look at the
    /// mapping from outside: `mincore`, `/proc/self/maps`).
    #[cfg(test)]
    pub(super) fn addr(&self) -> usize {
        self.base as usize
    }

    /// The offset of `p` (inside the mapping) from its first byte.
    pub(super) fn offset_of(&self, p: *const u8) -> usize {
        p as usize - self.base as usize
    }

    /// The `u32` at `off` in the region.
    fn word(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: `off` is one of the header offsets above, in bounds and 4-aligned (`base` is page
        // aligned); the mapping lives while `self` does; the reference is
        // to an atomic, which the peer may change at any time.
        unsafe { &*self.base.add(off).cast::<AtomicU32>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        let page = page_size();
        // SAFETY: the reservation of `len + 2 pages` starting one page
        // before `base` was made by `Mapping::new`; nothing refers to it
        // any more (every ring holds an `Arc` to us).
        unsafe { libc::munmap(self.base.sub(page).cast(), self.len + 2 * page) };
    }
}

/// Which end of the connection a side is: the client produces requests
/// (ring 0) and consumes replies (ring 1); the service the opposite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Service,
}

/// One connection's shared region, mapped.
pub struct Region {
    map: Arc<Mapping>,
    ring: usize,
    /// The memfd: kept by the side that made it until sent to the peer.
    fd: Option<OwnedFd>,
}

impl Region {
    /// Make a new region with rings of `ring` bytes (a power of two from
    /// `MIN_RING` to `MAX_RING`): create, size, seal, map, write the
    /// header. Cheap enough to do on a connection's first traffic.
    pub fn create(ring: usize) -> Result<Region, ShmError> {
        if !ring.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&ring) {
            return Err(ShmError::Os(libc::EINVAL));
        }
        let fd = memfd(c"libcaps-ring")?;
        let len = region_len(ring);
        // SAFETY: sizing our own new memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(ShmError::Os(errno()));
        }
        // SAFETY: adding seals to our own memfd, made with MFD_ALLOW_SEALING.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, REQUIRED_SEALS) } != 0 {
            return Err(ShmError::Os(errno()));
        }
        let map = Mapping::new(fd.as_fd(), len)?;
        map.word(HDR_MAGIC).store(REGION_MAGIC, Ordering::Relaxed);
        map.word(HDR_VERSION)
            .store(REGION_VERSION, Ordering::Relaxed);
        map.word(HDR_RING).store(ring as u32, Ordering::Relaxed);
        map.word(HDR_DATA)
            .store(DATA_OFFSET as u32, Ordering::Relaxed);
        Ok(Region {
            map: Arc::new(map),
            ring,
            fd: Some(fd),
        })
    }

    /// Map a region whose descriptor came from the peer, after checking
    /// it ([`verify_memfd`]) and its header; `ring` is the agreed ring size.
    /// The descriptor is closed once mapped (the mapping keeps the memory).
    pub fn attach(fd: OwnedFd, ring: usize) -> Result<Region, ShmError> {
        if !ring.is_power_of_two() || !(MIN_RING..=MAX_RING).contains(&ring) {
            return Err(ShmError::Os(libc::EINVAL));
        }
        verify_memfd(fd.as_fd(), region_len(ring))?;
        let map = Mapping::new(fd.as_fd(), region_len(ring))?;
        drop(fd);
        let r = Region {
            map: Arc::new(map),
            ring,
            fd: None,
        };
        r.check_header()?;
        Ok(r)
    }

    /// The header as the creator wrote it (read once; the peer may change
    /// it later, but nothing reads it again).
    fn check_header(&self) -> Result<(), ShmError> {
        let w = |off| self.map.word(off).load(Ordering::Relaxed);
        let want = [
            ("region magic", HDR_MAGIC, REGION_MAGIC),
            ("region version", HDR_VERSION, REGION_VERSION),
            ("ring size", HDR_RING, self.ring as u32),
            ("data offset", HDR_DATA, DATA_OFFSET as u32),
        ];
        for (what, off, v) in want {
            if w(off) != v {
                return Err(ShmError::BadRegion(what, w(off).into()));
            }
        }
        for off in (HDR_DATA + 4..HDR_LEN).step_by(4) {
            if w(off) != 0 {
                return Err(ShmError::BadRegion(
                    "region header reserved word",
                    off as u64,
                ));
            }
        }
        Ok(())
    }

    /// The memfd to send to the peer (the creator's, until taken).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// Take the memfd (to close it once sent; the mapping stays).
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fd.take()
    }

    /// Bytes in each ring.
    pub fn ring_size(&self) -> usize {
        self.ring
    }

    /// The two ends of this side: the ring it writes and the ring it reads,
    /// whose frames may carry up to `max_body` payload bytes.
    pub fn split(self, side: Side, max_body: u32) -> (Producer, Consumer) {
        self.split_at(side, max_body, 0)
    }

    /// `split`, with both rings' indices starting at `start` (8-aligned),
    /// which must also be what the shared control blocks hold: 0 for a new
    /// region; tests start near 2^32 to see the indices wrap.
    pub(super) fn split_at(self, side: Side, max_body: u32, start: u32) -> (Producer, Consumer) {
        assert!(start.is_multiple_of(8));
        let (out, inp) = match side {
            Side::Client => (0, 1),
            Side::Service => (1, 0),
        };
        let ctl = |i: usize| {
            // SAFETY: CTL_BASE + 2 * CTL_LEN ≤ DATA_OFFSET ≤ the region's length.
            unsafe { self.map.base.add(CTL_BASE + i * CTL_LEN) }
        };
        let data = |i: usize| {
            // SAFETY: DATA_OFFSET + 2 * ring is the region's length.
            unsafe { self.map.base.add(DATA_OFFSET + i * self.ring) }
        };
        let cap = self.ring as u32;
        // SAFETY: control blocks and data areas of rings `out` and `in` of
        // this mapping (128- and page-aligned, `cap` a checked power of
        // two); `split` consumes the region, so this side makes one
        // producer and one consumer, and the peer's are the other ends.
        let (pm, cm) = unsafe {
            (
                RingMem::new(self.map.clone(), ctl(out), data(out), cap),
                RingMem::new(self.map.clone(), ctl(inp), data(inp), cap),
            )
        };
        (Producer::new(pm, start), Consumer::new(cm, start, max_body))
    }

    /// The mapping's first byte (tests scribble on it from another process).
    #[cfg(test)]
    pub(super) fn base(&self) -> *mut u8 {
        self.map.base
    }

    /// Store `v` in the shared `u32` at `off` (tests).
    #[cfg(test)]
    pub(super) fn poke(&self, off: usize, v: u32) {
        self.map.word(off).store(v, Ordering::Relaxed);
    }
}

/// A new memfd, close-on-exec, sealable (and not executable where the
/// kernel knows `MFD_NOEXEC_SEAL`, Linux 6.3).
fn memfd(name: &core::ffi::CStr) -> Result<OwnedFd, ShmError> {
    let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // SAFETY: memfd_create with a NUL-terminated name.
    let mut fd = unsafe { libc::memfd_create(name.as_ptr(), flags | libc::MFD_NOEXEC_SEAL) };
    if fd < 0 && errno() == libc::EINVAL {
        // SAFETY: as above, without the flag older kernels refuse.
        fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
    }
    if fd < 0 {
        return Err(ShmError::Os(errno()));
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Check a descriptor the peer offers as a region of `len` bytes: a
/// regular file that supports seals (a memfd), sealed with exactly
/// [`REQUIRED_SEALS`] (`F_SEAL_EXEC` tolerated), exactly `len` bytes.
pub fn verify_memfd(fd: BorrowedFd<'_>, len: usize) -> Result<(), ShmError> {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into a writable stat.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(ShmError::Os(errno()));
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(ShmError::BadRegion(
            "not a regular file, mode",
            st.st_mode.into(),
        ));
    }
    // SAFETY: F_GET_SEALS takes no argument.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    if seals < 0 {
        return Err(ShmError::BadRegion(
            "no seals (not a memfd), errno",
            errno() as u64,
        ));
    }
    if seals & !libc::F_SEAL_EXEC != REQUIRED_SEALS {
        return Err(ShmError::BadRegion("seals", seals as u64));
    }
    if st.st_size as u64 != len as u64 {
        return Err(ShmError::BadRegion("size", st.st_size as u64));
    }
    Ok(())
}
