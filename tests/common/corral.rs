//! Running the real `corral` binary from end-to-end tests.
//!
//! [`Corral::start`] writes a config to a temp file, spawns the binary cargo built for this
//! test run, captures every stdout and stderr line (timestamped, ANSI colours stripped) and
//! returns once the process logs `listening on http://ADDR`. Dropping it SIGKILLs and reaps the
//! process, and, when the test is failing, prints everything the process logged.
//! [`run_corral`] is for one-shot runs (`--check-config`, `--help`, a config that must fail).
//!
//! Set `CORRAL_TEST_ECHO=1` to see the process output live on the test's stderr.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempPath;

use super::http::{self, Resp, StreamResp};
use super::wait::{poll_until, wait_until, POLL};

/// The binary under test.
pub const CORRAL_BIN: &str = env!("CARGO_BIN_EXE_corral");

/// How long `Corral::start` waits for the listening line.
pub const START_DEADLINE: Duration = Duration::from_secs(15);

/// The text that announces the listening address.
const LISTENING: &str = "listening on http://";

/// One line of process output.
#[derive(Clone, Debug)]
pub struct LogLine {
    pub at: Instant,
    /// True for stderr, false for stdout.
    pub stderr: bool,
    pub text: String,
}

/// Output of a one-shot run.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit code; `None` when killed by a signal (including the harness's timeout kill).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// True when the harness had to kill the process at the timeout.
    pub timed_out: bool,
}

