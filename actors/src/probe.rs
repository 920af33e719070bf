//! Health probes and model discovery over HTTP (SPEC 4.1, 4.5): the shell between the
//! endpoint machine and the network.
//!
//! The endpoint actor builds a [`CheckTarget`], runs [`check`] or [`discover`] as a future and
//! feeds the [`CheckReport`] into its machine; what went wrong arrives as a typed
//! [`FailureReason`](crate::outcome::FailureReason). The deadline wraps the whole exchange (connect,
//! request, response, body) and is the endpoint's `check_timeout` exactly: the shared client
//! is built without timeouts of its own, so none cuts in earlier.

use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_rt::time::{timeout, Instant};
use awc::http::header::{HttpDate, RETRY_AFTER, USER_AGENT};
use awc::http::StatusCode;
use awc::{Client, Connector};

use futures_util::future::LocalBoxFuture;

use crate::load::{LoadSource, MAX_LOAD_BODY};
use crate::load_reads::LoadRead;
use crate::outcome::{classify_status, says_loading, CheckReport, FailureReason, ProbeOutcome};
use crate::profiles::{EndpointType, ModelInfo};
use crate::settings::EndpointSettings;
use crate::transport::{classify_send_error, may_be_stale_connection};

/// Largest body read from a health or model-list response: 10,000 models of a few hundred
/// bytes fit (SPEC 11); more would be parsed on the control-plane thread for nothing.
const BODY_LIMIT: usize = 4 * 1024 * 1024;

thread_local! {
    static CLIENT: OnceCell<Client> = const { OnceCell::new() };
    static FRESH_CLIENT: OnceCell<Client> = const { OnceCell::new() };
}

/// A client that keeps no connection alive: every request it sends opens a new one. Used to
/// send again a request that failed on a reused connection (SPEC 9.6).
fn fresh_client() -> Client {
    FRESH_CLIENT.with(|c| c.get_or_init(|| probe_client(Some(Duration::ZERO))).clone())
}

/// The probe client of this thread, shared by every endpoint actor on it: one connection pool
/// per arbiter instead of one per actor keeps thousands of endpoints cheap. `awc::Client` is
/// `!Send`, so it cannot be shared further.
pub fn thread_client() -> Client {
    CLIENT.with(|c| c.get_or_init(|| probe_client(None)).clone())
}

/// A probe client: no deadline of its own (the probe's governs; these only must not cut in
/// first), no redirects; `keep_alive` as given, or awc's default.
fn probe_client(keep_alive: Option<Duration>) -> Client {
    let mut connector = Connector::new()
        .limit(0)
        .timeout(Duration::from_secs(3600))
        .handshake_timeout(Duration::from_secs(3600));
    if let Some(keep_alive) = keep_alive {
        connector = connector.conn_keep_alive(keep_alive);
    }
    Client::builder()
        .connector(connector)
        .disable_timeout()
        .disable_redirects()
        .finish()
}

/// Parses `Retry-After`: delta seconds or an HTTP date (a date in the past means "now").
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date: HttpDate = value.parse().ok()?;
    let at: SystemTime = date.into();
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How an endpoint actor reaches its backend. [`HttpProber`] in production; tests script it
/// to drive an actor through exact sequences under paused time (`actors/tests/`).
pub trait Prober {
    /// One health check (see [`check`]).
    fn check(&self, target: CheckTarget) -> LocalBoxFuture<'static, CheckReport>;
    /// One model-list fetch of `settings.model_url` (see [`discover`]).
    fn discover(
        &self,
        settings: Arc<EndpointSettings>,
    ) -> LocalBoxFuture<'static, Result<Vec<ModelInfo>, FailureReason>>;
    /// One read of the backend's own load report from `source` (see [`read_load`]). A
    /// prober that cannot read load (the scripted ones of tests) finds every source absent.
    fn load(
        &self,
        _settings: Arc<EndpointSettings>,
        _source: LoadSource,
    ) -> LocalBoxFuture<'static, LoadRead> {
        Box::pin(async { LoadRead::Absent { status: 404 } })
    }
}

