//! The shared-memory transport through the connection layer, both ends
//! in this process over a `socketpair`: a quiet connection gives its
//! region up on both sides (the detach record, issue 17) and its traffic
//! goes on afterwards, frames in flight across the detach included; an
//! old client (no detach offered) keeps its region; a peer that breaks
//! the detach rules loses only its connection.

use std::os::fd::AsRawFd;

use super::*;
use crate::caps::errno::Errno;
use crate::caps::shm::{DETACH, DETACHED, transport_header};
use crate::caps::wire::{
    Frame, FrameKind, HELLO_DETACH, HELLO_LEN, HELLO_SHM, Header, Hello, HelloKind,
};

const VERSION: u16 = 7;
/// Larger than a ring (128 KiB): the big frames of these tests go on the
/// socket behind a marker.
const MAX_BODY: u32 = 200_000;
const BIG: usize = 150_000;

/// Both ends of one connection: the service's and the client's.
struct Ends {
    svc: Service,
    c: Connection,
    cl: Transport,
}

/// A connection whose hellos agreed to shared memory; the client offers
/// detach records when `detach`. `None` when this process has shared
/// memory switched off (`LIBCAPS_SHM=0`).
fn ends(detach: bool) -> Option<Ends> {
    if !shm_enabled() {
        eprintln!("skipped: LIBCAPS_SHM=0");
        return None;
    }
    // SAFETY: plain id query.
    let me = unsafe { libc::geteuid() };
    let mut svc = Service::new("shm_test", "svc".into(), me, VERSION, 4096, MAX_BODY);
    let (client, mut c) = super::tests::pair(&mut svc);
    let status = HELLO_SHM | if detach { HELLO_DETACH } else { 0 };
    let hello = Hello {
        version: VERSION,
        kind: HelloKind::Client,
        max_msgsize: 4096,
        status,
    };
    client::write_all(client.as_raw_fd(), &hello.encode()).unwrap();
    assert_eq!(svc.admit(&mut c, |_, _| true, |_| {}), Admission::Admitted);
    let mut b = [0u8; HELLO_LEN];
    read_exact_timeout(client.as_raw_fd(), &mut b, 5000).unwrap();
    let answer = Hello::decode(&b, HelloKind::Server, VERSION).unwrap();
    assert_eq!(
        answer.status, status,
        "the service agrees to what was offered"
    );
    let cl = client_transport(client, MAX_BODY, true, "shm_test");
    Some(Ends { svc, c, cl })
}

fn body(id: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u64 * 7 + id) as u8).collect()
}

fn request(id: u64, len: usize) -> Header {
    Header {
        capacity: len as u32,
        ..Header::new(FrameKind::Request, id, len as u32)
    }
}

impl Ends {
    /// Run both ends (as their waiters would on readiness) until neither
    /// has more to do; the frames each received, in order.
    fn pump(&mut self) -> (Vec<Frame>, Vec<Frame>) {
        let (mut at_svc, mut at_cl) = (Vec::new(), Vec::new());
        for _ in 0..8 {
            self.cl.flush().unwrap();
            self.c.tx.flush().unwrap();
            self.c.tx.input_ready();
            while let Some(f) = self.c.next_frame(&mut self.svc).unwrap() {
                at_svc.push(f);
            }
            self.c.tx.flush().unwrap();
            self.cl.input_ready();
            while let Some(f) = self.cl.next_frame().unwrap() {
                at_cl.push(f);
            }
        }
        (at_svc, at_cl)
    }

    /// The client sends request `id` of `len` bytes (not yet flushed).
    fn send_request(&mut self, id: u64, len: usize) {
        self.cl.push_frame(&request(id, len), &body(id, len));
    }

    /// The service answers request `id` with `len` bytes.
    fn send_reply(&mut self, id: u64, len: usize) {
        let h = Header::new(FrameKind::Reply, id, len as u32);
        self.c.send(Some(&mut self.svc), &h, &body(!id, len));
    }

    /// Requests of `lens` bytes (ids from `first`), each answered with as
    /// many bytes: everything arrives, in order, intact.
    fn round_trips(&mut self, first: u64, lens: &[usize]) {
        for (i, &len) in lens.iter().enumerate() {
            self.send_request(first + i as u64, len);
        }
        let (reqs, none) = self.pump();
        assert!(none.is_empty());
        check(&reqs, first, lens, false);
        for (i, &len) in lens.iter().enumerate() {
            self.send_reply(first + i as u64, len);
        }
        let (none, replies) = self.pump();
        assert!(none.is_empty());
        check(&replies, first, lens, true);
    }

