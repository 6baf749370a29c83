//! Hostile build script (`build.rs` at the submission's crate root, with
//! `build = "build.rs"` in its Cargo.toml): creates a marker file the test
//! names (the placeholder `"@MARKER@"`, quotes included) and then hangs
//! until LIFETIME is over. The grader builds only `src/` with the course's
//! own manifest, so this must never run. Only std: the starter has no
//! build-dependencies.

use std::time::{Duration, Instant};

const MARKER: &str = "@MARKER@";
const LIFETIME: Duration = Duration::from_secs(60);

extern "C" {
    fn prctl(option: i32, ...) -> i32;
}

fn main() {
    // SAFETY: PR_SET_NAME (15) with a NUL-terminated name of at most 16 bytes.
    unsafe { prctl(15, b"cgh-buildrs\0".as_ptr()) };
    let start = Instant::now();
    let _ = std::fs::write(MARKER, "a submission's build script ran\n");
    while let Some(left) = LIFETIME.checked_sub(start.elapsed()) {
        std::thread::sleep(left.min(Duration::from_millis(500)));
    }
}