/// Makes the prober of each new endpoint actor (called on the control-plane thread).
pub type ProberFactory = Arc<dyn Fn() -> Rc<dyn Prober> + Send + Sync>;

/// The real thing: HTTP over this thread's shared awc client.
pub struct HttpProber(Client);

impl HttpProber {
    pub fn factory() -> ProberFactory {
        Arc::new(|| Rc::new(HttpProber(thread_client())))
    }
}

impl Prober for HttpProber {
    fn check(&self, target: CheckTarget) -> LocalBoxFuture<'static, CheckReport> {
        let client = self.0.clone();
        Box::pin(async move { check(&client, &target).await })
    }

    fn discover(
        &self,
        s: Arc<EndpointSettings>,
    ) -> LocalBoxFuture<'static, Result<Vec<ModelInfo>, FailureReason>> {
        let client = self.0.clone();
        Box::pin(async move {
            discover(
                &client,
                &s.model_url,
                &s.headers,
                s.kind,
                s.discovery.timeout,
            )
            .await
        })
    }

    fn load(
        &self,
        s: Arc<EndpointSettings>,
        source: LoadSource,
    ) -> LocalBoxFuture<'static, LoadRead> {
        let client = self.0.clone();
        Box::pin(async move {
            let url = format!("{}{}", s.url, source.path());
            read_load(&client, &url, &s.headers, source, s.check_timeout).await
        })
    }
}

/// Everything one check needs, cloned out of the actor so the future owns it.
#[derive(Debug, Clone)]
pub struct CheckTarget {
    pub url: String,
    /// Probed instead when `url` is a default path that answers 404/405 (SPEC 4.1).
    pub fallback_url: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    /// `require_models`: the model list must also name at least one model.
    pub require_models: Option<(String, EndpointType)>,
}

struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

async fn fetch(
    client: &Client,
    url: &str,
    headers: &[(String, String)],
) -> Result<Answer, FailureReason> {
    let request = |client: &Client| {
        let mut req = client.get(url).insert_header((
            USER_AGENT,
            concat!("corral-health/", env!("CARGO_PKG_VERSION")),
        ));
        for (name, value) in headers {
            req = req.insert_header((name.as_str(), value.as_str()));
        }
        req
    };
    let mut resp = match request(client).send().await {
        Ok(resp) => resp,
        // The server may have closed a kept-alive connection without saying so: ask once
        // more on a new connection before calling it a failure (SPEC 9.6).
        Err(e) if may_be_stale_connection(&e) => request(&fresh_client())
            .send()
            .await
            .map_err(|e| classify_send_error(&e))?,
        Err(e) => return Err(classify_send_error(&e)),
    };
    let status = resp.status();
    let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    } else {
        None
    };
    let body = resp
        .body()
        .limit(BODY_LIMIT)
        .await
        .map_err(|e| FailureReason::InvalidResponse(e.to_string().to_lowercase()))?;
    Ok(Answer {
        status: status.as_u16(),
        retry_after,
        body: body.to_vec(),
    })
}

/// One health check: GET the health URL within `timeout` (fallback and model list included).
pub async fn check(client: &Client, target: &CheckTarget) -> CheckReport {
    let started = Instant::now();
    match timeout(target.timeout, check_inner(client, target)).await {
        Ok(mut report) => {
            set_latency(&mut report.outcome, started.elapsed());
            report
        }
        Err(_) => CheckReport::new(ProbeOutcome::Failed {
            reason: FailureReason::Timeout,
            latency: started.elapsed(),
            retry_after: None,
        }),
    }
}

fn set_latency(outcome: &mut ProbeOutcome, elapsed: Duration) {
    match outcome {
        ProbeOutcome::Passed { latency }
        | ProbeOutcome::Warming { latency }
        | ProbeOutcome::Failed { latency, .. } => *latency = elapsed,
    }
}