    /// The service's quiet sweep, twice (the first marks the rings):
    /// true if the connection went dormant.
    fn quiet(&mut self) -> bool {
        assert!(!self.c.tx.quiet(), "the first sweep only marks");
        self.c.tx.quiet()
    }
}

/// `got` are the frames `first..` of `lens` bytes (replies: `reply`).
fn check(got: &[Frame], first: u64, lens: &[usize], reply: bool) {
    assert_eq!(got.len(), lens.len());
    for (i, ((h, b), &len)) in got.iter().zip(lens).enumerate() {
        let id = first + i as u64;
        assert_eq!(h.id, id);
        assert_eq!(
            h.kind,
            if reply {
                FrameKind::Reply
            } else {
                FrameKind::Request
            }
        );
        assert!(*b == body(if reply { !id } else { id }, len), "frame {id}");
    }
}

/// KiB of the region mapped at `span` in this process's resident set
/// (its `Rss` in `/proc/self/smaps`: pages this process maps, not those
/// the memfd holds); `None` when no region is mapped there any more.
fn resident(span: (usize, usize)) -> Option<u64> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let start = format!("{:x}-", span.0);
    let mut lines = smaps.lines();
    lines.find(|l| l.starts_with(&start) && l.contains("libcaps-ring"))?;
    let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
    Some(rss.split_whitespace().nth(1).unwrap().parse().unwrap())
}

/// The inode of the memfd mapped at `span` (the mappings' header line of
/// `/proc/self/smaps`: start-end perms offset dev inode path).
fn inode_at(span: (usize, usize)) -> u64 {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let start = format!("{:x}-", span.0);
    let l = maps.lines().find(|l| l.starts_with(&start)).unwrap();
    l.split_whitespace().nth(4).unwrap().parse().unwrap()
}

/// Does this process still map the memfd of inode `ino` anywhere? (By
/// inode, not address: a test running beside may map a region of its
/// own where ours was.)
fn inode_mapped(ino: u64) -> bool {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().any(|l| {
        l.contains("libcaps-ring") && l.split_whitespace().nth(4) == Some(&ino.to_string())
    })
}

/// Small frames, and big ones (on the socket behind a marker), both ways.
const MIX: [usize; 4] = [100, BIG, 8, 3000];

/// After its traffic, a quiet connection's region leaves the client too:
/// the service's sweep sends the detach record, the client (at its next
/// read) unmaps the region and answers detached, the service unmaps it
/// then, and the memfd, mapped by nobody, is freed. The next request
/// comes with a new region; this happens again and again.
#[test]
fn a_quiet_connection_gives_its_region_up_on_both_sides() {
    let Some(mut e) = ends(true) else { return };
    for round in 0..3u64 {
        e.round_trips(100 * round + 1, &MIX);
        let cl = e.cl.region_span().expect("the client maps a region");
        let svc = e.c.tx.region_span().expect("the service maps it");
        let ino = inode_at(cl);
        assert_eq!(inode_at(svc), ino, "one memfd, mapped twice");
        assert!(e.quiet(), "quiet: the service goes dormant");
        assert_eq!(resident(svc), Some(0), "the service dropped its view");
        // What the client kept: the control page and ring 0's pages.
        let kept = resident(cl).unwrap();
        assert!(kept >= 8, "{kept} KiB");
        let (none, none2) = e.pump();
        assert!(none.is_empty() && none2.is_empty());
        assert_eq!(e.cl.region_span(), None, "the client let its region go");
        assert_eq!(e.c.tx.region_span(), None, "so did the service");
        assert!(!inode_mapped(ino), "both mappings of the memfd are gone");
        assert!(e.cl.shm_agreed() && e.c.tx.shm_agreed());
    }
    e.round_trips(1000, &MIX);
    assert!(e.cl.region_span().is_some(), "a new region again");
}

