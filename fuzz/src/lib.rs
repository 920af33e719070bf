//! The fuzz targets' checks, shared by the libFuzzer binaries in `fuzz_targets/` and by the
//! stable corpus replay in the workspace (`tests/fuzz_corpus.rs` includes `targets.rs` by path).

use std::sync::OnceLock;

pub mod targets;

use targets::Mode;

/// `CORRAL_FUZZ_STRICT=1` also asserts the checks of [`targets::OPEN_BUGS`]: use it to look
/// for (or confirm the fix of) those bugs; without it a long run explores past them.
pub fn mode() -> Mode {
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("CORRAL_FUZZ_STRICT").as_deref() {
        Ok("1") => Mode::Strict,
        _ => Mode::SkipOpenBugs,
    })
}
