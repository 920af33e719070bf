//! The `corral` binary: parse arguments, load and validate the config, start logging, bind
//! the port, and hand over to [`corral::run`]. Every startup error is one line on stderr and
//! exit code 1, before anything is served.

use std::net::TcpListener;
use std::process::ExitCode;

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
    let (host, port) = (config.server.host.clone(), config.server.port);
    let listener = match TcpListener::bind((host.as_str(), port)) {
        Ok(l) => l,
        Err(e) => return fail(&format!("cannot listen on {host}:{port}: {e}")),
    };
    match actix_rt::System::new().block_on(corral::run(config, listener)) {
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