/// Frames in flight both ways when the detach record goes: requests the
/// client writes to its ring before it reads the detach record (a big
/// one on the socket behind a marker) are read by the service, whose
/// replies, after its detach record, come on the socket; then a new
/// region carries the next ones. Nothing is lost or reordered.
#[test]
fn frames_in_flight_across_a_detach_arrive_in_order() {
    let Some(mut e) = ends(true) else { return };
    e.round_trips(1, &[64]);
    assert!(e.quiet());
    // The detach record is on the client's socket, not read yet.
    let lens = [64, BIG, 200];
    for (i, &len) in lens.iter().enumerate() {
        e.send_request(10 + i as u64, len);
    }
    e.cl.flush().unwrap();
    e.c.tx.input_ready();
    let mut reqs = Vec::new();
    while let Some(f) = e.c.next_frame(&mut e.svc).unwrap() {
        reqs.push(f);
    }
    check(&reqs, 10, &lens, false);
    for (i, &len) in lens.iter().enumerate() {
        e.send_reply(10 + i as u64, len);
    }
    let (none, replies) = e.pump();
    assert!(none.is_empty());
    check(&replies, 10, &lens, true);
    assert_eq!(e.cl.region_span(), None);
    assert_eq!(e.c.tx.region_span(), None);
    e.round_trips(20, &MIX);
    assert!(e.cl.region_span().is_some());
}

/// A client that did not offer to take detach records (an older library)
/// gets none: the service only goes dormant, the client keeps its
/// region, and the next round trip goes through the same rings.
#[test]
fn an_old_client_gets_no_detach_and_keeps_its_region() {
    let Some(mut e) = ends(false) else { return };
    e.round_trips(1, &MIX);
    let span = e.cl.region_span().unwrap();
    assert!(e.quiet());
    let (none, none2) = e.pump();
    assert!(none.is_empty() && none2.is_empty());
    assert_eq!(e.cl.region_span(), Some(span));
    e.round_trips(10, &MIX);
    assert_eq!(e.cl.region_span(), Some(span));
}

/// A detach record before the client's region was acknowledged, or a
/// detached record the service did not ask for: that connection is
/// dropped (`EPROTO`), and only it.
#[test]
fn detach_records_out_of_turn_drop_the_connection() {
    let Some(mut e) = ends(true) else { return };
    e.send_request(1, 64);
    e.cl.flush().unwrap();
    e.c.tx.push_bytes(&transport_header(DETACH));
    e.c.tx.flush().unwrap();
    e.cl.input_ready();
    assert_eq!(e.cl.next_frame(), Err(ReadEnd::Errno(Errno::EPROTO)));

    let Some(mut e) = ends(true) else { return };
    e.round_trips(1, &[64]);
    e.cl.push_bytes(&transport_header(DETACHED));
    e.cl.flush().unwrap();
    e.c.tx.input_ready();
    assert_eq!(
        e.c.next_frame(&mut e.svc).map(|f| f.is_some()),
        Err(ReadEnd::Errno(Errno::EPROTO))
    );
}

/// Issue 17: the payload buffer of a frame the face consumed serves the
/// next frame read from the ring (no allocation per frame), at most
/// `SPARE_BODY_MAX` bytes of it; a quiet connection keeps none.
#[test]
fn ring_frames_reuse_consumed_payload_buffers() {
    let Some(mut e) = ends(false) else { return };
    e.round_trips(1, &[64]);
    e.send_request(2, 64);
    e.send_request(3, 64);
    let (mut reqs, _) = e.pump();
    assert_eq!(reqs.len(), 2);
    let (_, first) = reqs.remove(0);
    let kept = first.as_ptr();
    e.c.tx.recycle(first);
    assert_eq!(e.c.tx.spare_bodies(), 1);
    e.send_request(4, 48);
    let (reqs, _) = e.pump();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].1, body(4, 48));
    assert_eq!(reqs[0].1.as_ptr(), kept, "the consumed buffer was reused");
    assert_eq!(e.c.tx.spare_bodies(), 0);
    // A big one is not kept.
    e.c.tx.recycle(vec![0; 4096]);
    assert_eq!(e.c.tx.spare_bodies(), 0);
    e.c.tx.recycle(vec![0; 64]);
    e.c.tx.quiet_bodies();
    assert_eq!(e.c.tx.spare_bodies(), 0);
    assert_eq!(e.c.tx.buffer_bytes(), 0);
}
