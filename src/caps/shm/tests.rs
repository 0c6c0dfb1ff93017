//! Tests of the shared-memory transport: region checks, ring wrap-around
//! and fullness, markers and order, the sleep flags, descriptor passing,
//! and hostile peers (including a second process scribbling on the
//! mapping while we read and write).

use core::sync::atomic::Ordering;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::fdpass::{recv_with_fds, send_with_fds};
use super::region::{CTL_BASE, DATA_OFFSET, REQUIRED_SEALS, region_len, verify_memfd};
use super::ring::{CTL_HEAD, CTL_LEN, CTL_READER_ASLEEP, CTL_TAIL, record_len};
use super::*;
use crate::caps::errno::Errno;
use crate::caps::wire::{FrameKind, Header};

const RING: usize = 4096;
const MAX_BODY: u32 = 66_480;

fn req(id: u64, body_len: usize) -> Header {
    Header {
        kind: FrameKind::Request,
        body_len: body_len as u32,
        id,
        capacity: body_len as u32,
        cmd: 7,
        error: 0,
        result: id.wrapping_mul(3),
        pad: [1, 2],
    }
}

fn body(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id as usize * 31 + i) as u8).collect()
}

/// Client and service ends of one new region.
fn pair(ring: usize) -> ((Producer, Consumer), (Producer, Consumer)) {
    let mut r = Region::create(ring).unwrap();
    let fd = r.take_fd().unwrap();
    let peer = Region::attach(fd, ring).unwrap();
    (
        r.split(Side::Client, MAX_BODY),
        peer.split(Side::Service, MAX_BODY),
    )
}

fn push_ok(p: &mut Producer, id: u64, len: usize) -> bool {
    match p.push(&req(id, len).encode(), &body(id, len)).unwrap() {
        Push::Written { doorbell } => doorbell,
        other => panic!("frame {id} of {len}: {other:?}"),
    }
}

fn pop_frame(c: &mut Consumer) -> (Header, Vec<u8>) {
    match c.pop().unwrap() {
        Some(Record::Frame(h, b)) => (h, b),
        other => panic!("expected a frame, got {other:?}"),
    }
}

/// A raw memfd of `len` bytes with `seals` added (`None`: not sealable).
fn raw_memfd(len: usize, seals: Option<i32>) -> OwnedFd {
    let flags = libc::MFD_CLOEXEC
        | if seals.is_some() {
            libc::MFD_ALLOW_SEALING
        } else {
            0
        };
    // SAFETY: memfd_create with a NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"test".as_ptr(), flags) };
    assert!(fd >= 0);
    // SAFETY: our new descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sizing our own memfd.
    let r = unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) };
    assert_eq!(r, 0);
    if let Some(s) = seals.filter(|&s| s != 0) {
        // SAFETY: sealing our own memfd.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, s) };
        assert_eq!(r, 0);
    }
    fd
}

#[test]
fn region_is_sealed_and_attaches() {
    let r = Region::create(RING).unwrap();
    let fd = r.fd().unwrap();
    verify_memfd(fd, region_len(RING)).unwrap();
    // SAFETY: F_GET_SEALS on our memfd.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    assert_eq!(seals & REQUIRED_SEALS, REQUIRED_SEALS);
    // The seals hold: neither shrinking nor growing is allowed.
    // SAFETY: ftruncate on our memfd.
    assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 4096) }, 0);
    // SAFETY: as above.
    assert_ne!(unsafe { libc::ftruncate(fd.as_raw_fd(), 1 << 20) }, 0);
    let ((mut cp, _), (_, mut sc)) = pair(RING);
    push_ok(&mut cp, 1, 100);
    let (h, b) = pop_frame(&mut sc);
    assert_eq!((h, b), (req(1, 100), body(1, 100)));
    assert_eq!(Region::create(3000).err(), Some(ShmError::Os(libc::EINVAL)));
}

