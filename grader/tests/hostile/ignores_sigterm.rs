//! Hostile submission: ignores SIGTERM (and the other polite signals), says
//! `ready`, then alternates spinning and sleeping until LIFETIME is over.

use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-noterm\0".as_ptr()) };
    let start = Instant::now();
    for signal in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    println!("ready");
    while start.elapsed() < LIFETIME {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(10) {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
