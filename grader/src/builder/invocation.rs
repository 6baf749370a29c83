//! How cargo compiles the task's binary crate, recorded once per task and
//! replayed with `rustc` for every submission.
//!
//! Cargo's own work per build (reading the manifest and lock file, the
//! registry index, every dependency's fingerprint, taking the target
//! directory's lock) costs as much as compiling a small crate, and its
//! target directory admits one build at a time. Once the dependencies are
//! compiled, though, what cargo does for the binary crate is a single
//! `rustc` command. So the grader asks cargo once, with a recorder as
//! `RUSTC_WORKSPACE_WRAPPER` (which cargo runs for the workspace's own
//! crate only, never for dependencies): the recorder writes down the exact
//! arguments, environment and working directory of that command and then
//! runs it. Nothing is reconstructed from cargo's internals: the edition,
//! `--extern` paths, `-L`, cfgs, profile flags and the `CARGO_*` variables
//! (`env!("CARGO_PKG_NAME")` works as under cargo) are whatever this cargo
//! passed.
//!
//! Replaying changes only what makes a build private and cheap: the output
//! is one file in the build's own directory (`-o`), diagnostics come as
//! JSON (each with the text cargo would have shown), no debug information
//! and no incremental state, and no jobserver of cargo's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Files the recorder writes.
const ARGS: &str = "args";
const ENV: &str = "env";
const CWD: &str = "cwd";

/// The recorder, a POSIX shell script: when cargo compiles the crate
/// `crate_name`, writes its arguments and environment (NUL-separated, as
/// the kernel keeps them) and working directory into `record_dir`, then
/// runs the compiler (`"$@"`: cargo passes the compiler's path first).
pub(super) fn recorder_script(crate_name: &str, record_dir: &Path) -> String {
    let dir = shell_quote(&record_dir.to_string_lossy());
    format!(
        r#"#!/bin/sh
# Written by cargo-grade: records how cargo compiles the crate {crate_name}.
prev=
for arg in "$@"; do
  if [ "$prev" = --crate-name ] && [ "$arg" = {crate_name} ]; then
    printf '%s\0' "$@" > {dir}/{ARGS}
    cat /proc/$$/environ > {dir}/{ENV}
    pwd -P > {dir}/{CWD}
    break
  fi
  prev=$arg
done
exec "$@"
"#
    )
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the recorder saw: the compiler and its arguments, its environment,
/// and its working directory.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Recording {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

impl Recording {
    /// The recording in `dir`, if the recorder ran.
    pub(super) fn read(dir: &Path) -> Result<Option<Recording>, String> {
        let read = |name: &str| match std::fs::read(dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", dir.join(name).display())),
        };
        let (Some(args), Some(env), Some(cwd)) = (read(ARGS)?, read(ENV)?, read(CWD)?) else {
            return Ok(None);
        };
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| format!("the recorded {what} is not UTF-8"))
        };
        let argv = split_nul(&args)
            .map(|a| text(a, "arguments"))
            .collect::<Result<Vec<_>, _>>()?;
        let env = split_nul(&env)
            .map(|kv| text(kv, "environment"))
            .filter_map(|kv| match kv {
                Ok(kv) => kv
                    .split_once('=')
                    .map(|(k, v)| Ok((k.to_owned(), v.to_owned()))),
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cwd = PathBuf::from(text(&cwd, "directory")?.trim_end_matches('\n'));
        Ok(Some(Recording { argv, env, cwd }))
    }

    /// Removes a recording (before cargo runs again).
    pub(super) fn clear(dir: &Path) -> std::io::Result<()> {
        for name in [ARGS, ENV, CWD] {
            match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn split_nul(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .strip_suffix(b"\0")
        .unwrap_or(bytes)
        .split(|&b| b == 0)
        .filter(|part| !part.is_empty())
}

/// Variables cargo sets for a crate's compilation (the ones `env!` reads),
/// and those it sets for the compiler itself.
fn set_by_cargo(name: &str) -> bool {
    name == "CARGO"
        || name == "OUT_DIR"
        || name == "LD_LIBRARY_PATH"
        || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_MANIFEST_")
        || name.starts_with("CARGO_BIN_")
        || matches!(
            name,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "CARGO_SBOM_PATH"
        )
}

/// The variables of the grader's environment that cargo sets for a crate
/// (`CARGO_PKG_NAME`, say, when the grader runs under `cargo test`), but
/// `LD_LIBRARY_PATH`, which cargo extends.
pub(super) fn inherited_cargo_variables() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            k.to_str()
                .is_some_and(|k| set_by_cargo(k) && k != "LD_LIBRARY_PATH")
        })
        .collect()
}

/// Variables never passed on: cargo's jobserver (its descriptors do not
/// exist in a replay) and the recorder.
fn never_passed(name: &str) -> bool {
    matches!(
        name,
        "CARGO_MAKEFLAGS" | "MAKEFLAGS" | "MFLAGS" | "RUSTC_WORKSPACE_WRAPPER"
    )
}

/// A recorded compilation, ready to replay for another copy of the crate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Invocation {
    /// The compiler cargo ran.
    pub rustc: PathBuf,
    /// Its arguments, as replayed (without the output, which each build
    /// names); paths in the crate's directory start with `crate_dir`.
    pub args: Vec<String>,
    /// The variables cargo set for it.
    pub env: Vec<(String, String)>,
    /// The crate's directory when recorded, and the compiler's working
    /// directory: each build replaces it with its own.
    pub crate_dir: String,
}

