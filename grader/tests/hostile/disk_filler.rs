//! Hostile submission: fills its working directory before it does anything
//! else (its first line of output comes after). It ignores SIGXFSZ (so that a file-size limit shows as EFBIG, not a
//! death), writes files of 96 MiB (`cgh-fill-N`), moves on to the next file
//! when one is refused as too large, and stops at the first other error or
//! at 1 GiB in all. It says where it wrote (`fill dir: PATH`) and what
//! stopped each file (`refused: ...`), then holds until LIFETIME is over.

use std::io::Write;
use std::time::{Duration, Instant};

const LIFETIME: Duration = Duration::from_secs(60);
const FILE: usize = 96 << 20;
const TOTAL: usize = 1 << 30;
const BLOCK: usize = 1 << 20;

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes;
    // ignoring SIGXFSZ only turns the limit's signal into an EFBIG error.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, b"cgh-disk\0".as_ptr());
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    let start = Instant::now();
    let block = vec![b'F'; BLOCK];
    let mut written = 0;
    let mut i = 0;
    'fill: while written < TOTAL && start.elapsed() < LIFETIME {
        let mut file = match std::fs::File::create(format!("cgh-fill-{i}")) {
            Ok(file) => file,
            Err(e) => {
                eprintln!("refused: cannot create cgh-fill-{i}: {e}");
                break;
            }
        };
        i += 1;
        for _ in 0..FILE / BLOCK {
            if let Err(e) = file.write_all(&block) {
                eprintln!("refused: cgh-fill-{} after {written} bytes: {e}", i - 1);
                if e.raw_os_error() == Some(libc::EFBIG) {
                    continue 'fill;
                }
                break 'fill;
            }
            written += BLOCK;
        }
    }
    eprintln!("wrote {written} bytes");
    // Only now a line on stdout: the grader reads it and goes on.
    let cwd = std::env::current_dir().unwrap_or_default();
    println!("fill dir: {}", cwd.display());
    while let Some(left) = LIFETIME.checked_sub(start.elapsed()) {
        std::thread::sleep(left.min(Duration::from_secs(1)));
    }
}
