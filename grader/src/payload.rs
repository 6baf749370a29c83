//! Deterministic payloads for messages too long to write into a spec: a
//! test sends `payload(n)` and checks that exactly that text came out the
//! other end, and a mismatch says at which byte the text went wrong.

/// The text repeated to build payloads. Each 64-byte block starts with its
/// own block number, so a lost or duplicated chunk shows up as a wrong
/// number rather than as identical-looking text.
const ALPHABET: &[u8; 54] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_";

/// The payload of `len` bytes: printable ASCII, no newline.
pub fn payload(len: usize) -> String {
    let mut out = String::with_capacity(len + 64);
    let mut block = 0usize;
    while out.len() < len {
        out.push_str(&format!("{block:08}:"));
        let fill = 64 - 9;
        for i in 0..fill {
            out.push(ALPHABET[(block + i) % ALPHABET.len()] as char);
        }
        block += 1;
    }
    out.truncate(len);
    out
}

/// Checks that `got` is exactly `payload(len)`; the error says how it differs.
pub fn check(len: usize, got: &str) -> Result<(), String> {
    let want = payload(len);
    if got == want {
        return Ok(());
    }
    let first_diff = want
        .bytes()
        .zip(got.bytes())
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    if got.len() != want.len() && first_diff == want.len().min(got.len()) {
        return Err(format!(
            "{} bytes instead of the {len}-byte payload (identical up to byte {first_diff}, then {})",
            got.len(),
            if got.len() < want.len() { "cut short" } else { "extra bytes" }
        ));
    }
    Err(format!(
        "{} bytes, differing from the {len}-byte payload from byte {first_diff} on (a lost or repeated chunk)",
        got.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_have_the_asked_length_and_no_newline() {
        for len in [0, 1, 63, 64, 65, 4096, 100_000] {
            let p = payload(len);
            assert_eq!(p.len(), len);
            assert!(!p.contains('\n'));
            assert!(check(len, &p).is_ok());
        }
    }

    #[test]
    fn a_cut_or_corrupted_payload_is_explained() {
        let p = payload(10_000);
        let err = check(10_000, &p[..4096]).unwrap_err();
        assert!(
            err.contains("4096 bytes") && err.contains("cut short"),
            "{err}"
        );
        let mut skipped = p[..4096].to_owned();
        skipped.push_str(&p[8192..]);
        let err = check(10_000, &skipped).unwrap_err();
        // Block 64 ("00000064:...") became block 128 ("00000128:..."): they
        // differ from the sixth digit on.
        assert!(err.contains("from byte 4101"), "{err}");
    }
}
