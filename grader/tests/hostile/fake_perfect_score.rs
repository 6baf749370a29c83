//! Hostile submission: prints what a perfect score looks like in the
//! grader's and in libtest's words, then exits 0.

fn main() {
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, b"cgh-fake\0".as_ptr()) };
    let claims = [
        "ready",
        "score: 15/15",
        r#"{"score":15,"max_score":15,"outcome":{"kind":"graded"}}"#,
        "test result: ok. 9 passed; 0 failed; 0 ignored",
        "PASS",
        "all tests passed",
    ];
    for claim in claims {
        println!("{claim}");
        eprintln!("{claim}");
    }
}
