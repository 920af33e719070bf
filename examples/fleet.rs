//! Fleet benchmark: N endpoint actors on one control-plane thread, all checking one local mock
//! backend every second. Prints the control-plane thread's CPU share, the process RSS per
//! endpoint, and the check rate actually achieved.
//!
//!     cargo run --release --example fleet -- 1000 10000
//!
//! Options: endpoint counts as arguments (default 1000 10000); FLEET_SECONDS (measurement
//! window, default 10). Traffic goes to 127.0.0.1 only and stops when the run ends.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use corral_actors::messages::{AddEndpoint, SnapshotFleet};
use corral_actors::profiles::EndpointType;
use corral_actors::settings::EndpointSettings;
use corral_actors::FleetSupervisor;

/// Clock ticks per second for /proc times (100 on Linux everywhere that matters).
const TICKS: f64 = 100.0;

fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000, 10_000]
    } else {
        counts
    };
    let window = Duration::from_secs(
        std::env::var("FLEET_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    );
    let (port, hits, mock_tid) = start_mock();
    println!(
        "mock backend on 127.0.0.1:{port}; window {}s; interval 1s",
        window.as_secs()
    );
    println!("| endpoints | checks/s | control-plane CPU (one core) | mock CPU | RSS total | RSS per endpoint |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in counts {
        run(n, port, &hits, &mock_tid, window);
    }
}

fn run(n: usize, port: u16, hits: &AtomicU64, mock_tid: &AtomicU32, window: Duration) {
    let rss_before = rss_kib();
    let system = actix_rt::System::new();
    system.block_on(async {
        let control_plane = actix_rt::Arbiter::new();
        let (tx, rx) = mpsc::channel();
        control_plane.spawn_fn(move || tx.send(thread_id()).unwrap());
        let cp_tid = rx.recv().unwrap();
        let (supervisor, registry) = FleetSupervisor::start_on(&control_plane.handle());
        for i in 0..n {
            let mut s = EndpointSettings::new(
                &format!("ep-{i}"),
                &format!("http://127.0.0.1:{port}"),
                EndpointType::Vllm,
            );
            s.check_interval = Duration::from_secs(1);
            s.check_timeout = Duration::from_millis(900);
            s.jitter = 0.0;
            s.discovery.enabled = false;
            supervisor.send(AddEndpoint(Arc::new(s))).await.unwrap();
        }
        // Let the first checks (all at once) settle, then measure a steady window.
        wait_all_checked(&registry, n).await;
        actix_rt::time::sleep(Duration::from_secs(2)).await;
        let (cp0, mock0, hits0, t0) = (
            cpu_ticks(cp_tid),
            cpu_ticks(mock_tid.load(Ordering::Relaxed)),
            hits.load(Ordering::Relaxed),
            Instant::now(),
        );
        actix_rt::time::sleep(window).await;
        let secs = t0.elapsed().as_secs_f64();
        let cp = (cpu_ticks(cp_tid) - cp0) as f64 / TICKS / secs * 100.0;
        let mock =
            (cpu_ticks(mock_tid.load(Ordering::Relaxed)) - mock0) as f64 / TICKS / secs * 100.0;
        let rate = (hits.load(Ordering::Relaxed) - hits0) as f64 / secs;
        let rss = rss_kib();
        let per = (rss.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;
        println!(
            "| {n} | {rate:.0} | {cp:.1}% | {mock:.1}% | {:.1} MiB | {:.1} KiB |",
            rss as f64 / 1024.0,
            per / 1024.0
        );
        control_plane.stop();
        let _ = control_plane.join();
    });
}

async fn wait_all_checked(registry: &corral_actors::RegistryHandle, n: usize) {
    for _ in 0..600 {
        if let Some(r) = registry.get() {
            let snap = r.send(SnapshotFleet).await.unwrap();
            if snap.endpoints.len() == n && snap.endpoints.iter().all(|e| e.view.checked) {
                return;
            }
        }
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("endpoints were not all checked within 60s");
}

/// A minimal backend answering `GET /health` on its own thread; counts hits.
fn start_mock() -> (u16, Arc<AtomicU64>, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let worker = Arc::new(AtomicU32::new(0));
    let worker_tid = worker.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let server = HttpServer::new(move || {
                let counter = counter.clone();
                let worker_tid = worker_tid.clone();
                App::new().route(
                    "/health",
                    web::get().to(move || {
                        if counter.fetch_add(1, Ordering::Relaxed) == 0 {
                            // The single worker thread is the one whose CPU we report.
                            worker_tid.store(thread_id(), Ordering::Relaxed);
                        }
                        async { HttpResponse::Ok().body("{}") }
                    }),
                )
            })
            .workers(1)
            .backlog(16_384)
            .max_connections(100_000)
            .listen(listener)
            .unwrap()
            .disable_signals()
            .run();
            tx.send(port).unwrap();
            server.await.unwrap();
        })
    });
    (rx.recv().unwrap(), hits, worker)
}

fn thread_id() -> u32 {
    let link = std::fs::read_link("/proc/thread-self").unwrap();
    link.file_name().unwrap().to_str().unwrap().parse().unwrap()
}

fn cpu_ticks(tid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command: utime is the 14th field, stime the 15th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
