//! Hostile submission: tries to reach the network. It connects over TCP to
//! a listener the suite opened on the host (on loopback and on the host's
//! own address), with a short timeout each, says what happened, and exits.
//! It sends one line if a connection is made, so the suite can tell.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const TARGETS: &str = "@TARGETS@";

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-net\0".as_ptr()) };
    let mut out = std::io::stdout();
    for target in TARGETS.split(',').filter(|t| !t.is_empty()) {
        let Ok(addr) = target.parse::<SocketAddr>() else {
            continue;
        };
        let result = match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(mut stream) => {
                let _ = stream.write_all(b"phoned home\n");
                String::from("connected")
            }
            Err(e) => format!("failed: {e}"),
        };
        let _ = writeln!(out, "connect {addr}: {result}");
    }
}
