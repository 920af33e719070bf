//! Replays the fuzz corpora on stable (issue 7): every file under `fuzz/corpus/<target>/` goes
//! through the same check function the libFuzzer binary `fuzz/fuzz_targets/<target>.rs` runs,
//! so what fuzzing once found stays found in plain `cargo test`. The checks live in
//! `fuzz/src/targets.rs` (the fuzz crate is outside the workspace; see `fuzz/README.md`).
//!
//! Bugs that fuzzing found and that are not fixed yet are listed in `targets::OPEN_BUGS`: the
//! corpus replay skips their checks, and the `#[ignore]`d tests below replay their reproducers
//! from `fuzz/artifacts/<target>/` with every check on (`cargo test --test fuzz_corpus --
//! --ignored` fails until they are fixed).

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use targets::{Check, Mode, TARGETS};

/// No single input may take longer than this (libFuzzer runs use `-timeout=10`); the bound is
/// generous because tests run unoptimised and in parallel.
const PER_INPUT: Duration = Duration::from_secs(10);

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// Runs `check` on `path`, naming the file if it panics or is too slow.
fn replay(target: &str, check: Check, path: &Path, mode: Mode) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| check(&data, mode));
    let took = started.elapsed();
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("(no message)");
        panic!("{target}: {} fails: {message}", path.display());
    }
    assert!(
        took < PER_INPUT,
        "{target}: {} took {took:?}",
        path.display()
    );
}

fn replay_corpus(name: &str) {
    let (target, check) = TARGETS
        .iter()
        .find(|(t, _)| *t == name)
        .copied()
        .expect("a known target");
    let dir = fuzz_dir().join("corpus").join(target);
    let inputs = files(&dir);
    assert!(!inputs.is_empty(), "{}: no seeds", dir.display());
    for path in &inputs {
        replay(target, check, path, Mode::SkipOpenBugs);
    }
}

#[test]
fn every_target_has_a_corpus() {
    for (target, _) in TARGETS {
        assert!(
            fuzz_dir().join("corpus").join(target).is_dir(),
            "fuzz/corpus/{target} is missing"
        );
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz/fuzz_targets/{target}.rs is missing"
        );
    }
}

#[test]
fn config_corpus() {
    replay_corpus("config");
}

#[test]
fn request_model_corpus() {
    replay_corpus("request_model");
}

#[test]
fn route_path_corpus() {
    replay_corpus("route_path");
}

#[test]
fn model_list_corpus() {
    replay_corpus("model_list");
}

#[test]
fn headers_corpus() {
    replay_corpus("headers");
}

#[test]
fn retry_after_corpus() {
    replay_corpus("retry_after");
}

#[test]
fn load_report_corpus() {
    replay_corpus("load_report");
}

/// The shipped config files are seeds too; they must pass every check.
#[test]
fn shipped_configs_pass_every_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    for path in files(&dir) {
        replay("config", targets::config, &path, Mode::Strict);
    }
}

/// `CORRAL_FUZZ_INPUT=<target>:<file>[,<target>:<file>…]` replays those files with every
/// check on (a crash from a fuzz run, say), on stable; without the variable it does nothing.
#[test]
fn replay_input_from_env() {
    let Ok(inputs) = std::env::var("CORRAL_FUZZ_INPUT") else {
        return;
    };
    for input in inputs.split(',').filter(|i| !i.is_empty()) {
        let (name, file) = input
            .split_once(':')
            .expect("CORRAL_FUZZ_INPUT=<target>:<file>");
        let (target, check) = TARGETS
            .iter()
            .find(|(t, _)| *t == name)
            .copied()
            .unwrap_or_else(|| panic!("no target {name}"));
        replay(target, check, Path::new(file), Mode::Strict);
    }
}

// ## Reproducers of open bugs (`targets::OPEN_BUGS`): ignored until fixed

fn reproduce(target: &str, file: &str) {
    let (_, check) = TARGETS
        .iter()
        .find(|(t, _)| *t == target)
        .copied()
        .expect("a known target");
    let path = fuzz_dir().join("artifacts").join(target).join(file);
    replay(target, check, &path, Mode::Strict);
}

/// Bug: `headers::request_headers` forwards `Expect: 100-continue` upstream (SPEC 11).
#[test]
fn expect_is_not_forwarded() {
    reproduce("headers", "expect-100-continue");
    // Found by libFuzzer from an empty corpus: `expect:\xff,`.
    reproduce("headers", "crash-9e30879eaea32d0a03cc948d50f0bf5631375917");
}

/// Bug: a refused value with a newline makes the config error two lines (`one_of` echoes it).
#[test]
fn config_errors_stay_one_line() {
    reproduce("config", "error-echoes-newline.yaml");
    // Found by libFuzzer from an empty corpus: an unknown top-level key holding a newline.
    reproduce("config", "crash-b343bd3b93b794d6d52f5f14fadec2b39ccb6dfe");
}

/// Bug: validation accepts durations that overflow `Instant` arithmetic in the endpoint
/// machine ("overflow when adding duration to instant", a panic in the endpoint actor).
#[test]
fn accepted_durations_do_not_overflow() {
    for file in [
        "huge-check-interval.yaml",
        "huge-breaker-open-duration.yaml",
        "huge-discovery-interval.yaml",
    ] {
        reproduce("config", file);
    }
}

/// Bug: a body declared JSON that is not UTF-8 is accepted (`"\xff"` → no model, not 400; the
/// model of `{"model":"m","x":"\xff"}` is read): serde_json skips unread strings unchecked.
#[test]
fn json_bodies_must_be_utf8() {
    for file in ["invalid-utf8-string", "invalid-utf8-ignored-field"] {
        reproduce("request_model", file);
    }
}