#[test]
fn verifier_refuses_missing_seals_wrong_size_and_other_files() {
    let len = region_len(RING);
    let want = |fd: &OwnedFd| verify_memfd(fd.as_fd(), len);
    // Not sealable at all: F_GET_SEALS says only F_SEAL_SEAL.
    assert!(matches!(
        want(&raw_memfd(len, None)),
        Err(ShmError::BadRegion("seals", _))
    ));
    // Sealable, no seals.
    assert!(matches!(
        want(&raw_memfd(len, Some(0))),
        Err(ShmError::BadRegion("seals", _))
    ));
    // Shrink and grow sealed but the seal set left open.
    let open = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
    assert!(matches!(
        want(&raw_memfd(len, Some(open))),
        Err(ShmError::BadRegion("seals", _))
    ));
    // A write seal too many.
    let w = REQUIRED_SEALS | libc::F_SEAL_WRITE;
    assert!(matches!(
        want(&raw_memfd(len, Some(w))),
        Err(ShmError::BadRegion("seals", _))
    ));
    // Right seals, wrong size (both ways), and attach refuses it.
    let small = raw_memfd(len - 4096, Some(REQUIRED_SEALS));
    assert_eq!(
        want(&small),
        Err(ShmError::BadRegion("size", (len - 4096) as u64))
    );
    assert!(want(&raw_memfd(len * 2, Some(REQUIRED_SEALS))).is_err());
    assert_eq!(
        Region::attach(small, RING).err().map(|e| e.errno()),
        Some(Errno::EPROTO)
    );
    // The right thing passes.
    assert_eq!(want(&raw_memfd(len, Some(REQUIRED_SEALS))), Ok(()));
    // A pipe and a socket are not regular files.
    let (a, _b) = UnixStream::pair().unwrap();
    assert!(matches!(
        verify_memfd(a.as_fd(), len),
        Err(ShmError::BadRegion(_, _))
    ));
    // A regular file on disk has no seals.
    let f = std::fs::File::open("/proc/self/exe").unwrap();
    assert!(matches!(
        verify_memfd(f.as_fd(), len),
        Err(ShmError::BadRegion(_, _))
    ));
}

#[test]
fn attach_refuses_a_bad_header_or_size() {
    let mut r = Region::create(RING).unwrap();
    let fd = r.take_fd().unwrap();
    // SAFETY: dup of our memfd.
    let dup = |fd: &OwnedFd| unsafe { OwnedFd::from_raw_fd(libc::dup(fd.as_raw_fd())) };
    // Agreed ring size differs from the file's: the size check refuses.
    assert!(matches!(
        Region::attach(dup(&fd), 2 * RING),
        Err(ShmError::BadRegion("size", _))
    ));
    r.poke(8, 8192);
    assert_eq!(
        Region::attach(dup(&fd), RING).err(),
        Some(ShmError::BadRegion("ring size", 8192))
    );
    r.poke(8, RING as u32);
    r.poke(0, 0x1234);
    assert!(matches!(
        Region::attach(dup(&fd), RING),
        Err(ShmError::BadRegion("region magic", _))
    ));
    r.poke(0, region::REGION_MAGIC);
    r.poke(40, 1);
    assert!(Region::attach(dup(&fd), RING).is_err());
    r.poke(40, 0);
    assert!(Region::attach(fd, RING).is_ok());
}

#[test]
fn wrap_around_with_indices_near_2_pow_32() {
    for start in [0u32, u32::MAX - 4095, u32::MAX - 100 + 4] {
        let start = start & !7;
        let mut r = Region::create(RING).unwrap();
        let fd = r.take_fd().unwrap();
        let peer = Region::attach(fd, RING).unwrap();
        for ring in 0..2 {
            r.poke(CTL_BASE + ring * CTL_LEN + CTL_TAIL, start);
            r.poke(CTL_BASE + ring * CTL_LEN + CTL_HEAD, start);
        }
        let (mut p, _) = r.split_at(Side::Client, MAX_BODY, start);
        let (_, mut c) = peer.split_at(Side::Service, MAX_BODY, start);
        // Sizes that do not divide the ring, so records straddle its end;
        // a few in flight at a time.
        let mut next_pop = 0u64;
        for id in 0..2000u64 {
            let len = (id as usize * 97) % 1500;
            if !matches!(
                p.push(&req(id, len).encode(), &body(id, len)).unwrap(),
                Push::Written { .. }
            ) {
                while next_pop < id {
                    let (h, b) = pop_frame(&mut c);
                    assert_eq!(h.id, next_pop);
                    assert_eq!(b, body(next_pop, (next_pop as usize * 97) % 1500));
                    next_pop += 1;
                }
                push_ok(&mut p, id, len);
            }
        }
        while let Some(Record::Frame(h, b)) = c.pop().unwrap() {
            assert_eq!(h.id, next_pop);
            assert_eq!(b, body(next_pop, (next_pop as usize * 97) % 1500));
            next_pop += 1;
        }
        assert_eq!(next_pop, 2000, "start {start:#x}");
    }
}

