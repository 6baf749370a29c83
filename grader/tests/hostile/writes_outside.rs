//! Hostile submission: tries to write outside its directory. The test fills
//! in the placeholders (`"@NAME@"`, quotes included) with string literals:
//! a canary directory of the host, the course root, and a nonce. Each attempt
//! says `escaped:` or `blocked:`.

use std::fs::{File, OpenOptions};
use std::io::Write;

const CANARY_DIR: &str = "@CANARY_DIR@";
const COURSE: &str = "@COURSE@";
const NONCE: &str = "@NONCE@";

fn attempt(what: &str, result: std::io::Result<()>) {
    match result {
        Ok(()) => println!("escaped: {what}"),
        Err(e) => println!("blocked: {what}: {e}"),
    }
}

fn create(path: &str) -> std::io::Result<()> {
    File::create(path)?.write_all(b"written by a hostile submission\n")
}

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-escape\0".as_ptr()) };
    let canary = format!("{CANARY_DIR}/canary.txt");
    attempt(
        &format!("overwrite {canary}"),
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&canary)
            .and_then(|mut f| f.write_all(b"overwritten by a hostile submission\n")),
    );
    for path in [
        format!("{CANARY_DIR}/cgh-new-{NONCE}"),
        format!("/tmp/cgh-escape-{NONCE}"),
        format!("/var/tmp/cgh-escape-{NONCE}"),
        format!("{COURSE}/cgh-escape-{NONCE}"),
    ] {
        attempt(&format!("create {path}"), create(&path));
    }
}
