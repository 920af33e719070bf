//! awc's errors, sorted into [`FailureReason`]s and [`Blame`]: the one module that knows awc's
//! error types. Used by the health probes here and by the proxy in the `corral` crate, so that
//! a refused connection reads the same whether a check or a request met it.

use actix_http::error::ParseError;
use awc::error::{ConnectError, SendRequestError};

use crate::outcome::{classify_io, Blame, FailureReason};

/// Sorts an awc send error into a reason.
pub fn classify_send_error(err: &SendRequestError) -> FailureReason {
    match err {
        SendRequestError::Connect(c) => classify_connect_error(c),
        SendRequestError::Timeout => FailureReason::Timeout,
        SendRequestError::Send(e) => classify_io(e),
        // A reset before a response head arrived is a connection failure, not a bad answer.
        SendRequestError::Response(ParseError::Io(e)) => classify_io(e),
        SendRequestError::Response(ParseError::Incomplete) => FailureReason::ConnectionReset,
        SendRequestError::Response(e) => FailureReason::InvalidResponse(e.to_string()),
        SendRequestError::Url(e) => FailureReason::Other(format!("bad url: {e}")),
        other => FailureReason::Other(other.to_string().to_lowercase()),
    }
}

/// Who caused an awc send error. The request's own URL, headers or method are the client's
/// (awc refused to build or send them: nothing reached the backend); a connection that could
/// not be made or broke is the backend's.
pub fn blame_of(err: &SendRequestError) -> Blame {
    match err {
        SendRequestError::Connect(_)
        | SendRequestError::Send(_)
        | SendRequestError::Response(_)
        | SendRequestError::H2(_)
        | SendRequestError::Timeout => Blame::Backend,
        SendRequestError::Url(_)
        | SendRequestError::Http(_)
        | SendRequestError::TunnelNotSupported
        | SendRequestError::Body(_) => Blame::Client,
        _ => Blame::Corral,
    }
}

/// Whether a send error may come from a kept-alive connection the server had closed: it
/// broke while sending or before any byte of a response head (SPEC 9.6). A refused, timed-out
/// or unresolvable connect was a new connection; a malformed head means bytes arrived.
pub fn may_be_stale_connection(err: &SendRequestError) -> bool {
    matches!(
        err,
        SendRequestError::Send(_)
            | SendRequestError::Response(ParseError::Io(_))
            | SendRequestError::Response(ParseError::Incomplete)
            | SendRequestError::Connect(ConnectError::Disconnected)
    )
}

fn classify_connect_error(err: &ConnectError) -> FailureReason {
    match err {
        ConnectError::Io(e) => match classify_io(e) {
            FailureReason::Timeout => FailureReason::ConnectTimeout,
            other => other,
        },
        ConnectError::Timeout => FailureReason::ConnectTimeout,
        ConnectError::Resolver(_) | ConnectError::NoRecords | ConnectError::Unresolved => {
            FailureReason::Dns
        }
        ConnectError::Disconnected => FailureReason::ConnectionReset,
        ConnectError::SslIsNotSupported => FailureReason::Tls("not supported".into()),
        other => {
            let text = other.to_string().to_lowercase();
            if text.contains("ssl") || text.contains("tls") || text.contains("certificate") {
                FailureReason::Tls(text)
            } else {
                FailureReason::Other(text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_awc_will_not_send_are_the_clients_fault() {
        assert_eq!(
            blame_of(&SendRequestError::TunnelNotSupported),
            Blame::Client
        );
        assert_eq!(
            blame_of(&SendRequestError::Connect(ConnectError::Disconnected)),
            Blame::Backend
        );
    }

    #[test]
    fn connect_errors_classify() {
        assert_eq!(
            classify_send_error(&SendRequestError::Connect(ConnectError::Timeout)),
            FailureReason::ConnectTimeout
        );
        assert_eq!(
            classify_send_error(&SendRequestError::Connect(ConnectError::Unresolved)),
            FailureReason::Dns
        );
        assert_eq!(
            classify_send_error(&SendRequestError::Timeout),
            FailureReason::Timeout
        );
    }
}
