//! Signal names as specs and reports write them.

use std::str::FromStr;

use nix::sys::signal::Signal;

/// Parses `SIGINT`, `INT` or `int` into a signal.
pub fn parse(name: &str) -> Result<Signal, String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&full).map_err(|_| format!("unknown signal {name:?} (write it like SIGINT)"))
}

/// The conventional name, `SIGINT`.
pub fn name(signal: Signal) -> &'static str {
    signal.as_str()
}

/// The name of a raw signal number, or the number when it has none.
pub fn describe(signo: i32) -> String {
    Signal::try_from(signo).map_or_else(|_| format!("signal {signo}"), |s| s.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_prefix() {
        assert_eq!(parse("SIGINT"), Ok(Signal::SIGINT));
        assert_eq!(parse("usr1"), Ok(Signal::SIGUSR1));
        assert!(parse("SIGNOPE").is_err());
        assert_eq!(describe(15), "SIGTERM");
    }
}
