//! The built `corral` binary as a child process, for the tests whose subject only a process
//! has: its command line, exit codes, signals and log lines.
//!
//! [`CorralProcess::start`] writes the config to a temp file, spawns the binary, captures
//! every stdout and stderr line and returns once the process logs `listening on http://ADDR`.
//! Dropping it SIGKILLs and reaps the process and, when the test is failing, prints what the
//! process logged. [`CorralProcess::start_args`] runs other command lines (`demo`) with a
//! piped stdin for [`CorralProcess::send_line`]. [`run_corral`] is for one-shot runs (`--check-config`, `--help`, a config
//! that must fail). Set `CORRAL_TEST_ECHO=1` to see the process output live.

use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Deref;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tempfile::TempPath;

use crate::client::Api;
use crate::wait::{poll_until, POLL};

/// How long `CorralProcess::start` waits for the listening line.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// The text that announces the listening address.
const LISTENING: &str = "listening on http://";

/// Output of a one-shot run.
#[derive(Clone, Debug)]
pub struct Output {
    /// Exit code; `None` when killed by a signal (including the timeout kill).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Lines captured by reader threads, shared with the test thread: (is stderr, text).
#[derive(Clone, Default)]
struct Capture {
    lines: Arc<Mutex<Vec<(bool, String)>>>,
    readers_done: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Capture {
    /// Read both pipes of `child` line by line on two threads.
    fn attach(child: &mut Child, bin: &Path) -> Capture {
        let cap = Capture::default();
        let echo = std::env::var_os("CORRAL_TEST_ECHO").map(|_| {
            let name = bin.file_name().unwrap_or_default().to_string_lossy();
            format!("{name} {}", child.id())
        });
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        cap.read(out, false, echo.clone());
        cap.read(err, true, echo);
        cap
    }

    fn read(&self, pipe: impl Read + Send + 'static, stderr: bool, echo: Option<String>) {
        let (lines, done) = (self.lines.clone(), self.readers_done.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(text) = line else { break };
                if let Some(tag) = &echo {
                    eprintln!("[{tag}{}] {text}", if stderr { " err" } else { "" });
                }
                lock(&lines).push((stderr, text));
            }
            done.fetch_add(1, Ordering::SeqCst);
        });
    }

    /// Wait (bounded) until both pipes reached EOF, so no output of an exited process is lost.
    fn drain(&self) {
        poll_until(Duration::from_secs(2), || {
            self.readers_done.load(Ordering::SeqCst) >= 2
        });
    }

    /// The lines of stderr (`Some(true)`), stdout (`Some(false)`) or both, joined.
    fn text(&self, which: Option<bool>) -> String {
        lock(&self.lines)
            .iter()
            .filter(|(e, _)| which.is_none_or(|w| w == *e))
            .map(|(_, t)| t.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The `host:port` after `listening on http://` in a log line (plain text or JSON).
fn parse_listen_addr(line: &str) -> Option<String> {
    let rest = &line[line.find(LISTENING)? + LISTENING.len()..];
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
    f.into_temp_path()
}

fn command(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin);
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

/// Run the binary to completion; killed after `timeout`.
pub fn run_corral(bin: &str, args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let bin = Path::new(bin);
    let mut child = command(bin, args, env)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
    let cap = Capture::attach(&mut child, bin);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            break child.wait().expect("wait after kill");
        }
        std::thread::sleep(POLL);
    };
    cap.drain();
    Output {
        code: status.code(),
        stdout: cap.text(Some(false)),
        stderr: cap.text(Some(true)),
    }
}

/// A running corral process; derefs to an [`Api`] on its address.
pub struct CorralProcess {
    api: Api,
    child: Mutex<Child>,
    cap: Capture,
    exit: Mutex<Option<ExitStatus>>,
    /// The child's stdin when piped ([`CorralProcess::start_args`]); `None` once closed.
    stdin: Mutex<Option<ChildStdin>>,
    config: Option<TempPath>,
}

impl CorralProcess {
    /// Start `bin --config <temp file with yaml>` with extra environment variables and wait
    /// until it is listening.
    pub fn start(bin: &Path, yaml: &str, env: &[(&str, &str)]) -> CorralProcess {
        let config = write_config(yaml);
        let path = config.to_str().expect("utf-8 temp path").to_string();
        let cmd = command(bin, &["--config", &path], env);
        CorralProcess::launch(bin, cmd, Some(config))
    }

