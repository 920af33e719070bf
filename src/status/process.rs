//! `/internal/process` (SPEC 12): Corral's own process figures in the outline of Olla's
//! process statistics — `memory`, `threads` (where Olla, a Go program, counts goroutines),
//! `open_files` and `runtime` — read from `/proc/self` at each request. Olla's garbage
//! collector figures have no counterpart in a Rust process and are left out.
//!
//! Where there is no `/proc/self` (not Linux) the figures are `null` and the rest stands.

use std::time::{Duration, SystemTime};

use corral_actors::display;
use serde_json::{json, Value};

use super::metrics::max_open_files;

/// What `/proc/self/status` says, in bytes and counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStatus {
    pub resident: Option<u64>,
    pub peak_resident: Option<u64>,
    pub virtual_size: Option<u64>,
    pub threads: Option<u64>,
}

impl ProcStatus {
    /// Reads the `VmRSS`, `VmHWM`, `VmSize` and `Threads` lines (sizes in kB).
    pub fn parse(status: &str) -> ProcStatus {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        };
        let kib = |name: &str| field(name).and_then(|k| k.checked_mul(1024));
        ProcStatus {
            resident: kib("VmRSS"),
            peak_resident: kib("VmHWM"),
            virtual_size: kib("VmSize"),
            threads: field("Threads"),
        }
    }
}

/// A size both ways: Olla's string (`16.37 MB`) and the bytes.
fn size(bytes: Option<u64>) -> (Value, Value) {
    (json!(bytes.map(display::bytes)), json!(bytes))
}

/// The body of `/internal/process`.
pub fn body(uptime: Duration, now: SystemTime) -> Value {
    let status = std::fs::read_to_string("/proc/self/status")
        .map(|s| ProcStatus::parse(&s))
        .unwrap_or_default();
    // `read_dir` holds a descriptor of its own while it lists them.
    let open = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| (d.count() as u64).saturating_sub(1));
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(max_open_files);
    render(&status, open, limit, uptime, now)
}

fn render(
    status: &ProcStatus,
    open_files: Option<u64>,
    open_files_limit: Option<u64>,
    uptime: Duration,
    now: SystemTime,
) -> Value {
    let (resident, resident_bytes) = size(status.resident);
    let (peak, peak_bytes) = size(status.peak_resident);
    let (virt, virt_bytes) = size(status.virtual_size);
    json!({
        "timestamp": display::rfc3339(now),
        "memory": {
            "resident": resident,
            "resident_bytes": resident_bytes,
            "peak_resident": peak,
            "peak_resident_bytes": peak_bytes,
            "virtual": virt,
            "virtual_bytes": virt_bytes,
        },
        "threads": { "count": status.threads },
        "open_files": { "count": open_files, "limit": open_files_limit },
        "runtime": {
            "uptime": display::duration(Duration::from_secs(uptime.as_secs())),
            "uptime_seconds": uptime.as_secs(),
            "num_cpu": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_self_status() {
        let text = "Name:\tcorral\nVmPeak:\t  300000 kB\nVmSize:\t  262144 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   16384 kB\nThreads:\t9\n";
        assert_eq!(
            ProcStatus::parse(text),
            ProcStatus {
                resident: Some(16 << 20),
                peak_resident: Some(20 << 20),
                virtual_size: Some(256 << 20),
                threads: Some(9),
            }
        );
        assert_eq!(ProcStatus::parse("garbage"), ProcStatus::default());
    }

    #[test]
    fn renders_olla_outline() {
        let status = ProcStatus {
            resident: Some(16 << 20),
            threads: Some(9),
            ..ProcStatus::default()
        };
        let v = render(
            &status,
            Some(23),
            Some(1024),
            Duration::from_millis(8_100_900),
            SystemTime::UNIX_EPOCH,
        );
        assert_eq!(v["memory"]["resident"], "16.00 MB");
        assert_eq!(v["memory"]["resident_bytes"], 16 << 20);
        assert_eq!(v["memory"]["peak_resident"], Value::Null);
        assert_eq!(v["threads"]["count"], 9);
        assert_eq!(v["open_files"], json!({ "count": 23, "limit": 1024 }));
        assert_eq!(v["runtime"]["uptime"], "2h15m");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
    }
}