#[test]
fn full_and_exactly_full() {
    let ((mut p, _), (_, mut c)) = pair(RING);
    // 4096 = 8 records of 512 (body 464): the ring fills exactly.
    for id in 0..8 {
        push_ok(&mut p, id, 464);
    }
    assert_eq!(p.pending().unwrap(), RING);
    // Not even the smallest record fits now, and nothing was written.
    assert_eq!(p.push(&req(8, 0).encode(), &[]).unwrap(), Push::Full);
    assert_eq!(p.pending().unwrap(), RING);
    // One popped: exactly its space is free again.
    assert_eq!(pop_frame(&mut c).0.id, 0);
    assert_eq!(
        p.push(&req(8, 465).encode(), &body(8, 465)).unwrap(),
        Push::Full
    );
    push_ok(&mut p, 8, 464);
    assert_eq!(p.push(&req(9, 0).encode(), &[]).unwrap(), Push::Full);
    for id in 1..9 {
        let (h, b) = pop_frame(&mut c);
        assert_eq!((h.id, b), (id, body(id, 464)));
    }
    assert_eq!(c.pop().unwrap(), None);
    assert_eq!(p.pending().unwrap(), 0);
    // The largest frame that fits: a record of the whole ring.
    let big = RING - 48;
    push_ok(&mut p, 10, big);
    assert_eq!(pop_frame(&mut c).1, body(10, big));
    assert_eq!(record_len(big), RING);
}

