//! Origin policy: which web pages may open sockets and send state-changing requests.

use std::net::SocketAddr;

use http::HeaderValue;

/// The allowed origins (lower-case, no trailing slash).
#[derive(Debug, Clone)]
pub struct Origins(Vec<String>);

impl Origins {
    /// The configured list, or by default the server's own address.
    pub fn resolve(configured: &[String], local: SocketAddr) -> Self {
        if !configured.is_empty() {
            return Self(configured.to_vec());
        }
        let port = local.port();
        let mut origins = vec![
            format!("http://localhost:{port}"),
            format!("http://127.0.0.1:{port}"),
        ];
        if !local.ip().is_loopback() && !local.ip().is_unspecified() {
            origins.push(format!("http://{local}"));
        }
        Self(origins)
    }

    /// The list.
    pub fn allowed(&self) -> &[String] {
        &self.0
    }

    /// Whether a request with this `Origin` header may open a socket or change state.
    pub fn allow(&self, origin: Option<&HeaderValue>) -> bool {
        origin_allowed(&self.0, origin)
    }
}

/// Whether `origin` is in `allowed` (lower-case, no trailing slash). A missing header (curl, a
/// backend) is allowed: Origin exists to stop *other web pages* from riding a user's browser, and
/// browsers always send it on those requests. A value that is not text, or `null` (sandboxed
/// frames, `file:` pages), names no allowed origin.
pub fn origin_allowed(allowed: &[String], origin: Option<&HeaderValue>) -> bool {
    match origin {
        None => true,
        Some(origin) => origin.to_str().is_ok_and(|origin| {
            let origin = origin.trim_end_matches('/').to_ascii_lowercase();
            allowed.contains(&origin)
        }),
    }
}

/// An `Origin` value fit for a log line: bounded, and only if it is text.
pub fn printable(origin: Option<&HeaderValue>) -> &str {
    let text = origin.and_then(|o| o.to_str().ok()).unwrap_or("");
    let mut end = text.len().min(256);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
