//! The status page (SPEC 7.4) in a real browser: Debian's headless Chromium driven by
//! `tests/ui/ui_test.mjs` (playwright-core), against Corral in-process and mock backends.
//!
//! Needs `node`, `/usr/bin/chromium` and playwright-core in `target/ui-test/node_modules`;
//! `.ci/run` installs them when missing and runs this test with `CORRAL_UI_REQUIRED=1`, which
//! turns a missing piece into a failure. Without it the test says what is missing and passes.
//! `CORRAL_UI_SCREENSHOT=docs/ui.png` also writes the README's screenshot.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use house::*;

/// The whole browser test, Chromium's start included.
const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "ui-test-token";

fn node_modules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-test/node_modules")
}

/// What is missing for the browser test, if anything.
fn missing() -> Option<String> {
    let chromium = std::env::var("CORRAL_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
    if Command::new("node").arg("--version").output().is_err() {
        return Some("node is not installed".into());
    }
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is not installed (apt-get install chromium)"
        ));
    }
    let driver = node_modules().join("playwright-core");
    if !driver.exists() {
        return Some(format!(
            "{} is missing (npm ci in target/ui-test with tests/ui/package*.json)",
            driver.display()
        ));
    }
    None
}

/// A port where nothing listens: an endpoint that is unhealthy from its first check.
fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn the_status_page_shows_the_fleet_live_and_asks_for_the_token() {
    if let Some(why) = missing() {
        assert!(
            std::env::var_os("CORRAL_UI_REQUIRED").is_none(),
            "CORRAL_UI_REQUIRED is set, but {why}"
        );
        eprintln!("skipping the browser test of /internal/ui: {why}");
        return;
    }
    let gpu1 = MockBackend::start_named(Persona::Vllm, "gpu-1");
    gpu1.set_models(&["llama3:8b", "qwen2.5:7b"]);
    let gpu2 = MockBackend::start_named(Persona::Ollama, "gpu-2");
    gpu2.set_models(&["llama3:8b"]);
    let checks = [("check_interval", "500ms"), ("check_timeout", "300ms")];
    let corral = Scenario::new()
        .mock_with(&gpu1, &[checks[0], checks[1], ("priority", "100")])
        .mock_with(&gpu2, &checks)
        .endpoint_with("gpu-3", &dead_url(), "vllm", &checks)
        .start();
    let guarded = Scenario::new()
        .server("internal_token", TOKEN)
        .mock_with(&gpu2, &checks)
        .start();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/ui_test.mjs");
    let mut args = vec![
        script.display().to_string(),
        corral.url().to_string(),
        guarded.url().to_string(),
        TOKEN.to_string(),
    ];
    if let Ok(path) = std::env::var("CORRAL_UI_SCREENSHOT") {
        args.push(path);
    }
    let mut node = Command::new("node")
        .args(&args)
        .env("CORRAL_UI_NODE_MODULES", node_modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn node");
    let mut stdin = node.stdin.take().unwrap();
    let stdout = node.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + DEADLINE;
    let mut ok = false;
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line == "KILL gpu-1" => {
                gpu1.refuse();
                writeln!(stdin, "killed").expect("answer the script");
            }
            Ok(line) if line == "OK" => ok = true,
            Ok(line) => eprintln!("ui_test.mjs: {line}"),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = loop {
        if let Some(status) = node.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.unwrap_or_else(|| panic!("the browser test ran past {DEADLINE:?}"));
    assert!(
        ok && status.success(),
        "the browser test failed ({status}); its steps are above"
    );
}
