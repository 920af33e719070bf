//! [`RawConn`]: HTTP/1.1 by hand over a plain `TcpStream`, for the tests where the bytes on
//! the wire are the point — requests no client library would send (lying lengths, bad chunk
//! sizes, duplicated framing headers, odd request targets), clients that send slowly, vanish
//! at a chosen moment or stop reading, and `Expect: 100-continue` handled step by step.
//!
//! Every read has a deadline given by the caller; nothing here waits without one. Responses
//! come back as the house's [`Resp`], so they read like the `ureq` client's.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::client::Resp;

/// Deadline for connecting and for each write.
const IO_DEADLINE: Duration = Duration::from_secs(5);

/// One client connection.
pub struct RawConn {
    stream: TcpStream,
    /// Bytes read off the socket and not yet consumed by a parse.
    pending: Vec<u8>,
}

impl RawConn {
    /// Connect to `host:port`; panics if that fails.
    pub fn connect(authority: &str) -> RawConn {
        let addr = authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| panic!("not an address: {authority}"));
        let stream = TcpStream::connect_timeout(&addr, IO_DEADLINE)
            .unwrap_or_else(|e| panic!("connect {authority}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_write_timeout(Some(IO_DEADLINE))
            .expect("write timeout");
        RawConn {
            stream,
            pending: Vec::new(),
        }
    }

    /// This end's address: with the server's, it names the connection (in `/proc/net/tcp`,
    /// say, to see whether the server has read what was sent).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream
            .local_addr()
            .expect("local address of a connected socket")
    }

    /// Write all of `bytes` (an error once the peer has closed).
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-close: the peer reads EOF where more request bytes would be.
    pub fn finish_sending(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The next response head (a `1xx` interim one included), without its body.
    pub fn head(&mut self, timeout: Duration) -> std::io::Result<Resp> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                let head: Vec<u8> = self.pending.drain(..end + 4).collect();
                return parse_head(&head);
            }
            if self.fill(deadline)? == 0 {
                return Err(eof("in a response head", &self.pending));
            }
        }
    }

    /// The next final response head (interim `1xx` heads are skipped), without its body.
    pub fn response_head(&mut self, timeout: Duration) -> std::io::Result<Resp> {
        let deadline = Instant::now() + timeout;
        loop {
            let head = self.head(remaining(deadline))?;
            if head.status >= 200 {
                return Ok(head);
            }
        }
    }

    /// The next final response, its body read as framed (`Content-Length`, chunked, or up to
    /// the close).
    pub fn response(&mut self, timeout: Duration) -> std::io::Result<Resp> {
        let deadline = Instant::now() + timeout;
        let mut resp = self.response_head(timeout)?;
        let length = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok());
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        resp.body = if matches!(resp.status, 204 | 304) {
            Vec::new()
        } else if chunked {
            self.chunked_body(deadline)?
        } else if let Some(n) = length {
            self.exactly(n, deadline)?
        } else {
            self.until_close(deadline)?
        };
        Ok(resp)
    }

    /// Whatever bytes come next (at least one), or an error at the deadline or EOF.
    pub fn read_some(&mut self, timeout: Duration) -> std::io::Result<Vec<u8>> {
        if self.pending.is_empty() && self.fill(Instant::now() + timeout)? == 0 {
            return Err(eof("while waiting for bytes", &[]));
        }
        Ok(std::mem::take(&mut self.pending))
    }

    /// Wait up to `timeout` for the server to close the connection (EOF or reset). `Some`
    /// with every byte received and not yet consumed when it closed; `None` while it is open.
    pub fn wait_closed(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.fill(deadline) {
                Ok(0) => return Some(self.pending.clone()),
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::TimedOut => return None,
                Err(_) => return Some(self.pending.clone()),
            }
        }
    }

    /// One read into `pending`; `Ok(0)` at EOF, `TimedOut` at the deadline.
    fn fill(&mut self, deadline: Instant) -> std::io::Result<usize> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(&self.pending));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut buf = [0u8; 16 * 1024];
        match self.stream.read(&mut buf) {
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(timed_out(&self.pending))
            }
            Err(e) => Err(e),
        }
    }

    fn exactly(&mut self, n: usize, deadline: Instant) -> std::io::Result<Vec<u8>> {
        while self.pending.len() < n {
            if self.fill(deadline)? == 0 {
                return Err(eof("in a response body", &self.pending));
            }
        }
        Ok(self.pending.drain(..n).collect())
    }

    fn line(&mut self, deadline: Instant) -> std::io::Result<String> {
        loop {
            if let Some(end) = find(&self.pending, b"\r\n") {
                let line: Vec<u8> = self.pending.drain(..end + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            if self.fill(deadline)? == 0 {
                return Err(eof("in a chunk size line", &self.pending));
            }
        }
    }

    fn chunked_body(&mut self, deadline: Instant) -> std::io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line(deadline)?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(ErrorKind::InvalidData, format!("chunk size {line:?}"))
            })?;
            if size == 0 {
                // Trailers, if any, up to the empty line.
                while !self.line(deadline)?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.exactly(size, deadline)?);
            self.exactly(2, deadline)?;
        }
    }

    fn until_close(&mut self, deadline: Instant) -> std::io::Result<Vec<u8>> {
        while self.fill(deadline)? != 0 {}
        Ok(std::mem::take(&mut self.pending))
    }
}

/// The status of the response that `bytes` start with (`HTTP/1.1 408 ...` -> 408).
pub fn status_in(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()
}

fn parse_head(head: &[u8]) -> std::io::Result<Resp> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_in(head).ok_or_else(|| {
        std::io::Error::new(
            ErrorKind::InvalidData,
            format!("not a status line: {status_line:?}"),
        )
    })?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Resp {
        status,
        headers,
        body: Vec::new(),
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn eof(while_: &str, got: &[u8]) -> std::io::Error {
    std::io::Error::new(
        ErrorKind::UnexpectedEof,
        format!(
            "connection closed {while_} after {:?}",
            String::from_utf8_lossy(got)
        ),
    )
}

fn timed_out(got: &[u8]) -> std::io::Error {
    std::io::Error::new(
        ErrorKind::TimedOut,
        format!(
            "deadline passed; received so far: {:?}",
            String::from_utf8_lossy(got)
        ),
    )
}
