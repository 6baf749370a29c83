//! Hostile submission: a fork bomb, bounded so that it cannot take the
//! machine down even with no sandbox: every process forks at most FAN_OUT
//! children down to DEPTH levels (1 + 12 + 144 + 1728 = 1885 processes in
//! all), stops forking at the first failure (and says so on stderr), and every process exits by
//! itself LIFETIME after the first one started.

use std::time::{Duration, Instant};

const FAN_OUT: u32 = 12;
const DEPTH: u32 = 3;
const LIFETIME: Duration = Duration::from_secs(30);

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-fork\0".as_ptr()) };
    let start = Instant::now();
    let mut level = 0;
    let mut children = 0;
    let mut is_root = true;
    while level < DEPTH && children < FAN_OUT && start.elapsed() < LIFETIME {
        // SAFETY: single-threaded; the child only sleeps and _exits.
        match unsafe { libc::fork() } {
            0 => {
                is_root = false;
                level += 1;
                children = 0;
            }
            -1 => {
                eprintln!("fork refused: {}", std::io::Error::last_os_error());
                break;
            }
            _ => children += 1,
        }
    }
    while let Some(left) = LIFETIME.checked_sub(start.elapsed()) {
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
    if !is_root {
        // SAFETY: ends this forked copy without running the parent's exit code.
        unsafe { libc::_exit(0) };
    }
}