#[test]
fn big_frames_go_on_the_socket_behind_a_marker_in_order() {
    let ((mut p, _), (_, c)) = pair(RING);
    let mut inb = Inbound::new(c);
    let big = RING; // record 4144 > 4096
    assert!(!p.fits(big) && p.fits(RING - 48));
    // Sent: 1 (ring), 2 (socket), 3 (ring), 4 (socket), 5 (ring).
    let mut socket = Vec::new();
    for id in 1..=5u64 {
        let len = if id % 2 == 0 { big } else { 10 };
        match p.push(&req(id, len).encode(), &body(id, len)).unwrap() {
            Push::Written { .. } => assert!(id % 2 == 1),
            Push::OnSocket { .. } => socket.push((req(id, len), body(id, len))),
            Push::Full => panic!("full"),
        }
    }
    assert_eq!(socket.len(), 2);
    // Frame 2 arrives on the socket late: 1 comes, then nothing until it does.
    assert_eq!(inb.next_frame().unwrap().unwrap().0.id, 1);
    assert_eq!(inb.next_frame().unwrap(), None);
    assert!(inb.awaits_socket());
    assert_eq!(
        inb.next_frame().unwrap(),
        None,
        "ring frame 3 must wait for 2"
    );
    inb.socket_frame(socket.remove(0)).unwrap();
    // Frame 4 arrives early, before its marker is popped.
    inb.socket_frame(socket.remove(0)).unwrap();
    let ids: Vec<u64> = std::iter::from_fn(|| inb.next_frame().unwrap())
        .map(|(h, b)| {
            assert_eq!(b, body(h.id, h.body_len as usize));
            h.id
        })
        .collect();
    assert_eq!(ids, [2, 3, 4, 5]);
    assert!(!inb.awaits_socket());
    // Frames on the socket beyond what markers could announce: refused.
    let mut n = 0;
    let err = loop {
        match inb.socket_frame((req(99, 0), Vec::new())) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(n, RING / 48);
    assert!(matches!(err, ShmError::Unannounced(_)));
    // The doorbell header is recognised and its fields must be 0.
    let d = doorbell();
    assert!(is_doorbell(&d) && check_transport_header(&d).is_ok());
    assert!(!is_doorbell(&req(1, 0).encode()));
    let mut bad = d;
    bad[20] = 1;
    assert!(check_transport_header(&bad).is_err());
}

#[test]
fn doorbell_only_for_a_sleeping_reader_and_a_waiting_writer() {
    let ((mut p, _), (_, mut c)) = pair(RING);
    assert!(!push_ok(&mut p, 1, 8), "reader awake: no doorbell");
    // Not empty: the reader may not sleep, and withdraws its flag.
    assert!(!c.prepare_sleep().unwrap());
    assert!(!push_ok(&mut p, 2, 8));
    pop_frame(&mut c);
    pop_frame(&mut c);
    assert!(c.prepare_sleep().unwrap());
    assert!(push_ok(&mut p, 3, 8), "reader asleep: doorbell");
    assert!(!push_ok(&mut p, 4, 8), "one doorbell per sleep");
    c.woke();
    while c.pop().unwrap().is_some() {}
    // Writer short of space: it asks, the reader's pop answers once.
    while push_ok_or_full(&mut p) {}
    assert!(p.prepare_wait(100).unwrap());
    assert!(!c.take_doorbell());
    pop_frame(&mut c);
    assert!(c.take_doorbell());
    pop_frame(&mut c);
    assert!(!c.take_doorbell());
    assert!(!p.prepare_wait(100).unwrap(), "room now");
}

fn push_ok_or_full(p: &mut Producer) -> bool {
    matches!(
        p.push(&req(0, 200).encode(), &body(0, 200)).unwrap(),
        Push::Written { .. }
    )
}

#[test]
fn hostile_indices_and_records_are_errors() {
    let tail_off = CTL_BASE + CTL_TAIL; // ring 0: client → service
    let head_off = CTL_BASE + CTL_HEAD;
    let fresh = || {
        let mut r = Region::create(RING).unwrap();
        let peer = Region::attach(r.take_fd().unwrap(), RING).unwrap();
        (r, peer)
    };
    // Tail beyond the ring, unaligned, or behind our head.
    for bad in [RING as u32 + 8, 12, !7u32, 8] {
        let (r, peer) = fresh();
        let (_, mut c) = peer.split(Side::Service, MAX_BODY);
        r.poke(tail_off, bad);
        let e = c.next_header().unwrap_err();
        assert!(matches!(
            e,
            ShmError::BadIndex("tail", _, 0) | ShmError::Truncated(48, 8)
        ));
        assert_eq!(e.errno(), Errno::EPROTO);
    }
    // A published header that is no frame header.
    let (r, peer) = fresh();
    let (mut p, _) = r.split(Side::Client, MAX_BODY);
    let (_, mut c) = peer.split(Side::Service, MAX_BODY);
    let mut h = req(1, 8).encode();
    h[0] = 9;
    p.push(&h, &[0; 8]).unwrap();
    assert!(matches!(c.next_header(), Err(ShmError::BadRecord(_))));
    // A header whose body goes past the tail (peer stops mid-frame after
    // publishing the header only).
    let (r, peer) = fresh();
    let (_, mut c) = peer.split(Side::Service, MAX_BODY);
    let base = r.base();
    let hb = req(1, 1000).encode();
    for (i, w) in hb.chunks(4).enumerate() {
        r.poke(
            DATA_OFFSET + 4 * i,
            u32::from_le_bytes(w.try_into().unwrap()),
        );
    }
    assert!(!base.is_null());
    assert_eq!(c.next_header(), Ok(None), "written, not published: nothing");
    r.poke(tail_off, 48);
    assert_eq!(c.next_header(), Err(ShmError::Truncated(1048, 48)));
    // A frame larger than the receiver's limit, though it fits the ring.
    let (r, peer) = fresh();
    let (mut p, _) = r.split(Side::Client, MAX_BODY);
    let (_, mut c) = peer.split(Side::Service, 100);
    push_ok(&mut p, 1, 200);
    assert!(matches!(c.next_header(), Err(ShmError::BadRecord(_))));
    // A marker with a non-zero field.
    let (r, peer) = fresh();
    let (mut p, _) = r.split(Side::Client, MAX_BODY);
    let (_, mut c) = peer.split(Side::Service, MAX_BODY);
    let mut m = transport_header(MARKER);
    m[8] = 1;
    p.push(&m, &[]).unwrap();
    assert!(matches!(c.next_header(), Err(ShmError::BadRecord(_))));
    // The producer checks the consumer's head: moved back, past our tail,
    // or unaligned.
    for bad in [!7u32, 1 << 20, 4] {
        let (r, peer) = fresh();
        let (mut p, _) = r.split(Side::Client, MAX_BODY);
        push_ok(&mut p, 1, 8); // tail 56
        peer.poke(head_off, bad);
        // The head is loaded when the space known free runs out: by the
        // time the ring would be full, the bad head is seen.
        let e = (2..100)
            .find_map(|id| p.push(&req(id, 8).encode(), &[0; 8]).err())
            .unwrap();
        assert!(matches!(e, ShmError::BadIndex("head", _, _)), "{e}");
    }
    // Misuse is ours, not the peer's.
    let ((mut p, _), (_, mut c)) = pair(RING);
    let e = p.push(&req(1, 9).encode(), &[0; 8]).unwrap_err();
    assert_eq!(e.errno(), Errno::EINVAL);
    assert_eq!(c.take_body(&mut []).unwrap_err().errno(), Errno::EINVAL);
    push_ok(&mut p, 1, 8);
    assert!(matches!(c.next_header(), Ok(Some(Next::Frame(_)))));
    assert!(matches!(c.take_body(&mut [0; 7]), Err(ShmError::Misuse(_))));
    c.take_body(&mut [0; 8]).unwrap();
    // The flag words: the reader's asleep flag set by a hostile peer only
    // costs it a doorbell.
    r_asleep_is_harmless();
}

fn r_asleep_is_harmless() {
    let r = Region::create(RING).unwrap();
    r.poke(CTL_BASE + CTL_READER_ASLEEP, 0xdead_beef);
    let (mut p, _) = r.split(Side::Client, MAX_BODY);
    assert!(push_ok(&mut p, 1, 8));
    assert!(!push_ok(&mut p, 2, 8));
}

#[test]
fn descriptors_pass_over_the_socket() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut r = Region::create(RING).unwrap();
    let sent = send_with_fds(a.as_fd(), b"M", &[r.fd().unwrap()]).unwrap();
    assert_eq!(sent, 1);
    drop(r.take_fd());
    let mut buf = [0u8; 16];
    let mut fds = Vec::new();
    assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 1);
    assert_eq!((buf[0], fds.len()), (b'M', 1));
    // SAFETY: F_GETFD on the received descriptor.
    let fdflags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
    assert_eq!(fdflags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    let peer = Region::attach(fds.pop().unwrap(), RING).unwrap();
    let (mut cp, _) = r.split(Side::Client, MAX_BODY);
    let (_, mut sc) = peer.split(Side::Service, MAX_BODY);
    push_ok(&mut cp, 5, 33);
    assert_eq!(pop_frame(&mut sc), (req(5, 33), body(5, 33)));
    // Bytes without descriptors, and too many descriptors: refused, closed.
    let (x, y) = UnixStream::pair().unwrap();
    assert_eq!(send_with_fds(a.as_fd(), b"abc", &[]).unwrap(), 3);
    assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 3);
    assert!(fds.is_empty());
    send_with_fds(a.as_fd(), b"", &[x.as_fd()]).unwrap_err();
    let three = [x.as_fd(), y.as_fd(), x.as_fd()];
    send_with_fds(a.as_fd(), b"T", &three).unwrap();
    let e = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EPROTO));
    assert!(fds.is_empty());
    drop(a);
    assert_eq!(recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap(), 0);
}

