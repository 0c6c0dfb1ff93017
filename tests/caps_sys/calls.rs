//! Every call's rules, exercised in this process through the exported C
//! functions.

use super::*;

#[test]
fn argument_and_state_errors() {
    setup();
    let (uid, gid) = me();
    let long63 = "n".repeat(63);
    let long64 = "n".repeat(64);
    assert_eq!(service("", uid, gid, 0), Err(libc::EINVAL));
    assert_eq!(service("a/b", uid, gid, 0), Err(libc::EINVAL));
    assert_eq!(service("a-b", uid, gid, 0), Err(libc::EINVAL));
    assert_eq!(service(&long64, uid, gid, 0), Err(libc::ENAMETOOLONG));
    assert_eq!(client(&long64, uid, gid, 0), Err(libc::ENAMETOOLONG));
    assert_eq!(client("x y", ANY, ANY, 0), Err(libc::EINVAL));
    // SAFETY: NULL names are refused.
    unsafe {
        assert_eq!(caps_sys_service(std::ptr::null(), uid, gid, 0, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_client(std::ptr::null(), uid, gid, 0, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
    }
    assert_eq!(
        client("err.none", ANY, ANY, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );

    // A 63-byte name works (with a short enough LIBCAPS_DIR).
    let s63 = service(&long63, ANY, ANY, CAPF_WORLD).unwrap();
    close(s63).unwrap();

    let s = Svc::start("err.svc", CAPF_ANYCLIENT | CAPF_WORLD, Some(b"ok"));
    assert_eq!(
        service("err.svc", uid, gid, CAPF_EXCL_FLAG),
        Err(libc::EEXIST)
    );
    // A wildcard registration matches it too.
    assert_eq!(
        service("err.svc", ANY, ANY, CAPF_EXCL_FLAG),
        Err(libc::EEXIST)
    );
    let c = client("err.svc", uid, gid, CAPF_ANYCLIENT).unwrap();

    assert_eq!(close(9999), Err(libc::EINVAL));
    assert_eq!(put(9999, b"x"), Err(libc::EINVAL));
    assert_eq!(put(s.id, b"x"), Err(libc::EINVAL));
    // SAFETY: negative sizes and NULL buffers are refused.
    unsafe {
        assert_eq!(caps_sys_put(c, b"x".as_ptr() as *mut _, -1), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_put(c, std::ptr::null_mut(), 4), -1);
        assert_eq!(errno(), libc::EINVAL);
        let mut m: caps_msgid = std::mem::zeroed();
        assert_eq!(
            caps_sys_get(c, std::ptr::null_mut(), -1, &mut m, std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
    }
    assert_eq!(put(c, &vec![0u8; 128 * 1024 + 1]), Err(libc::EMSGSIZE));
    assert_eq!(recv(c, 16, false).err(), Some(libc::EAGAIN));
    assert_eq!(libc::EAGAIN, libc::EWOULDBLOCK);
    assert_eq!(recv(9999, 16, false).err(), Some(libc::EINVAL));
    assert_eq!(reply(c, b"x", 1), Err(libc::EINVAL));
    assert_eq!(reply(9999, b"x", 1), Err(libc::EINVAL));
    // SAFETY: plain calls.
    unsafe {
        assert_eq!(caps_sys_getgen(s.id), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_setgen(c, 5), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_getgen(9999), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_abort(c, 1, 0), CAPS_ABORT_NOTIMPL);
        assert_eq!(caps_sys_abort(9999, 1, 0), -1);
    }
    // The service thread is inside caps_sys_wait: replying to an id it
    // never retrieved is refused.
    assert_eq!(reply(s.id, b"x", 424242), Err(libc::EINVAL));
    close(c).unwrap();
    assert_eq!(close(c), Err(libc::EINVAL));
}

const CAPF_EXCL_FLAG: i32 = caps::abi::CAPF_EXCL;

#[test]
fn one_thread_is_client_of_its_own_service() {
    setup();
    let (uid, gid) = me();
    let s = service("self", uid, gid, CAPF_ANYCLIENT).unwrap();
    let c = client("self", uid, gid, CAPF_ANYCLIENT).unwrap();
    let id = put(c, b"me").unwrap();
    let req = recv(s, 16, false).unwrap();
    assert_eq!((req.state, &req.data[..]), (CAPMS_REQUEST, &b"me"[..]));
    reply(s, b"you", req.id).unwrap();
    let rep = recv(c, 16, true).unwrap();
    assert_eq!((rep.id, &rep.data[..]), (id, &b"you"[..]));
    assert_eq!(recv(s, 16, true).unwrap().state, CAPMS_DISPOSE);
    close(c).unwrap();
    close(s).unwrap();
}

#[test]
fn request_reply_dispose_with_credentials() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("rrd", CAPF_ANYCLIENT, Some(b"good"));
    let c = client("rrd", uid, gid, CAPF_ANYCLIENT).unwrap();
    let mut buf = *b"xyz";
    let id = put(c, &buf).unwrap();
    // The data was copied: the buffer may change at once.
    buf.copy_from_slice(b"zzz");
    let req = s.next();
    assert_eq!(
        (req.state, req.size, &req.data[..]),
        (CAPMS_REQUEST, 3, &b"xyz"[..])
    );
    assert_eq!(req.cred.pid, std::process::id() as i32);
    assert_eq!((req.cred.uid, req.cred.euid, req.cred.gid), (uid, uid, gid));
    assert_eq!(req.cred.cacheid, 0);
    let rep = wait(c);
    assert_eq!(
        (rep.state, rep.id, &rep.data[..]),
        (CAPMS_REPLY, id, &b"good"[..])
    );
    // Reading the reply sends the service its dispose notice.
    let d = s.next();
    assert_eq!((d.state, d.id, d.size), (CAPMS_DISPOSE, req.id, 0));
    assert_eq!(d.cred.pid, std::process::id() as i32);
    // Ids of one client are distinct.
    let id2 = put(c, b"again").unwrap();
    assert_ne!(id2, id);
    assert_eq!(wait(c).id, id2);
    close(c).unwrap();
}

#[test]
fn client_close_turns_held_requests_into_dispose_notices() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("held", CAPF_ANYCLIENT, None);
    let c = client("held", uid, gid, CAPF_ANYCLIENT).unwrap();
    put(c, b"one").unwrap();
    put(c, b"two").unwrap();
    let r1 = s.next();
    let r2 = s.next();
    assert_eq!((r1.state, r2.state), (CAPMS_REQUEST, CAPMS_REQUEST));
    close(c).unwrap();
    let mut ids = [s.next(), s.next()];
    ids.sort_by_key(|m| m.id);
    assert!(ids.iter().all(|m| m.state == CAPMS_DISPOSE));
    assert_eq!((ids[0].id, ids[1].id), (r1.id.min(r2.id), r1.id.max(r2.id)));
    // Replying to a request whose client left: nothing to do, no error
    // before the notice was read, EINVAL after.
    assert_eq!(reply(s.id, b"late", r1.id), Err(libc::EINVAL));
    s.nothing_more();
}

#[test]
fn service_close_auto_replies_and_later_puts_fail() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("sclose", CAPF_ANYCLIENT, None);
    let c = client("sclose", uid, gid, CAPF_ANYCLIENT).unwrap();
    let a = put(c, b"held").unwrap();
    s.next();
    let b = put(c, b"maybe unread").unwrap();
    drop(s);
    let mut got = [wait(c), wait(c)];
    got.sort_by_key(|m| m.id);
    for (m, id) in got.iter().zip([a, b]) {
        assert_eq!((m.state, m.id, m.size), (CAPMS_REPLY, id, 0));
    }
    assert_eq!(put(c, b"x"), Err(libc::ENOTCONN));
    assert_eq!(recv(c, 16, true).err(), Some(libc::ENOTCONN));
    assert_eq!(
        client("sclose", uid, gid, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );
    close(c).unwrap();
}

#[test]
fn more_than_maxinprog_requests_is_enobufs() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("nobufs", CAPF_ANYCLIENT, None);
    let c = client("nobufs", uid, gid, CAPF_ANYCLIENT).unwrap();
    // As in the kernel (`ci_cmsgcount > CAPS_MAXINPROG`): 129 may be
    // outstanding, the 130th put fails.
    let mut reqs = Vec::new();
    for i in 0..129 {
        put(c, format!("{i}").as_bytes()).unwrap();
    }
    assert_eq!(put(c, b"one too many"), Err(libc::ENOBUFS));
    for _ in 0..129 {
        reqs.push(s.next());
    }
    // A reply read frees a slot.
    reply(s.id, b"r", reqs[0].id).unwrap();
    assert_eq!(wait(c).state, CAPMS_REPLY);
    put(c, b"fits again").unwrap();
    assert_eq!(put(c, b"full again"), Err(libc::ENOBUFS));
    close(c).unwrap();
}

#[test]
fn a_message_larger_than_maxsize_stays_queued() {
    setup();
    let (uid, gid) = me();
    let (uid2, gid2) = (uid, gid);
    let id = service("big", uid, gid, CAPF_ANYCLIENT).unwrap();
    // The service answers the client's connection from a thread that
    // waits until the request is there, without reading it.
    let t = std::thread::spawn(move || {
        let c = client("big", uid2, gid2, CAPF_ANYCLIENT).unwrap();
        let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let pid = put(c, &big).unwrap();
        let small = put(c, b"small").unwrap();
        (c, big, pid, small)
    });
    let first = recv(id, 100, true).unwrap();
    let (c, big, pid, small) = t.join().unwrap();
    assert_eq!((first.size, first.state), (300, CAPMS_REQUEST));
    // Still there, same id.
    let again = recv(id, 100, false).unwrap();
    assert_eq!((again.size, again.id), (300, first.id));
    let whole = recv(id, 512, false).unwrap();
    assert_eq!(
        (whole.size, whole.id, &whole.data[..]),
        (300, first.id, &big[..])
    );
    // The next one can be answered without being read.
    let peek = recv(id, 2, false).unwrap();
    assert_eq!(peek.size, 5);
    reply(id, &vec![7u8; 1000], peek.id).unwrap();
    reply(id, b"", whole.id).unwrap();
    // The client's side: a reply larger than its buffer stays queued too.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match recv(c, 10, true) {
            Ok(m) if m.size > 10 => {
                assert_eq!((m.size, m.id), (1000, small));
                let m = recv(c, 2000, false).unwrap();
                assert_eq!(m.data, vec![7u8; 1000]);
                seen.push(m.id);
            }
            Ok(m) => {
                assert_eq!((m.size, m.id), (0, pid));
                seen.push(m.id);
            }
            Err(e) => panic!("{e}"),
        }
    }
    close(c).unwrap();
    close(id).unwrap();
}

#[test]
fn generation_set_by_the_service_is_seen_by_its_clients() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("gen", CAPF_ANYCLIENT, Some(b"g"));
    let c = client("gen", uid, gid, CAPF_ANYCLIENT).unwrap();
    // SAFETY: plain calls.
    unsafe {
        assert_eq!(caps_sys_getgen(c), 0);
        assert_eq!(caps_sys_setgen(s.id, 1_000_000_000_007), 0);
    }
    let t0 = Instant::now();
    // SAFETY: plain call.
    while unsafe { caps_sys_getgen(c) } != 1_000_000_000_007 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    // A client connecting later learns the current generation at once.
    let c2 = client("gen", uid, gid, CAPF_ANYCLIENT).unwrap();
    // SAFETY: plain call.
    assert_eq!(unsafe { caps_sys_getgen(c2) }, 1_000_000_000_007);
    close(c).unwrap();
    close(c2).unwrap();
}

