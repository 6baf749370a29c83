//! Hostile submission: takes memory that `RLIMIT_DATA` does not count:
//! shared anonymous mappings (`MAP_SHARED | MAP_ANONYMOUS`, the kind a
//! process shares with its children) of 256 MiB each, populated by the
//! kernel at once (`MAP_POPULATE`), up to 4 GiB, saying how far it got
//! (`touched N MiB`) after each. Then it holds until LIFETIME is over. Only
//! a limit on the test's memory as a whole (a memory cgroup) stops it
//! before its own cap; without one it passes 2 GiB in about 2 s.

use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);
const TOTAL: usize = 4 << 30;
const CHUNK: usize = 256 << 20;

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-shmem\0".as_ptr()) };
    let start = Instant::now();
    let mut touched = 0;
    while touched < TOTAL && start.elapsed() < LIFETIME {
        // SAFETY: a fresh anonymous mapping, never unmapped (it is held).
        let chunk = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHUNK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if chunk == libc::MAP_FAILED {
            eprintln!("mmap refused: {}", std::io::Error::last_os_error());
            break;
        }
        touched += CHUNK;
        eprintln!("touched {} MiB", touched >> 20);
    }
    while let Some(left) = LIFETIME.checked_sub(start.elapsed()) {
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
}
