//! Hostile submission: a classic daemon. Forks, the child starts a new
//! session and forks again, the middle process exits, and the grandchild,
//! re-parented away from the program and out of its process group and
//! session, lives on (keeping stdout and stderr open) until LIFETIME is over.
//! The original process says `ready` and exits 0.

use std::io::Write;
use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-daemon\0".as_ptr()) };
    let start = Instant::now();
    // SAFETY: single-threaded; the children only call async-signal-safe
    // functions, sleep and write.
    match unsafe { libc::fork() } {
        -1 => std::process::exit(1),
        0 => unsafe {
            libc::setsid();
            match libc::fork() {
                0 => {
                    libc::signal(libc::SIGHUP, libc::SIG_IGN);
                    while let Some(left) = LIFETIME.checked_sub(start.elapsed()) {
                        let _ = writeln!(std::io::stderr(), "daemon {} alive", libc::getpid());
                        std::thread::sleep(left.min(Duration::from_secs(5)));
                    }
                    libc::_exit(0);
                }
                _ => libc::_exit(0),
            }
        },
        middle => {
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(middle, &mut status, 0) };
            println!("ready");
        }
    }
}