impl Invocation {
    /// The replayable form of `recording`, made in `crate_dir` (canonical).
    pub(super) fn from_recording(
        recording: &Recording,
        crate_dir: &Path,
    ) -> Result<Invocation, String> {
        let Some((rustc, args)) = recording.argv.split_first() else {
            return Err("the recorded compiler command is empty".into());
        };
        if recording.cwd != crate_dir {
            return Err(format!(
                "cargo compiled the crate in {}, not in its directory {}",
                recording.cwd.display(),
                crate_dir.display()
            ));
        }
        if !args
            .windows(2)
            .any(|w| w[0] == "--crate-type" && w[1] == "bin")
        {
            return Err(format!(
                "the recorded command does not compile a binary: {}",
                args.join(" ")
            ));
        }
        let crate_dir = crate_dir
            .to_str()
            .ok_or_else(|| format!("{} is not UTF-8", crate_dir.display()))?
            .to_owned();
        let env = recording
            .env
            .iter()
            .filter(|(k, _)| set_by_cargo(k) && !never_passed(k))
            .cloned()
            .collect();
        Ok(Invocation {
            rustc: PathBuf::from(rustc),
            args: replay_args(args)?,
            env,
            crate_dir,
        })
    }

    /// The files and directories outside the crate that the command names
    /// (the compiler, the dependencies' libraries and their directories):
    /// all must still exist for the invocation to be usable.
    pub(super) fn needs(&self) -> Vec<PathBuf> {
        let mut paths = vec![self.rustc.clone()];
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--extern" => {
                    if let Some((_, path)) = args.next().and_then(|v| v.split_once('=')) {
                        paths.push(PathBuf::from(path));
                    }
                }
                "-L" => {
                    if let Some(v) = args.next() {
                        let dir = v.split_once('=').map_or(v.as_str(), |(_, d)| d);
                        paths.push(PathBuf::from(dir));
                    }
                }
                _ => {}
            }
        }
        paths
    }

    /// The command that compiles the copy of the crate in `stage` into the
    /// executable `output`, with the grader's environment but for what
    /// cargo sets, which is as cargo set it.
    pub(super) fn command(&self, stage: &Path, output: &Path) -> Command {
        let stage = stage.to_string_lossy();
        let moved = |s: &str| -> String {
            match s.strip_prefix(self.crate_dir.as_str()) {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => format!("{stage}{rest}"),
                _ => s.to_owned(),
            }
        };
        let mut cmd = Command::new(&self.rustc);
        cmd.args(self.args.iter().map(|a| moved(a)))
            .arg("-o")
            .arg(output)
            .current_dir(&*stage);
        let inherited: Vec<OsString> = std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| {
                k.to_str()
                    .is_none_or(|k| set_by_cargo(k) || never_passed(k))
            })
            .collect();
        for name in inherited {
            cmd.env_remove(name);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, moved(v))));
        cmd
    }
}