    /// Start `bin args...` with a piped stdin and wait until it is listening.
    pub fn start_args(bin: &Path, args: &[&str]) -> CorralProcess {
        let mut cmd = command(bin, args, &[]);
        cmd.stdin(Stdio::piped());
        CorralProcess::launch(bin, cmd, None)
    }

    fn launch(bin: &Path, mut cmd: Command, config: Option<TempPath>) -> CorralProcess {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let cap = Capture::attach(&mut child, bin);
        let stdin = Mutex::new(child.stdin.take());
        let mut me = CorralProcess {
            api: Api::new("http://unknown"),
            child: Mutex::new(child),
            cap,
            exit: Mutex::new(None),
            stdin,
            config,
        };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let found = lock(&me.cap.lines)
                .iter()
                .find_map(|(_, l)| parse_listen_addr(l));
            if let Some(addr) = found {
                me.api = Api::new(&format!("http://{addr}"));
                return me;
            }
            let why = if let Some(status) = me.try_exit() {
                format!("exited with {status} before logging \"{LISTENING}\"")
            } else if Instant::now() >= deadline {
                me.kill();
                format!("did not log \"{LISTENING}\" within {START_DEADLINE:?}")
            } else {
                std::thread::sleep(POLL);
                continue;
            };
            // Drop prints the output.
            panic!("{} {why}", bin.display());
        }
    }

    /// Replaces the config file's contents (SIGHUP makes the process read them).
    pub fn rewrite_config(&self, yaml: &str) {
        let path = self.config.as_ref().expect("started with a config file");
        std::fs::write(path, yaml).expect("rewrite the config file");
    }

    /// Writes `line` and a newline to the process's stdin (see [`CorralProcess::start_args`]).
    pub fn send_line(&self, line: &str) {
        let mut stdin = lock(&self.stdin);
        let pipe = stdin.as_mut().expect("a piped, open stdin");
        writeln!(pipe, "{line}").expect("write to the process's stdin");
        pipe.flush().expect("flush the process's stdin");
    }

    /// Closes the process's stdin: it reads end of input.
    pub fn close_stdin(&self) {
        lock(&self.stdin).take();
    }

    /// All output so far (stdout and stderr interleaved in arrival order), one line each.
    pub fn logs(&self) -> String {
        self.cap.text(None)
    }

    /// Lines so far that contain `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        lock(&self.cap.lines)
            .iter()
            .filter(|(_, l)| l.contains(needle))
            .count()
    }

    /// Wait until some line contains `needle`; false at the timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        poll_until(timeout, || self.count_log(needle) > 0)
    }

    /// Send a signal by name (`TERM`, `INT`, `HUP`, ...) with `kill(1)`; a no-op once the
    /// process has exited (its pid may have been reused).
    pub fn signal(&self, sig: &str) {
        if self.try_exit().is_some() {
            return;
        }
        let pid = lock(&self.child).id().to_string();
        let status = Command::new("kill")
            .args(["-s", sig, &pid])
            .status()
            .unwrap_or_else(|e| panic!("run kill: {e}"));
        assert!(status.success(), "kill -s {sig} {pid} failed");
    }

    /// Exit status if the process has exited (reaping it), without waiting.
    fn try_exit(&self) -> Option<ExitStatus> {
        let mut exit = lock(&self.exit);
        if exit.is_none() {
            *exit = lock(&self.child).try_wait().ok().flatten();
        }
        *exit
    }

    /// Wait up to `timeout` for the process to exit: `Some(code)`, or `Some(128 + signal)`
    /// when a signal killed it; `None` if it is still running.
    pub fn wait_exit(&self, timeout: Duration) -> Option<i32> {
        poll_until(timeout, || self.try_exit().is_some());
        let status = self.try_exit()?;
        self.cap.drain();
        status.code().or_else(|| status.signal().map(|s| 128 + s))
    }

    /// SIGKILL and reap (no-op if it already exited).
    fn kill(&self) {
        let mut exit = lock(&self.exit);
        if exit.is_none() {
            let mut child = lock(&self.child);
            let _ = child.kill();
            *exit = child.wait().ok();
        }
    }
}

impl Deref for CorralProcess {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for CorralProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            self.cap.drain();
            eprintln!(
                "---- output of corral ----\n{}\n---- end of output ----",
                self.logs()
            );
        }
    }
}
