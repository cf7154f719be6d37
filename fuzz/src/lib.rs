//! The fuzzing harness shared by the crates' fuzz targets.
//!
//! A target is a function over untrusted bytes (a decoder, a validator, a state machine fed
//! decoded messages) that must never panic, hang or allocate without bound, whatever the bytes,
//! plus the properties its callers rely on (a decoded value re-encodes to the same bytes, a
//! validated event validates again, ...), which the target asserts itself. The harness runs on
//! the stable toolchain as a plain `#[test]`, through [`bolero`]'s test engine:
//!
//! 1. every *seed* the target gives (valid encodings built in code, so they follow the format),
//!    every file in `fuzz/corpus/<target>/` and every file in `fuzz/regressions/<target>/`
//!    (inputs that once failed; they must keep passing);
//! 2. then generated inputs: a randomly chosen seed (or nothing) with a few random edits
//!    (bit flips, interesting integers, inserted dictionary tokens, cut, repeated or spliced
//!    chunks), the kind of mutations coverage-guided fuzzers make, so that most inputs get past
//!    a format's first checks. A failure is shrunk by bolero and reported with its seed; the
//!    failing bytes are also written to `fuzz/crashes/<target>/` (not committed) to be moved into
//!    `fuzz/regressions/<target>/` once fixed.
//!
//! How many generated inputs: `FUZZ_ITERS` (default [`DEFAULT_ITERS`], bounded in the normal
//! test suite by [`DEFAULT_SECS`] seconds unless `FUZZ_ITERS` is set); `FUZZ_SECS` bounds the
//! time of a run. `FUZZ_SAVE=1` writes the target's seeds into its corpus folder. A long run:
//!
//! ```text
//! FUZZ_ITERS=10000000 cargo test --release -p broker --lib fuzz_ -- --nocapture
//! ```
//!
//! A target, in a crate's unit tests:
//!
//! ```
//! fn decode(b: &[u8]) -> Result<u16, String> {
//!     let head = b.get(..2).ok_or("short")?;
//!     Ok(u16::from_be_bytes([head[0], head[1]]))
//! }
//! fuzz::Target::new("doc_example")
//!     .seed(vec![0, 7])
//!     .iterations(200)
//!     .run(|b| {
//!         if let Ok(v) = decode(b) {
//!             assert_eq!(&v.to_be_bytes()[..], &b[..2]);
//!         }
//!     });
//! ```
#![warn(missing_docs)]