/// Lines captured by reader threads, shared with the test thread.
#[derive(Clone)]
struct Capture {
    lines: Arc<Mutex<Vec<LogLine>>>,
    readers_done: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Capture {
    fn new() -> Capture {
        Capture {
            lines: Arc::new(Mutex::new(Vec::new())),
            readers_done: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn attach(&self, pipe: impl Read + Send + 'static, stderr: bool, echo: Option<String>) {
        let lines = self.lines.clone();
        let done = self.readers_done.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(pipe);
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match r.read_until(b'\n', &mut raw) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                while matches!(raw.last(), Some(b'\n' | b'\r')) {
                    raw.pop();
                }
                let text = strip_ansi(&String::from_utf8_lossy(&raw));
                if let Some(tag) = &echo {
                    eprintln!("[{tag}{}] {text}", if stderr { " err" } else { "" });
                }
                lock(&lines).push(LogLine {
                    at: Instant::now(),
                    stderr,
                    text,
                });
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
    }

    /// Wait (bounded) until both pipes reached EOF, so no output of an exited process is lost.
    fn drain(&self, timeout: Duration) {
        poll_until(timeout, || self.readers_done.load(Ordering::SeqCst) >= 2);
    }

    fn text(&self, which: Option<bool>) -> String {
        lock(&self.lines)
            .iter()
            .filter(|l| match which {
                None => true,
                Some(e) => l.stderr == e,
            })
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Remove ANSI escape sequences (colours) from a line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The `host:port` after `listening on http://` in a log line (plain text or JSON).
pub fn parse_listen_addr(line: &str) -> Option<String> {
    let at = line.find(LISTENING)?;
    let rest = &line[at + LISTENING.len()..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ".:[]-".contains(*c))
        .collect();
    let addr = addr.trim_end_matches(['.', ':', '-']);
    (!addr.is_empty()).then(|| addr.to_string())
}

/// Write a config to a temp `.yaml` file, deleted when the returned path is dropped.
pub fn write_config(yaml: &str) -> TempPath {
    let mut f = tempfile::Builder::new()
        .prefix("corral-test-")
        .suffix(".yaml")
        .tempfile()
        .expect("create temp config");
    f.write_all(yaml.as_bytes()).expect("write temp config");
    f.flush().expect("flush temp config");
    f.into_temp_path()
}

fn command(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        // The developer's own settings must not leak into what the test asserts.
        .env_remove("RUST_LOG")
        .env_remove("CORRAL_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn echo_tag(program: &Path, pid: u32) -> Option<String> {
    std::env::var_os("CORRAL_TEST_ECHO").map(|_| {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("{name} {pid}")
    })
}

fn code_of(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Run the corral binary to completion (killed after `timeout`).
pub fn run_corral(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    run_program(Path::new(CORRAL_BIN), args, env, None, timeout)
}

/// Run the corral binary to completion in `dir` (for the default config search paths).
pub fn run_corral_in(dir: &Path, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    run_program(Path::new(CORRAL_BIN), args, env, Some(dir), timeout)
}

/// Run any program to completion, capturing its output; killed after `timeout`.
pub fn run_program(
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    dir: Option<&Path>,
    timeout: Duration,
) -> Output {
    let mut cmd = command(program, args, env);
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let cap = Capture::new();
    let echo = echo_tag(program, child.id());
    cap.attach(child.stdout.take().expect("stdout"), false, echo.clone());
    cap.attach(child.stderr.take().expect("stderr"), true, echo);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(POLL);
    };
    cap.drain(Duration::from_secs(2));
    Output {
        code: status.code(),
        stdout: cap.text(Some(false)),
        stderr: cap.text(Some(true)),
        timed_out,
    }
}

/// A running corral process.
pub struct Corral {
    program: PathBuf,
    child: Mutex<Child>,
    pid: u32,
    /// `host:port` from the listening line.
    addr: String,
    cap: Capture,
    config: Option<TempPath>,
    exit: Mutex<Option<ExitStatus>>,
    /// Bearer token sent by the status helpers (`set_internal_token`).
    token: Mutex<Option<String>>,
    /// Set once the output has been printed, so Drop does not print it twice.
    printed: AtomicBool,
}

impl Corral {
    /// Start `corral --config <temp file with yaml>` and wait until it is listening.
    pub fn start(yaml: &str) -> Corral {
        Self::start_with_args(yaml, &[], &[])
    }

    /// As `start`, with extra arguments (after `--config FILE`) and environment variables.
    pub fn start_with_args(yaml: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Corral {
        let config = write_config(yaml);
        let path = config.to_str().expect("utf-8 temp path").to_string();
        let mut args = vec!["--config", path.as_str()];
        args.extend_from_slice(extra_args);
        Self::spawn(Path::new(CORRAL_BIN), &args, env, Some(config))
    }

    /// Start any program and wait for it to log `listening on http://ADDR` (harness self-test).
    pub fn start_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Corral {
        Self::spawn(program, args, env, None)
    }

    fn spawn(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        config: Option<TempPath>,
    ) -> Corral {
        let mut child = command(program, args, env)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        let pid = child.id();
        let cap = Capture::new();
        let echo = echo_tag(program, pid);
        cap.attach(child.stdout.take().expect("stdout"), false, echo.clone());
        cap.attach(child.stderr.take().expect("stderr"), true, echo);
        let mut me = Corral {
            program: program.to_path_buf(),
            child: Mutex::new(child),
            pid,
            addr: String::new(),
            cap,
            config,
            exit: Mutex::new(None),
            token: Mutex::new(None),
            printed: AtomicBool::new(false),
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let found = lock(&me.cap.lines)
                .iter()
                .find_map(|l| parse_listen_addr(&l.text));
            if let Some(addr) = found {
                me.addr = addr;
                return me;
            }
            if let Some(status) = me.try_exit() {
                me.cap.drain(Duration::from_secs(2));
                me.fail(&format!(
                    "exited with {status} before logging \"{LISTENING}\""
                ));
            }
            if Instant::now() >= deadline {
                me.kill();
                me.cap.drain(Duration::from_secs(2));
                me.fail(&format!(
                    "did not log \"{LISTENING}\" within {START_DEADLINE:?}"
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    fn fail(&self, why: &str) -> ! {
        self.printed.store(true, Ordering::SeqCst);
        panic!(
            "{} (pid {}) {why}; its output:\n{}",
            self.program.display(),
            self.pid,
            self.cap.text(None)
        );
    }

    /// `http://host:port`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `host:port`
    pub fn base(&self) -> &str {
        &self.addr
    }

    /// `url()` + `path` (path starts with `/`).
    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The config file the process was started with (rewrite it, then SIGHUP, to reload).
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    /// Replace the config file's contents atomically (write a sibling, rename over it).
    pub fn rewrite_config(&self, yaml: &str) {
        let path = self.config_path().expect("started without a config file");
        let tmp = path.with_extension("yaml.new");
        std::fs::write(&tmp, yaml).expect("write new config");
        std::fs::rename(&tmp, path).expect("replace config");
    }

    /// All output lines so far (stdout and stderr interleaved in arrival order), joined.
    pub fn logs(&self) -> String {
        self.cap.text(None)
    }

    /// All output lines so far.
    pub fn log_lines(&self) -> Vec<String> {
        lock(&self.cap.lines)
            .iter()
            .map(|l| l.text.clone())
            .collect()
    }

    /// All output lines so far, with arrival times and stream.
    pub fn log_entries(&self) -> Vec<LogLine> {
        lock(&self.cap.lines).clone()
    }

    /// Number of lines so far: a mark for `wait_for_log_since`.
    pub fn log_len(&self) -> usize {
        lock(&self.cap.lines).len()
    }

    /// Lines so far that contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        lock(&self.cap.lines)
            .iter()
            .filter(|l| l.text.contains(needle))
            .count()
    }

    /// Wait until some line contains `needle`; false at the timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_since(0, needle, timeout)
    }

    /// Wait until a line at index `mark` or later contains `needle`; false at the timeout.
    pub fn wait_for_log_since(&self, mark: usize, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || {
            lock(&self.cap.lines)
                .iter()
                .skip(mark)
                .any(|l| l.text.contains(needle))
        })
    }

    /// Send a signal by name (`TERM`, `SIGHUP`, `INT`, `KILL`, ...) with `kill(1)`.
    /// A no-op once the process has exited (its pid may have been reused).
    pub fn signal(&self, sig: &str) {
        if self.try_exit().is_some() {
            return;
        }
        let name = sig.trim_start_matches("SIG");
        let status = Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("run kill: {e}"));
        assert!(status.success(), "kill -s {name} {} failed", self.pid);
    }

    /// Exit status if the process has exited (reaping it), without waiting.
    fn try_exit(&self) -> Option<ExitStatus> {
        // Never hold `exit` while taking `child` (`kill` takes them the other way round).
        if let Some(s) = *lock(&self.exit) {
            return Some(s);
        }
        let s = lock(&self.child).try_wait().ok().flatten()?;
        *lock(&self.exit) = Some(s);
        Some(s)
    }

    /// True while the process runs.
    pub fn is_running(&self) -> bool {
        self.try_exit().is_none()
    }

    /// Wait up to `timeout` for the process to exit. `Some(code)`, or `Some(128 + signal)`
    /// when a signal killed it; `None` if it is still running.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        let mut status = None;
        poll_until(timeout, || {
            status = self.try_exit();
            status.is_some()
        });
        let status = status?;
        self.cap.drain(Duration::from_secs(2));
        Some(code_of(status))
    }

    /// SIGKILL and reap (no-op if it already exited).
    pub fn kill(&self) {
        if self.try_exit().is_some() {
            return;
        }
        let status = {
            let mut child = lock(&self.child);
            let _ = child.kill();
            child.wait().ok()
        };
        if let Some(s) = status {
            *lock(&self.exit) = Some(s);
        }
    }

    /// Send `Authorization: Bearer <token>` with the status helpers below.
    pub fn set_internal_token(&self, token: Option<&str>) {
        *lock(&self.token) = token.map(str::to_string);
    }

    fn auth(&self) -> Option<String> {
        lock(&self.token).as_ref().map(|t| format!("Bearer {t}"))
    }

    /// `GET path` on Corral.
    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// `GET path` on Corral, body as JSON (`Null` if not JSON).
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path);
        let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        (r.status, v)
    }

    /// `POST path` on Corral with a JSON body.
    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).expect("serialise JSON");
        self.request(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            &bytes,
        )
    }

    /// Any request on Corral (adds the internal token when set and the caller sent none).
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let auth = self.auth();
        let mut hs: Vec<(&str, &str)> = headers.to_vec();
        if let Some(a) = &auth {
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                hs.push(("Authorization", a.as_str()));
            }
        }
        http::request(method, &self.url_for(path), &hs, body)
    }

    /// `POST path` with a JSON body, streaming the reply.
    pub fn stream_json(&self, path: &str, body: &Value) -> StreamResp {
        http::stream_json(&self.url_for(path), body)
    }

    /// Wait until `GET /internal/ready` answers 200.
    pub fn wait_ready(&self, timeout: Duration) {
        wait_until(timeout, "corral /internal/ready == 200", || {
            http::try_get(&self.url_for("/internal/ready")).is_ok_and(|r| r.status == 200)
        });
    }

    /// `GET /internal/status/endpoints` -> the `endpoints` array.
    pub fn endpoints(&self) -> Vec<Value> {
        let (status, v) = self.get_json("/internal/status/endpoints");
        assert_eq!(status, 200, "GET /internal/status/endpoints: {v}");
        v.get("endpoints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| panic!("no endpoints array in {v}"))
    }

    /// The status object of the endpoint named `name`.
    pub fn endpoint(&self, name: &str) -> Option<Value> {
        self.endpoints()
            .into_iter()
            .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
    }

    /// The `status` of endpoint `name` (`healthy`, `unhealthy`, ...).
    pub fn status_of(&self, name: &str) -> Option<String> {
        self.endpoint(name)
            .and_then(|e| e.get("status").and_then(Value::as_str).map(str::to_string))
    }

    /// Wait until endpoint `name` has status `status`; panics with the last status seen.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        let mut last = None;
        let ok = poll_until(timeout, || {
            last = self.status_of(name);
            last.as_deref() == Some(status)
        });
        assert!(
            ok,
            "endpoint {name} did not become {status} within {timeout:?} (last: {last:?})"
        );
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.printed.swap(true, Ordering::SeqCst) {
            self.cap.drain(Duration::from_secs(1));
            eprintln!(
                "---- output of {} (pid {}) ----\n{}\n---- end of output ----",
                self.program.display(),
                self.pid,
                self.cap.text(None)
            );
        }
    }
}
