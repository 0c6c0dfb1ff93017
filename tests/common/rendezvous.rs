//! A private CAPS rendezvous directory for the programs of one test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `TEMP/PREFIX-TAG-PID`, made afresh with `mode` and removed when
/// dropped; the programs it runs find their services there
/// (`LIBCAPS_DIR`).
pub struct Rendezvous(PathBuf);

impl Rendezvous {
    pub fn new(prefix: &str, tag: &str, mode: u32) -> Rendezvous {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("{prefix}-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        Rendezvous(d)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `prog` run with this directory, no standard input, its output
    /// piped.
    pub fn command(&self, prog: &Path) -> Command {
        let mut c = Command::new(prog);
        c.env("LIBCAPS_DIR", &self.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
}

impl std::ops::Deref for Rendezvous {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
