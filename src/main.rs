//! The `corral` binary: parse arguments, load and validate the config, start logging, bind
//! the port, and hand over to [`corral::run`]. Every startup error is one line on stderr and
//! exit code 1, before anything is served.

use std::future::Future;
use std::net::TcpListener;
use std::process::ExitCode;

use actix_rt::signal::unix::{signal, Signal, SignalKind};
use corral::cli::{self, Command};
use corral::config;

fn main() -> ExitCode {
    let command = match cli::parse(std::env::args_os().skip(1)) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let config_path = match command {
        Command::Help => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Command::Version => {
            println!("corral {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::CheckConfig { config } => return check_config(config.as_deref()),
        Command::Demo { port } => return demo(port),
        Command::Run { config } => config,
    };
    let config = match config::locate(config_path.as_deref()).and_then(|p| config::load(&p)) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    corral::telemetry::init(&config.logging);
    if let Some(source) = &config.source {
        tracing::info!(file = %source.display(), endpoints = config.endpoints.len(), "config loaded");
    }
    if let Some(warning) = config.ignored_settings_warning() {
        tracing::warn!("{warning}");
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let (host, port) = (config.server.host.clone(), config.server.port);
    let listener = match TcpListener::bind((host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {host}:{port}: {e}")),
    };
    let system = actix_rt::System::new();
    // Installed before Corral announces that it listens: a signal that arrives at any moment
    // after that line drains gracefully instead of killing the process.
    let signals = match system.block_on(async { Signals::install() }) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot install signal handlers: {e}")),
    };
    let (shutdown, reloads) = signals.split();
    match system.block_on(corral::run_with_reloads(
        config, listener, shutdown, reloads,
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

/// SIGINT and SIGTERM start a graceful drain; SIGHUP reloads the config file (SPEC 2) and so
/// never ends the process (SPEC 11).
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// A future that completes at the first SIGINT or SIGTERM, and the stream of SIGHUPs.
    fn split(
        self,
    ) -> (
        impl Future<Output = ()>,
        impl futures_util::Stream<Item = ()>,
    ) {
        let Signals {
            mut term,
            mut int,
            hup,
        } = self;
        let shutdown = async move {
            use futures_util::future::{select, Either};
            let name = match select(Box::pin(term.recv()), Box::pin(int.recv())).await {
                Either::Left(_) => "SIGTERM",
                Either::Right(_) => "SIGINT",
            };
            tracing::info!("{name} received; draining in-flight requests");
        };
        let reloads = futures_util::stream::unfold(hup, |mut hup| async move {
            hup.recv().await?;
            tracing::info!("SIGHUP received; reloading the config file");
            Some(((), hup))
        });
        (shutdown, reloads)
    }
}

/// `corral demo`: simulated backends and Corral in this process (SPEC 7.5). SIGINT, SIGTERM
/// or the end of stdin end it; SIGHUP is ignored (there is no file to reload).
fn demo(port: u16) -> ExitCode {
    corral::telemetry::init(&corral::demo::logging());
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            return fail(&format!(
                "cannot listen on 127.0.0.1:{port}: {e} (try --port)"
            ))
        }
    };
    let system = actix_rt::System::new();
    let signals = match system.block_on(async { Signals::install() }) {
        Ok(s) => s,
        Err(e) => return fail(&format!("cannot install signal handlers: {e}")),
    };
    let (shutdown, _reloads) = signals.split();
    match system.block_on(corral::demo::run(listener, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn check_config(path: Option<&std::path::Path>) -> ExitCode {
    match config::locate(path).and_then(|p| config::load(&p).map(|c| (p, c))) {
        Ok((path, config)) => {
            if let Some(warning) = config.ignored_settings_warning() {
                eprintln!("corral: warning: {warning}");
            }
            for warning in &config.warnings {
                eprintln!("corral: warning: {warning}");
            }
            println!(
                "{}: ok ({} endpoints)",
                path.display(),
                config.endpoints.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("corral: {message}");
    ExitCode::from(1)
}
