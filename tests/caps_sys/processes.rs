//! Other users, `fork()` and signals.

use super::*;

#[test]
fn other_users_get_eperm_and_eacces() {
    setup();
    if me().0 != 0 {
        eprintln!("skipped: needs root to become another user");
        return;
    }
    let s = Svc::start_keys("acc.root", 0, 0, CAPF_USER | CAPF_GROUP);
    let w = Svc::start_keys("acc.all", 0, 0, CAPF_ANYCLIENT);
    let code = in_child(|| {
        // SAFETY: plain calls in the single-threaded child.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return 10;
            }
        }
        if service("x.nobody", 0, ANY, CAPF_WORLD) != Err(libc::EPERM) {
            return 11;
        }
        if service("x.nobody", ANY, 0, CAPF_WORLD) != Err(libc::EPERM) {
            return 12;
        }
        if client("acc.root", 0, 0, CAPF_ANYCLIENT) != Err(libc::EACCES) {
            return 13;
        }
        match client("acc.all", 0, 0, CAPF_ANYCLIENT) {
            Ok(c) => {
                let _ = close(c);
            }
            Err(_) => return 14,
        }
        match service("x.nobody", 65534, 65534, CAPF_WORLD) {
            Ok(id) => {
                let _ = close(id);
            }
            Err(_) => return 15,
        }
        0
    });
    assert_eq!(code, 0);
    drop(s);
    drop(w);
}

#[test]
fn forked_child_gets_placeholders_and_reconnects() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("forky", CAPF_ANYCLIENT, Some(b"pong"));
    let c = client("forky", uid, gid, CAPF_ANYCLIENT).unwrap();
    let nf = client("forky", uid, gid, CAPF_ANYCLIENT | CAPF_NOFORK).unwrap();
    let own = service("forky.own", uid, gid, CAPF_ANYCLIENT).unwrap();
    let code = in_child(|| {
        if put(c, b"x") != Err(libc::ENOTCONN) {
            return 1;
        }
        // SAFETY: plain call.
        if unsafe { caps_sys_getgen(c) } != -1 || errno() != libc::ENOTCONN {
            return 2;
        }
        if recv(c, 16, false).err() != Some(libc::ENOTCONN) {
            return 3;
        }
        if recv(own, 16, false).err() != Some(libc::ENOTCONN) {
            return 4;
        }
        if put(nf, b"x") != Err(libc::EINVAL) {
            return 5;
        }
        if close(c).is_err() || close(own).is_err() {
            return 6;
        }
        let Ok(c2) = client("forky", uid, gid, CAPF_ANYCLIENT) else {
            return 7;
        };
        if put(c2, b"ping").is_err() {
            return 8;
        }
        match recv(c2, 16, true) {
            Ok(m) if m.data == b"pong" => 0,
            _ => 9,
        }
    });
    assert_eq!(code, 0);
    // The parent's entries are untouched, and the child's close did not
    // remove the parent's service.
    put(c, b"still").unwrap();
    assert_eq!(wait(c).data, b"pong");
    assert!(
        std::fs::read_dir(
            std::env::var_os("LIBCAPS_DIR")
                .unwrap()
                .into_string()
                .unwrap()
                + "/sys"
        )
        .unwrap()
        .any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("forky.own,"))
    );
    close(c).unwrap();
    close(nf).unwrap();
    close(own).unwrap();
    drop(s);
}

#[test]
fn wait_is_interrupted_by_a_signal() {
    setup();
    let (uid, gid) = me();
    let id = service("intr", uid, gid, CAPF_ANYCLIENT).unwrap();
    // (`setup` gave SIGUSR1 a no-op handler.)
    let (tx, rx) = channel();
    let t = std::thread::spawn(move || tx.send(recv(id, 16, true).err()).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.is_finished(), "wait returned with nothing to get");
    assert_eq!(interrupt(&t, &rx), Some(Some(libc::EINTR)));
    t.join().unwrap();
    close(id).unwrap();
    // Waiting for a service is interruptible too.
    let (tx, rx) = channel();
    let t = std::thread::spawn(move || {
        let r = client("intr.never", uid, gid, CAPF_WAITSVC).err();
        tx.send(r).unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.is_finished(), "CAPF_WAITSVC returned without a service");
    assert_eq!(interrupt(&t, &rx), Some(Some(libc::EINTR)));
    t.join().unwrap();
}