use std::{
    fs,
    hash::{Hash, Hasher},
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use bolero::{check, TypeGenerator};

/// Generated inputs per target when `FUZZ_ITERS` is not set.
pub const DEFAULT_ITERS: usize = 20_000;
/// Seconds of generated inputs per target when `FUZZ_ITERS` is not set (the normal test suite).
pub const DEFAULT_SECS: u64 = 2;

/// One fuzz target: its name (the folder of its corpus), seeds and dictionary.
pub struct Target {
    name: String,
    seeds: Vec<Vec<u8>>,
    dict: Vec<Vec<u8>>,
    iterations: Option<usize>,
}

/// One generated input: which seed to start from (`base` past the last seed: from nothing) and
/// the edits to make to it.
#[derive(Debug, TypeGenerator)]
struct Plan {
    base: u16,
    #[generator(bolero::produce::<Vec<Edit>>().with().len(0usize..8))]
    edits: Vec<Edit>,
}

#[derive(Debug, TypeGenerator)]
enum Edit {
    Flip {
        at: u32,
        bit: u8,
    },
    Set {
        at: u32,
        byte: u8,
    },
    Interesting {
        at: u32,
        which: u8,
        overwrite: bool,
    },
    Token {
        at: u32,
        which: u16,
    },
    Insert {
        at: u32,
        #[generator(bolero::produce::<Vec<u8>>().with().len(0usize..24))]
        bytes: Vec<u8>,
    },
    Remove {
        at: u32,
        len: u8,
    },
    Truncate {
        at: u32,
    },
    Repeat {
        from: u32,
        len: u8,
        times: u8,
    },
    Splice {
        other: u16,
        from: u32,
        len: u16,
        to: u32,
    },
}

/// Integers that decoders get wrong: limits, signs, and the tags of variable-length encodings,
/// little- and big-endian.
fn interesting(which: u8) -> Vec<u8> {
    let n = which as usize % 28;
    match n {
        0 => vec![0],
        1 => vec![0xff],
        2 => vec![0x7f],
        3 => vec![0x80],
        4 => vec![251], // bincode varint: u16 follows
        5 => vec![252], // u32 follows
        6 => vec![253], // u64 follows
        7 => vec![254], // u128 follows
        8 => vec![0xff, 0xff],
        9 => vec![0x7f, 0xff],
        10 => vec![0x80, 0x00],
        11 => vec![0xff; 4],
        12 => vec![0x7f, 0xff, 0xff, 0xff],
        13 => vec![0xff, 0xff, 0xff, 0x7f],
        14 => vec![0x80, 0, 0, 0],
        15 => vec![0, 0, 0, 0x80],
        16 => vec![0xff; 8],
        17 => vec![0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        18 => vec![0, 0, 0, 0],
        19 => vec![1, 0, 0, 0],
        20 => vec![0, 0, 0, 1],
        21 => vec![0x01, 0x00, 0x00], // 16 MiB + a bit, big-endian u24 tail
        22 => vec![0x01, 0x00, 0x00, 0x01],
        23 => vec![252, 0xff, 0xff, 0xff, 0x7f],
        24 => vec![253, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        25 => vec![0xc0, 0x80],            // overlong UTF-8 NUL
        26 => vec![0xed, 0xa0, 0x80],      // UTF-8 surrogate
        _ => vec![0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
    }
}

fn at(pos: u32, len: usize) -> usize {
    pos as usize % (len + 1)
}

impl Plan {
    fn build(&self, pool: &[Vec<u8>], dict: &[Vec<u8>]) -> Vec<u8> {
        let mut b = pool
            .get(self.base as usize % (pool.len() + 1))
            .cloned()
            .unwrap_or_default();
        for e in &self.edits {
            match e {
                Edit::Flip { at: p, bit } => {
                    if !b.is_empty() {
                        let i = *p as usize % b.len();
                        b[i] ^= 1 << (bit % 8);
                    }
                }
                Edit::Set { at: p, byte } => {
                    if !b.is_empty() {
                        let i = *p as usize % b.len();
                        b[i] = *byte;
                    }
                }
                Edit::Interesting {
                    at: p,
                    which,
                    overwrite,
                } => {
                    let v = interesting(*which);
                    let i = at(*p, b.len());
                    if *overwrite {
                        let end = (i + v.len()).min(b.len());
                        b.splice(i..end, v);
                    } else {
                        b.splice(i..i, v);
                    }
                }
                Edit::Token { at: p, which } => {
                    if !dict.is_empty() {
                        let t = &dict[*which as usize % dict.len()];
                        let i = at(*p, b.len());
                        b.splice(i..i, t.iter().copied());
                    }
                }
                Edit::Insert { at: p, bytes } => {
                    let i = at(*p, b.len());
                    b.splice(i..i, bytes.iter().copied());
                }
                Edit::Remove { at: p, len } => {
                    let i = at(*p, b.len());
                    let end = (i + *len as usize).min(b.len());
                    b.drain(i..end);
                }
                Edit::Truncate { at: p } => {
                    let i = at(*p, b.len());
                    b.truncate(i);
                }
                Edit::Repeat { from, len, times } => {
                    let i = at(*from, b.len());
                    let end = (i + *len as usize).min(b.len());
                    let chunk = b[i..end].to_vec();
                    for _ in 0..(*times % 8) {
                        b.splice(end..end, chunk.iter().copied());
                    }
                }
                Edit::Splice {
                    other,
                    from,
                    len,
                    to,
                } => {
                    if let Some(o) = pool.get(*other as usize % pool.len().max(1)) {
                        let i = at(*from, o.len());
                        let end = (i + *len as usize).min(o.len());
                        let j = at(*to, b.len());
                        b.splice(j..j, o[i..end].iter().copied());
                    }
                }
            }
        }
        b
    }
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files of one folder, in name order (none when it does not exist).
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            })
            .map(|p| {
                let bytes = fs::read(&p)
                    .unwrap_or_else(|e| panic!("cannot read fuzz input {}: {e}", p.display()));
                (p, bytes)
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn name_of(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}", h.finish())
}

impl Target {
    /// A target named `name`: its corpus is `fuzz/corpus/<name>/`, its regression inputs
    /// `fuzz/regressions/<name>/`.
    pub fn new(name: &str) -> Target {
        Target {
            name: name.to_string(),
            seeds: Vec::new(),
            dict: Vec::new(),
            iterations: None,
        }
    }

    /// Add a valid input to start mutations from.
    pub fn seed(mut self, bytes: impl Into<Vec<u8>>) -> Target {
        self.seeds.push(bytes.into());
        self
    }

    /// Add several valid inputs.
    pub fn seeds<B: Into<Vec<u8>>>(mut self, all: impl IntoIterator<Item = B>) -> Target {
        self.seeds.extend(all.into_iter().map(Into::into));
        self
    }

    /// Add tokens of the format (keywords, member names) that edits insert.
    pub fn dict<B: AsRef<[u8]>>(mut self, tokens: impl IntoIterator<Item = B>) -> Target {
        self.dict
            .extend(tokens.into_iter().map(|t| t.as_ref().to_vec()));
        self
    }

    /// Run this many generated inputs unless `FUZZ_ITERS` says otherwise.
    pub fn iterations(mut self, n: usize) -> Target {
        self.iterations = Some(n);
        self
    }

    /// The folder of this target's committed corpus.
    pub fn corpus_dir(&self) -> PathBuf {
        root().join("corpus").join(&self.name)
    }

    /// The folder of this target's regression inputs.
    pub fn regressions_dir(&self) -> PathBuf {
        root().join("regressions").join(&self.name)
    }

    /// Run `test` on the seeds, the corpus, the regression inputs, then on generated inputs.
    /// Panics (failing the calling test) at the first input that makes `test` panic.
    pub fn run(self, test: impl Fn(&[u8])) {
        let corpus = files(&self.corpus_dir());
        let regressions = files(&self.regressions_dir());
        if env_num("FUZZ_SAVE").is_some_and(|v| v != 0) {
            let dir = self.corpus_dir();
            fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            for s in &self.seeds {
                let p = dir.join(format!("seed-{}", name_of(s)));
                fs::write(&p, s).unwrap_or_else(|e| panic!("cannot write {}: {e}", p.display()));
            }
        }
        for (i, s) in self.seeds.iter().enumerate() {
            replay(&format!("seed #{i}"), s, &test);
        }
        for (p, b) in corpus.iter().chain(regressions.iter()) {
            replay(&p.display().to_string(), b, &test);
        }

        let mut pool = self.seeds;
        pool.extend(corpus.into_iter().map(|(_, b)| b));
        pool.extend(regressions.into_iter().map(|(_, b)| b));
        let dict = self.dict;

        let set_iters = env_num("FUZZ_ITERS").map(|n| n as usize);
        let iterations = set_iters.or(self.iterations).unwrap_or(DEFAULT_ITERS);
        let secs = env_num("FUZZ_SECS").or(set_iters.is_none().then_some(DEFAULT_SECS));
        let crashes = root().join("crashes").join(&self.name);
        let runs = AtomicU64::new(0);
        let start = Instant::now();

        let mut c = check!().with_type::<Plan>().with_iterations(iterations);
        if let Some(s) = secs {
            c = c.with_test_time(Duration::from_secs(s));
        }
        // Targets own their state; a panic fails the whole run, so nothing observes it broken.
        let test = AssertUnwindSafe(&test);
        c.for_each(|plan| {
            runs.fetch_add(1, Ordering::Relaxed);
            let input = plan.build(&pool, &dict);
            let r = panic::catch_unwind(AssertUnwindSafe(|| (*test)(&input)));
            if let Err(p) = r {
                let _ = fs::create_dir_all(&crashes);
                let _ = fs::write(crashes.join(format!("crash-{}", name_of(&input))), &input);
                panic::resume_unwind(p);
            }
        });

        let n = runs.load(Ordering::Relaxed);
        let t = start.elapsed().as_secs_f64();
        eprintln!(
            "fuzz {}: {n} generated inputs in {t:.1} s ({:.0}/s), {} seeds and files",
            self.name,
            n as f64 / t.max(1e-9),
            pool.len()
        );
    }
}

fn replay(what: &str, input: &[u8], test: &impl Fn(&[u8])) {
    if panic::catch_unwind(AssertUnwindSafe(|| test(input))).is_err() {
        panic!("fuzz input {what} ({} bytes) failed", input.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_start_from_seeds_and_stay_bounded() {
        let pool = vec![b"hello".to_vec(), b"world!".to_vec()];
        let plan = Plan {
            base: 0,
            edits: vec![
                Edit::Flip { at: 0, bit: 5 },
                Edit::Splice {
                    other: 1,
                    from: 0,
                    len: 3,
                    to: 5,
                },
                Edit::Truncate { at: 7 },
            ],
        };
        assert_eq!(plan.build(&pool, &[]), b"Hellowo");
        let empty = Plan {
            base: 2,
            edits: vec![Edit::Token { at: 0, which: 1 }],
        };
        assert_eq!(empty.build(&pool, &[b"a".to_vec(), b"bc".to_vec()]), b"bc");
    }

    #[test]
    #[should_panic]
    fn a_panicking_target_fails_the_test() {
        Target::new("harness_self_test")
            .seed(vec![1, 2, 3])
            .iterations(1000)
            .run(|b| assert!(b.len() < 4, "long input"));
    }
}
