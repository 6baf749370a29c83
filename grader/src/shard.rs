//! Splitting a class over machines, as the distributed engines instructors
//! already have run it: a CI matrix, GitLab's `parallel:`, a Slurm job
//! array, a Kubernetes Indexed Job. The grader schedules nothing itself:
//! each machine grades its shard, and `merge` puts the shards together.
//!
//! A submission's shard depends only on its name (a SHA-256 of it, modulo
//! the number of shards), never on listing order, machine or time, so N
//! machines that each see the same directory split it exactly. Each shard
//! records which K of N it was and the names it was given
//! ([`ShardRecord`]), so a merge can tell a missing shard, a submission
//! graded twice, and shards graded against different specs or seeds.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Shard `k` (1-based) of `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub k: u32,
    pub n: u32,
}

/// A `--shard` that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardError {
    #[error("--shard {0:?}: give K/N with 1 <= K <= N (for example 2/3), or `auto`")]
    Syntax(String),
    #[error("--shard auto: {0}")]
    Auto(String),
}

impl Shard {
    /// The whole class, unsharded.
    pub const ALL: Shard = Shard { k: 1, n: 1 };

    /// Parses `K/N`.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError::Syntax(text.to_owned());
        let (k, n) = text.split_once('/').ok_or_else(bad)?;
        let (k, n): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if k == 0 || n == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }

    /// K and N from the environment of the engine running this job, with
    /// `total` (`--shard-total`) for engines that give only an index.
    pub fn auto(
        env: &dyn Fn(&str) -> Option<String>,
        total: Option<u32>,
    ) -> Result<Shard, ShardError> {
        let num = |name: &str| -> Result<Option<u32>, ShardError> {
            match env(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ShardError::Auto(format!("{name}={v:?} is not a number"))),
            }
        };
        let checked = |k: u32, n: u32, engine: &str| {
            if k == 0 || n == 0 || k > n {
                Err(ShardError::Auto(format!(
                    "{engine} says shard {k} of {n}, which does not exist"
                )))
            } else {
                Ok(Shard { k, n })
            }
        };
        // GitLab CI `parallel:`: CI_NODE_INDEX is 1-based.
        if let (Some(i), Some(n)) = (num("CI_NODE_INDEX")?, num("CI_NODE_TOTAL")?) {
            return checked(i, n, "GitLab (CI_NODE_INDEX/CI_NODE_TOTAL)");
        }
        // A Slurm job array: ids from MIN, COUNT tasks.
        if let Some(id) = num("SLURM_ARRAY_TASK_ID")? {
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let count = num("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                ShardError::Auto(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into(),
                )
            })?;
            let k = id.checked_sub(min).ok_or_else(|| {
                ShardError::Auto(format!(
                    "SLURM_ARRAY_TASK_ID {id} is below SLURM_ARRAY_TASK_MIN {min}"
                ))
            })? + 1;
            return checked(k, count, "Slurm (SLURM_ARRAY_TASK_ID/MIN/COUNT)");
        }
        // A Kubernetes Indexed Job: a 0-based index, the total from us.
        if let Some(i) = num("JOB_COMPLETION_INDEX")? {
            let n = match total {
                Some(n) => n,
                None => num("CARGO_GRADE_SHARD_TOTAL")?.ok_or_else(|| {
                    ShardError::Auto("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of shards: pass --shard-total N (the Job's completions) or set CARGO_GRADE_SHARD_TOTAL".into())
                })?,
            };
            return checked(i + 1, n, "Kubernetes (JOB_COMPLETION_INDEX)");
        }
        Err(ShardError::Auto(
            "no engine detected: none of GitLab's CI_NODE_INDEX/CI_NODE_TOTAL, Slurm's SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, or Kubernetes' JOB_COMPLETION_INDEX is set (on a GitHub Actions matrix, pass --shard ${{ matrix.shard }}/N)".into(),
        ))
    }

    /// Whether the submission called `name` is this shard's.
    pub fn owns(self, name: &str) -> bool {
        shard_of(name, self.n) == self.k
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// The shard (1-based, of `n`) of the submission called `name`.
pub fn shard_of(name: &str, n: u32) -> u32 {
    let hash = hmac_sha256::Hash::hash(name.as_bytes());
    let first = u64::from_be_bytes(hash[..8].try_into().expect("8 bytes"));
    (first % u64::from(n)) as u32 + 1
}

/// What a batch records in `--out DIR/shard.json`, for `merge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRecord {
    pub schema_version: u32,
    pub task: String,
    pub spec_digest: String,
    pub seed: u64,
    pub grader_version: String,
    pub shard: Shard,
    /// The submissions this shard was given, sorted.
    pub names: Vec<String>,
}

impl ShardRecord {
    pub const FILE: &'static str = "shard.json";

    pub fn read(dir: &Path) -> Result<ShardRecord, String> {
        let path = dir.join(Self::FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (is {} the output of `cargo grade batch`?)",
                path.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn parses_k_of_n() {
        assert_eq!(Shard::parse("2/3"), Ok(Shard { k: 2, n: 3 }));
        for bad in ["0/3", "4/3", "3", "a/b", "1/0", ""] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_split_any_listing_exactly() {
        let names: Vec<String> = (0..200).map(|i| format!("student-{i}")).collect();
        for n in 1..=5 {
            let mut counts = vec![0; n as usize];
            for name in &names {
                let owners: Vec<u32> = (1..=n).filter(|&k| Shard { k, n }.owns(name)).collect();
                assert_eq!(owners.len(), 1, "{name} in exactly one of {n}");
                counts[owners[0] as usize - 1] += 1;
            }
            assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        }
        // A function of the name alone.
        assert_eq!(shard_of("alice", 7), shard_of("alice", 7));
    }

    #[test]
    fn auto_reads_each_engine() {
        let gitlab = [("CI_NODE_INDEX", "2"), ("CI_NODE_TOTAL", "3")];
        assert_eq!(Shard::auto(&env(&gitlab), None), Ok(Shard { k: 2, n: 3 }));
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "11"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(Shard::auto(&env(&slurm), None), Ok(Shard { k: 2, n: 4 }));
        let k8s = [("JOB_COMPLETION_INDEX", "0")];
        assert_eq!(Shard::auto(&env(&k8s), Some(3)), Ok(Shard { k: 1, n: 3 }));
        let k8s_env = [
            ("JOB_COMPLETION_INDEX", "2"),
            ("CARGO_GRADE_SHARD_TOTAL", "3"),
        ];
        assert_eq!(Shard::auto(&env(&k8s_env), None), Ok(Shard { k: 3, n: 3 }));
        assert!(Shard::auto(&env(&k8s), None).is_err());
        let none: [(&str, &str); 0] = [];
        let e = Shard::auto(&env(&none), None).unwrap_err().to_string();
        assert!(e.contains("no engine detected"), "{e}");
        let wrong = [("CI_NODE_INDEX", "4"), ("CI_NODE_TOTAL", "3")];
        assert!(Shard::auto(&env(&wrong), None).is_err());
    }
}