/// xorshift64*: the hostile child's randomness (no allocation after fork).
fn rand(s: &mut u64) -> u64 {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    s.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// Fork a child that runs `f` and `_exit`s with its result (0 = fine).
/// The child is killed when the test process dies (a failed test must not
/// leave a scribbler running).
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the child only touches memory and makes system calls, then
    // `_exit`s; it never returns into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // SAFETY: prctl and getppid have no memory preconditions; if the
        // parent died before the prctl, the child ends at once.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent {
                libc::_exit(9);
            }
        }
        let code = f();
        // SAFETY: ends the child without running the parent's exit hooks.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Wait for `pid` up to `secs`, killing it after; its exit status.
fn reap(pid: libc::pid_t, secs: u64, kill: bool) -> i32 {
    if kill {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let t0 = Instant::now();
    let mut st = 0;
    loop {
        // SAFETY: reaping our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r == pid {
            return st;
        }
        if t0.elapsed() > Duration::from_secs(secs) {
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Map `fd` (`len` bytes) shared in the calling process.
fn map_fd(fd: &OwnedFd, len: usize) -> *mut u8 {
    // SAFETY: a fresh shared mapping of our descriptor.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    p.cast()
}

#[test]
fn a_second_process_scribbling_garbage_costs_errors_only() {
    let mut r = Region::create(RING).unwrap();
    let fd = r.take_fd().unwrap();
    let len = region_len(RING);
    // The hostile client: maps the memfd itself and, as fast as it can,
    // writes valid requests, garbage headers at the service's head, and
    // random words over indices, flags and data.
    let child = fork_child(|| {
        let m = map_fd(&fd, len);
        let word = |off: usize| {
            // SAFETY: `off` < len, 4-aligned, in our shared mapping; the
            // other process only uses atomics on it.
            unsafe { &*m.add(off).cast::<core::sync::atomic::AtomicU32>() }
        };
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let ctl0 = CTL_BASE;
        let mut tail = 0u32;
        let t0 = Instant::now();
        for n in 0u64.. {
            if n.is_multiple_of(65536) && t0.elapsed() > Duration::from_secs(120) {
                return 8;
            }
            let x = rand(&mut s);
            match x % 64 {
                0..=55 => {
                    // A valid request (or marker) at our tail.
                    let blen = (x >> 8) as usize % 600;
                    let h = if blen.is_multiple_of(11) {
                        transport_header(MARKER)
                    } else {
                        req(x, blen).encode()
                    };
                    let blen = if blen.is_multiple_of(11) { 0 } else { blen };
                    let rec = record_len(blen);
                    let head = word(ctl0 + CTL_HEAD).load(Ordering::Acquire);
                    if (RING as u32).wrapping_sub(tail.wrapping_sub(head)) < rec as u32 {
                        tail = head & !7;
                        continue;
                    }
                    for (i, c) in h.chunks(4).enumerate() {
                        let off = (tail as usize + 4 * i) % RING;
                        word(DATA_OFFSET + off)
                            .store(u32::from_le_bytes(c.try_into().unwrap()), Ordering::Relaxed);
                    }
                    tail = tail.wrapping_add(rec as u32);
                    word(ctl0 + CTL_TAIL).store(tail, Ordering::Release);
                }
                56 | 57 => {
                    // A random tail, near or far.
                    let t = if x & 0x100 != 0 {
                        tail.wrapping_add((x >> 16) as u32 % 256)
                    } else {
                        (x >> 16) as u32
                    };
                    word(ctl0 + CTL_TAIL).store(t, Ordering::Release);
                }
                58 | 59 => {
                    // Garbage in a header field at the reader's head.
                    let head = word(ctl0 + CTL_HEAD).load(Ordering::Acquire) as usize;
                    let off = (head + 4 * ((x >> 8) as usize % 12)) % RING;
                    word(DATA_OFFSET + (off & !3)).store((x >> 32) as u32, Ordering::Relaxed);
                }
                60 | 61 => {
                    // The head of the ring the service writes, and flags.
                    let off = [CTL_HEAD, CTL_READER_ASLEEP, CTL_TAIL + 4][(x >> 8) as usize % 3];
                    word(ctl0 + CTL_LEN + off).store((x >> 32) as u32, Ordering::Relaxed);
                }
                _ => {
                    // Any word of the region.
                    let off = ((x >> 8) as usize % len) & !3;
                    word(off).store((x >> 32) as u32, Ordering::Relaxed);
                }
            }
        }
        unreachable!()
    });
    let (mut p, mut c) = r.split(Side::Service, MAX_BODY);
    let (mut frames, mut markers, mut errors, mut pushed, mut perrors) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0u8; MAX_BODY as usize];
    let t0 = Instant::now();
    let mut i = 0u64;
    // At least 2,000,000 reads, and on until both paths were exercised
    // (on a loaded machine the child may get little time at first).
    while t0.elapsed() < Duration::from_secs(60)
        && (i < 2_000_000 || frames == 0 || errors == 0 || pushed == 0)
    {
        i += 1;
        match c.next_header() {
            Ok(None) => {}
            Ok(Some(Next::Marker)) => markers += 1,
            Ok(Some(Next::Frame(h))) => {
                // Only ever a valid header, whose record was published.
                assert!(Header::decode(&h.encode(), MAX_BODY).is_ok());
                assert!(record_len(h.body_len as usize) <= RING);
                c.take_body(&mut buf[..h.body_len as usize]).unwrap();
                frames += 1;
            }
            Err(e) => {
                assert_eq!(e.errno(), Errno::EPROTO, "{e}");
                errors += 1;
                c.resync();
            }
        }
        if i.is_multiple_of(4) {
            match p.push(&req(i, 40).encode(), &[7; 40]) {
                Ok(_) => pushed += 1,
                Err(e) => {
                    assert!(matches!(e, ShmError::BadIndex("head", _, _)), "{e}");
                    perrors += 1;
                    p.resync();
                }
            }
        }
    }
    let st = reap(child, 5, true);
    assert!(
        libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL,
        "child status {st:#x}"
    );
    eprintln!(
        "hostile: {i} reads: {frames} frames, {markers} markers, {errors} errors; {pushed} pushes, {perrors} errors"
    );
    assert!(
        frames > 0 && errors > 0 && pushed > 0,
        "both paths exercised"
    );
}

#[test]
fn ping_pong_between_two_processes() {
    let mut r = Region::create(RING).unwrap();
    let fd = r.take_fd().unwrap();
    let n = 2_000u64;
    let child = fork_child(|| {
        let Ok(peer) = Region::attach(fd, RING) else {
            return 2;
        };
        let (mut p, mut c) = peer.split(Side::Service, MAX_BODY);
        let mut buf = [0u8; 64];
        let t0 = Instant::now();
        let mut seen = 0;
        while seen < n {
            if t0.elapsed() > Duration::from_secs(60) {
                return 3;
            }
            match c.next_header() {
                // SAFETY: no preconditions (lets a peer on this core run).
                Ok(None) => unsafe {
                    libc::sched_yield();
                },
                Ok(Some(Next::Frame(h))) => {
                    let b = &mut buf[..h.body_len as usize];
                    if c.take_body(b).is_err() || h.id != seen {
                        return 4;
                    }
                    let mut rep = h;
                    rep.kind = FrameKind::Reply;
                    rep.capacity = 0;
                    rep.result = h.id + 1;
                    while matches!(p.push(&rep.encode(), b), Ok(Push::Full)) {}
                    seen += 1;
                }
                _ => return 5,
            }
        }
        0
    });
    let (mut p, mut c) = r.split(Side::Client, MAX_BODY);
    let t0 = Instant::now();
    for id in 0..n {
        push_ok(&mut p, id, 16);
        let (h, b) = loop {
            if let Some(Record::Frame(h, b)) = c.pop().unwrap() {
                break (h, b);
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "no reply to {id}");
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        };
        assert_eq!((h.kind, h.id, h.result), (FrameKind::Reply, id, id + 1));
        assert_eq!(b, body(id, 16));
    }
    let st = reap(child, 60, false);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
        "child status {st:#x}"
    );
}

/// 512-byte blocks the memfd `fd` holds (its pages in memory).
fn memfd_blocks(fd: &OwnedFd) -> i64 {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat into a writable stat.
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    st.st_blocks
}

/// A producer whose reader read everything frees its ring's pages
/// (the memfd holds only the control page then); with a record unread it
/// frees nothing; the ring works on afterwards, across the freed pages
/// and around the end.
#[test]
fn give_back_frees_a_read_ring_and_only_then() {
    const BIG: usize = 16 * 4096;
    let mut r = Region::create(BIG).unwrap();
    let fd = r.take_fd().unwrap();
    let mine = fd.try_clone().unwrap();
    let peer = Region::attach(fd, BIG).unwrap();
    let (mut p, _) = r.split(Side::Client, MAX_BODY);
    let (_, mut c) = peer.split(Side::Service, MAX_BODY);
    let page_blocks = 4096 / 512;
    for id in 0..10 {
        push_ok(&mut p, id, 4000);
    }
    for id in 0..9 {
        assert_eq!(pop_frame(&mut c).1, body(id, 4000));
    }
    let written = memfd_blocks(&mine);
    assert!(written >= 11 * page_blocks, "{written} blocks");
    assert_eq!(p.give_back(), Ok(false), "a record is unread");
    assert_eq!(memfd_blocks(&mine), written);
    assert_eq!(pop_frame(&mut c).1, body(9, 4000));
    assert_eq!(p.give_back(), Ok(true));
    assert_eq!(memfd_blocks(&mine), page_blocks, "only the control page");
    // On from index 10 × 4048, over the freed pages and around the end.
    for id in 10..40 {
        push_ok(&mut p, id, 4000);
        assert_eq!(pop_frame(&mut c).1, body(id, 4000));
    }
    assert_eq!(c.pop(), Ok(None));
}
