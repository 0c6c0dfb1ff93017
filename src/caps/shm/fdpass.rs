//! Passing descriptors over a connection's Unix stream socket
//! (`SCM_RIGHTS`), for the hello that sets up shared memory.
//!
//! On a stream socket the descriptors travel with the first byte of the
//! `sendmsg` that carries them, and only a `recvmsg` that reads that byte
//! receives them (a plain `read` makes the kernel close them). So the side
//! expecting descriptors reads the bytes that carry them with
//! [`recv_with_fds`], and nothing before them beyond what it expects.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr;

/// Most descriptors one message may carry (the region's memfd, and room
/// for one more); a message with more is refused.
pub const MAX_FDS: usize = 2;

/// Bytes of control buffer, 8-aligned: room for `SEND_MAX` descriptors.
const CMSG_BUF: usize = 64;
/// Most descriptors `send_with_fds` attaches (more than a receiver
/// accepts, so that tests can see the refusal).
const SEND_MAX: usize = 8;

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

/// Send `data` (at least one byte) with `fds` attached. Returns the bytes
/// sent: fewer than `data.len()` on a non-blocking socket that is nearly
/// full (the descriptors went with the first byte; send the rest without
/// them). `MSG_NOSIGNAL`: a closed peer is `EPIPE`, not a signal.
pub fn send_with_fds(
    sock: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<usize> {
    if data.is_empty() || fds.len() > SEND_MAX {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let payload = std::mem::size_of_val(raw.as_slice()) as u32;
    let mut cbuf = [0u64; CMSG_BUF / 8];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !raw.is_empty() {
        // SAFETY: CMSG_SPACE only computes a size.
        let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
        debug_assert!(space <= CMSG_BUF);
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` points at `cbuf`, 8-aligned and at least
        // CMSG_SPACE(payload) bytes long, so the first header exists and
        // its data has room for `raw`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
            ptr::copy_nonoverlapping(raw.as_ptr(), libc::CMSG_DATA(c).cast(), raw.len());
        }
    }
    loop {
        // SAFETY: `msg` describes live buffers (`data`, `cbuf`).
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = last_err();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receive up to `buf.len()` bytes and the descriptors that come with
/// them (close-on-exec), appended to `fds`. A message with more than
/// [`MAX_FDS`] descriptors, or control data other than `SCM_RIGHTS`, is
/// `EPROTO` (what did arrive is closed). 0 bytes: end of file.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> std::io::Result<usize> {
    let mut cbuf = [0u64; CMSG_BUF / 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen =
        unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as _;
    let n = loop {
        // SAFETY: `msg` describes live, writable buffers (`buf`, `cbuf`).
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = last_err();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut got = Vec::new();
    let mut bad = msg.msg_flags & libc::MSG_CTRUNC != 0;
    // SAFETY: walking the control messages the kernel wrote into `cbuf`
    // with the CMSG_* macros, which stay within `msg_controllen`; each
    // SCM_RIGHTS payload is an array of descriptors now owned by us
    // (read unaligned: CMSG_DATA need not be aligned for `int`).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let p = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    got.push(OwnedFd::from_raw_fd(p.add(i).read_unaligned()));
                }
            } else {
                bad = true;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if bad || got.len() > MAX_FDS {
        // `got` is dropped: every descriptor that arrived is closed.
        return Err(std::io::Error::from_raw_os_error(libc::EPROTO));
    }
    fds.append(&mut got);
    Ok(n)
}