/// Options of rustc whose value may come as the next argument.
const WITH_VALUE: [&str; 9] = [
    "--error-format",
    "--json",
    "--color",
    "--diagnostic-width",
    "--emit",
    "--out-dir",
    "-o",
    "-C",
    "--codegen",
];

/// Cargo's arguments as replayed: diagnostics as JSON with plain rendered
/// text, only the executable emitted (its path is added per build), no
/// incremental state, no debug information, not even the standard
/// library's (`strip=debuginfo`: the linker leaves it out, and the binary
/// every test runs is 0.65 MB instead of 5.5 MB for task3; a panic still
/// says where it happened, from the code, not from debug information).
/// Everything else is kept as it is, in order.
fn replay_args(args: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let split = WITH_VALUE.iter().find_map(|&name| {
            if arg == name {
                Some((name, None))
            } else if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                Some((name, Some(v.to_owned())))
            } else if name == "-C" && arg.len() > 2 && arg.starts_with("-C") {
                Some((name, Some(arg[2..].to_owned())))
            } else {
                None
            }
        });
        let Some((name, value)) = split else {
            out.push(arg.clone());
            continue;
        };
        let value = match value {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("the recorded {name} has no value"))?
                .clone(),
        };
        match name {
            "--error-format" | "--json" | "--color" | "--diagnostic-width" | "--out-dir" | "-o" => {
            }
            "--emit" => {
                if !value.split(',').any(|kind| kind == "link") {
                    return Err(format!(
                        "the recorded command emits {value}, not an executable"
                    ));
                }
            }
            _ => {
                let key = value.split_once('=').map_or(value.as_str(), |(k, _)| k);
                if !matches!(key, "incremental" | "debuginfo") {
                    out.push("-C".into());
                    out.push(value);
                }
            }
        }
    }
    out.extend(
        [
            "--emit=link",
            "-C",
            "debuginfo=0",
            "-C",
            "strip=debuginfo",
            "--error-format=json",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn strings(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| (*s).to_owned()).collect()
    }

    /// What cargo 1.95 passes for a starter (shortened paths).
    fn recorded() -> Recording {
        Recording {
            argv: strings(&[
                "/tc/bin/rustc",
                "--crate-name",
                "task3_shm_counter",
                "--edition=2021",
                "src/main.rs",
                "--error-format=json",
                "--json=diagnostic-rendered-ansi,artifacts,future-incompat",
                "--crate-type",
                "bin",
                "--emit=dep-info,link",
                "-C",
                "embed-bitcode=no",
                "-C",
                "debuginfo=2",
                "--check-cfg",
                "cfg(docsrs,test)",
                "-C",
                "metadata=249e40bd22b1a86e",
                "--out-dir",
                "/t/debug/deps",
                "-C",
                "incremental=/t/debug/incremental",
                "-L",
                "dependency=/t/debug/deps",
                "--extern",
                "nix=/t/debug/deps/libnix-9dc1025dcec33ffb.rlib",
            ]),
            env: env_of(&[
                ("CARGO_PKG_NAME", "task3-shm-counter"),
                ("CARGO_MANIFEST_DIR", "/p/crate"),
                ("CARGO_MANIFEST_PATH", "/p/crate/Cargo.toml"),
                ("CARGO_MAKEFLAGS", "-j --jobserver-fds=8,9"),
                ("HOME", "/root"),
            ]),
            cwd: PathBuf::from("/p/crate"),
        }
    }

    #[test]
    fn replay_keeps_what_shapes_the_program_and_drops_what_is_cargos() {
        let inv = Invocation::from_recording(&recorded(), Path::new("/p/crate")).unwrap();
        assert_eq!(inv.rustc, PathBuf::from("/tc/bin/rustc"));
        assert_eq!(
            inv.args,
            strings(&[
                "--crate-name",
                "task3_shm_counter",
                "--edition=2021",
                "src/main.rs",
                "--crate-type",
                "bin",
                "-C",
                "embed-bitcode=no",
                "--check-cfg",
                "cfg(docsrs,test)",
                "-C",
                "metadata=249e40bd22b1a86e",
                "-L",
                "dependency=/t/debug/deps",
                "--extern",
                "nix=/t/debug/deps/libnix-9dc1025dcec33ffb.rlib",
                "--emit=link",
                "-C",
                "debuginfo=0",
                "-C",
                "strip=debuginfo",
                "--error-format=json",
            ])
        );
        let mut names: Vec<&str> = inv.env.iter().map(|(k, _)| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_PKG_NAME"
            ]
        );
        assert_eq!(
            inv.needs(),
            [
                PathBuf::from("/tc/bin/rustc"),
                PathBuf::from("/t/debug/deps"),
                PathBuf::from("/t/debug/deps/libnix-9dc1025dcec33ffb.rlib"),
            ]
        );
    }

    #[test]
    fn joined_forms_of_options_are_understood() {
        let args = strings(&[
            "-Cincremental=/x",
            "-Copt-level=1",
            "--out-dir=/o",
            "--emit",
            "link",
            "a.rs",
        ]);
        assert_eq!(
            replay_args(&args).unwrap(),
            strings(&[
                "-C",
                "opt-level=1",
                "a.rs",
                "--emit=link",
                "-C",
                "debuginfo=0",
                "-C",
                "strip=debuginfo",
                "--error-format=json"
            ])
        );
        assert!(replay_args(&strings(&["--emit=metadata"])).is_err());
        assert!(replay_args(&strings(&["-C"])).is_err());
    }

    #[test]
    fn a_build_gets_its_own_directory_in_paths_and_variables() {
        let inv = Invocation::from_recording(&recorded(), Path::new("/p/crate")).unwrap();
        let cmd = inv.command(Path::new("/s/build-1"), Path::new("/s/build-1/out/x"));
        let envs: HashMap<_, _> = cmd
            .get_envs()
            .filter_map(|(k, v)| Some((k.to_str()?.to_owned(), v?.to_str()?.to_owned())))
            .collect();
        assert_eq!(envs["CARGO_MANIFEST_DIR"], "/s/build-1");
        assert_eq!(envs["CARGO_MANIFEST_PATH"], "/s/build-1/Cargo.toml");
        assert!(!envs.contains_key("CARGO_MAKEFLAGS"));
        assert_eq!(cmd.get_current_dir(), Some(Path::new("/s/build-1")));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args[args.len() - 2..], ["-o", "/s/build-1/out/x"]);
        // A directory that only starts like the crate's is not moved.
        assert_eq!(
            Invocation {
                crate_dir: "/p/cr".into(),
                ..inv.clone()
            }
            .command(Path::new("/s"), Path::new("/s/x"))
            .get_current_dir(),
            Some(Path::new("/s"))
        );
    }

    #[test]
    fn recordings_must_be_of_the_binary_made_in_the_crate() {
        let mut rec = recorded();
        rec.cwd = PathBuf::from("/elsewhere");
        assert!(Invocation::from_recording(&rec, Path::new("/p/crate")).is_err());
        let mut rec = recorded();
        rec.argv.retain(|a| a != "bin");
        assert!(Invocation::from_recording(&rec, Path::new("/p/crate")).is_err());
    }

    #[test]
    fn the_recorder_records_its_crate_only_and_runs_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("record.sh");
        std::fs::write(&script, recorder_script("my_crate", dir.path())).unwrap();
        let run = |args: &[&str]| {
            let status = Command::new("/bin/sh")
                .arg(&script)
                .args(args)
                .env("MARK", "a b=c")
                .current_dir(dir.path())
                .status()
                .unwrap();
            assert!(status.success());
        };
        run(&["true", "--crate-name", "other_crate"]);
        assert_eq!(Recording::read(dir.path()).unwrap(), None);
        run(&["true", "--crate-name", "my_crate", "with space", "'quoted'"]);
        let rec = Recording::read(dir.path()).unwrap().expect("recorded");
        assert_eq!(
            rec.argv,
            strings(&["true", "--crate-name", "my_crate", "with space", "'quoted'"])
        );
        assert!(rec.env.contains(&("MARK".into(), "a b=c".into())));
        assert_eq!(rec.cwd, dir.path().canonicalize().unwrap());
        Recording::clear(dir.path()).unwrap();
        assert_eq!(Recording::read(dir.path()).unwrap(), None);
    }
}