fn failed(reason: FailureReason, retry_after: Option<Duration>) -> ProbeOutcome {
    ProbeOutcome::Failed {
        reason,
        latency: Duration::ZERO,
        retry_after,
    }
}

async fn check_inner(client: &Client, target: &CheckTarget) -> CheckReport {
    let mut report = CheckReport::new(ProbeOutcome::Passed {
        latency: Duration::ZERO,
    });
    let mut answer = match fetch(client, &target.url, &target.headers).await {
        Ok(a) => a,
        Err(reason) => {
            report.outcome = failed(reason, None);
            return report;
        }
    };
    if matches!(answer.status, 404 | 405) {
        if let Some(fallback) = &target.fallback_url {
            report.switched_to_fallback = true;
            answer = match fetch(client, fallback, &target.headers).await {
                Ok(a) => a,
                Err(reason) => {
                    report.outcome = failed(reason, None);
                    return report;
                }
            };
        }
    }
    if says_loading(answer.status, &answer.body) {
        report.outcome = ProbeOutcome::Warming {
            latency: Duration::ZERO,
        };
        return report;
    }
    if let Some(reason) = classify_status(answer.status) {
        report.outcome = failed(reason, answer.retry_after);
        return report;
    }
    if let Some((model_url, kind)) = &target.require_models {
        match discover_inner(client, model_url, &target.headers, *kind).await {
            Ok(models) if !models.is_empty() => report.models = Some(models),
            Ok(_) => {
                report.outcome = failed(FailureReason::NoModels("empty model list".into()), None)
            }
            Err(reason) => {
                report.outcome = failed(FailureReason::NoModels(reason.to_string()), None)
            }
        }
    }
    report
}

/// Fetches and parses the model list within `timeout`.
pub async fn discover(
    client: &Client,
    url: &str,
    headers: &[(String, String)],
    kind: EndpointType,
    limit: Duration,
) -> Result<Vec<ModelInfo>, FailureReason> {
    timeout(limit, discover_inner(client, url, headers, kind))
        .await
        .unwrap_or(Err(FailureReason::Timeout))
}

async fn discover_inner(
    client: &Client,
    url: &str,
    headers: &[(String, String)],
    kind: EndpointType,
) -> Result<Vec<ModelInfo>, FailureReason> {
    let answer = fetch(client, url, headers).await?;
    if let Some(reason) = classify_status(answer.status) {
        return Err(reason);
    }
    kind.parse_models(&answer.body)
        .map_err(|e| FailureReason::InvalidResponse(e.to_string()))
}

/// One read of a load source: GET `url` with the endpoint's headers within `limit` (the
/// endpoint's `check_timeout`), sorted into what the endpoint's [`LoadReads`] needs.
///
/// [`LoadReads`]: crate::load_reads::LoadReads
pub async fn read_load(
    client: &Client,
    url: &str,
    headers: &[(String, String)],
    source: LoadSource,
    limit: Duration,
) -> LoadRead {
    let answer = match timeout(limit, fetch(client, url, headers)).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(reason)) => return LoadRead::Failed(reason.to_string()),
        Err(_) => return LoadRead::Failed(FailureReason::Timeout.to_string()),
    };
    match answer.status {
        404 | 405 | 501 => LoadRead::Absent {
            status: answer.status,
        },
        200..=299 if answer.body.len() > MAX_LOAD_BODY => LoadRead::Unparseable(format!(
            "{}: body over {} bytes",
            source.name(),
            MAX_LOAD_BODY
        )),
        200..=299 => match source.parse(&answer.body) {
            Ok(report) => LoadRead::Report(report),
            Err(e) => LoadRead::Unparseable(e.to_string()),
        },
        status => LoadRead::Failed(format!("http {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = HttpDate::from(now + Duration::from_secs(90)).to_string();
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = HttpDate::from(now - Duration::from_secs(90)).to_string();
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
