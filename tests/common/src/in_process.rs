//! Corral in the test's own process: [`corral::run`] on a `127.0.0.1:0` listener, in a
//! thread of its own with its own `actix_rt::System`, stopped through the shutdown future it
//! was given. Many can run at once, each with its own port, actors and state, so the tests
//! that need no process of their own run in parallel and start in milliseconds.
//!
//! What an in-process Corral cannot give is its own log: tracing's subscriber is global to
//! the process. Tests of log lines, signals and exit codes use [`crate::CorralProcess`].

use std::net::TcpListener;
use std::ops::Deref;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempPath;
use tokio::sync::oneshot;

use crate::client::Api;
use crate::wait::{poll_until, POLL};

/// How long `Corral::start` waits for the server to answer.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// A running in-process Corral. Dropping it stops it (in-flight requests get the config's
/// `server.shutdown_timeout`) and joins its thread; the status API and the proxy are reached
/// through [`Api`], which it derefs to.
pub struct Corral {
    api: Api,
    /// The config file it was started from, when it was (so that it can reload).
    config_file: Option<TempPath>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// How long Drop waits for the thread: the shutdown grace and a margin.
    join_deadline: Duration,
}

impl Corral {
    /// Run `config` (its `server.host` and `server.port` are not used: the listener is
    /// always a fresh `127.0.0.1:0`) and return once `/internal/health` answers.
    pub fn start(config: corral::config::Config) -> Corral {
        Corral::start_with_file(config, None)
    }

    /// As [`Corral::start`], with the file `config` was loaded from kept for reloads.
    pub fn start_with_file(config: corral::config::Config, file: Option<TempPath>) -> Corral {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let join_deadline = config.server.shutdown_timeout + Duration::from_secs(5);
        let thread = std::thread::Builder::new()
            .name(format!("corral-{}", addr.port()))
            .spawn(move || {
                // The sender's drop (a test that panicked) stops Corral as `send` does.
                let shutdown = async move {
                    let _ = stopped.await;
                };
                actix_rt::System::new().block_on(corral::run(config, listener, shutdown))
            })
            .expect("spawn the corral thread");
        let mut me = Corral {
            api: Api::new(&format!("http://{addr}")),
            config_file: file,
            stop: Some(stop),
            thread: Some(thread),
            join_deadline,
        };
        let answered = poll_until(START_DEADLINE, || {
            me.thread.as_ref().is_some_and(|t| t.is_finished())
                || me
                    .api
                    .try_request("GET", "/internal/health", &[], b"")
                    .is_ok()
        });
        if let Some(t) = me.thread.take_if(|t| t.is_finished()) {
            match t.join() {
                Ok(result) => panic!("corral::run ended before serving: {result:?}"),
                Err(_) => panic!("corral::run panicked before serving"),
            }
        }
        assert!(answered, "corral did not answer within {START_DEADLINE:?}");
        me
    }
}

impl Corral {
    /// Replaces the config file's contents (the next reload reads them).
    pub fn rewrite_config(&self, yaml: &str) {
        let path = self
            .config_file
            .as_ref()
            .expect("started from a file (Scenario::start_from_file)");
        std::fs::write(path, yaml).expect("rewrite the config file");
    }
}

impl Deref for Corral {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Corral {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + self.join_deadline;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if thread.is_finished() {
            let result = thread.join();
            if !std::thread::panicking() {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => panic!("corral::run failed: {e}"),
                    Err(_) => panic!("corral::run panicked"),
                }
            }
        } else if !std::thread::panicking() {
            panic!(
                "corral did not stop within {:?} of its shutdown signal",
                self.join_deadline
            );
        }
    }
}