#[test]
fn uid_gid_keys_and_wildcards() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("keys", CAPF_ANYCLIENT, Some(b"k"));
    for (u, g) in [(uid, gid), (ANY, gid), (uid, ANY), (ANY, ANY)] {
        let c = client("keys", u, g, CAPF_ANYCLIENT).unwrap();
        close(c).unwrap();
    }
    assert_eq!(
        client("keys", uid + 1, ANY, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );
    assert_eq!(
        client("keys", ANY, gid + 1, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );
    // A service registered with -1 keys is found only by wildcards.
    let w = Svc::start_keys("keys.any", ANY, ANY, CAPF_WORLD);
    assert_eq!(client("keys.any", uid, ANY, CAPF_WORLD), Err(libc::ENOENT));
    let c = client("keys.any", ANY, ANY, CAPF_WORLD).unwrap();
    close(c).unwrap();
    drop(w);
    drop(s);
}

#[test]
fn access_flags_of_both_sides() {
    setup();
    let (uid, gid) = me();
    // CAPF_USER needs a registered uid.
    let s1 = Svc::start_keys("acc.user", ANY, gid, CAPF_USER);
    assert_eq!(
        client("acc.user", ANY, ANY, CAPF_ANYCLIENT),
        Err(libc::EACCES)
    );
    drop(s1);
    let s2 = Svc::start_keys("acc.group", uid, gid, CAPF_GROUP);
    assert_eq!(client("acc.group", ANY, ANY, CAPF_USER), Err(libc::EACCES));
    let c = client("acc.group", ANY, ANY, CAPF_GROUP).unwrap();
    close(c).unwrap();
    drop(s2);
    let s3 = Svc::start_keys("acc.world", uid, gid, CAPF_WORLD);
    assert_eq!(
        client("acc.world", ANY, ANY, CAPF_USER | CAPF_GROUP),
        Err(libc::EACCES)
    );
    let c = client("acc.world", ANY, ANY, CAPF_WORLD).unwrap();
    close(c).unwrap();
    drop(s3);
}
