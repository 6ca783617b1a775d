//! The metrics endpoint: `GET /metrics` (Prometheus' text format) and `GET /healthz` (200 when
//! every running source delivers frames, else 503; JSON either way), on its own thread.
//!
//! Loopback unless another address is given in full. On loopback every request must name this
//! server as its `Host`, so that a web page that reaches loopback by DNS rebinding (and names
//! its own host) reads nothing; nothing is ever changed by a request, and anything but `GET`
//! and `HEAD` is refused.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::thread::JoinHandle;

use crate::{Error, Result};

/// A running metrics endpoint; dropping it stops the server.
pub struct MetricsServer {
    address: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

/// Reads `--metrics`' value: a port (on 127.0.0.1) or `ADDRESS:PORT` (an IP address; a
/// non-loopback one is the explicit ask to serve beyond this machine).
///
/// # Errors
/// A message for the command line when `text` is neither.
pub fn parse_address(text: &str) -> std::result::Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        return parse_address(port);
    }
    text.parse().map_err(|_| {
        format!(
            "'{text}' is not a port or an IP address with a port (e.g. 9100, 127.0.0.1:9100, \
             0.0.0.0:9100 to serve other machines)"
        )
    })
}

impl MetricsServer {
    /// Binds `address` (port 0: any free one) and serves until dropped.
    ///
    /// # Errors
    /// [`Error::Config`] naming the address when it cannot be bound (in use, not this
    /// machine's, a privileged port).
    pub fn start(address: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(address).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => "it is in use; pick another port".to_string(),
                std::io::ErrorKind::AddrNotAvailable => {
                    "that address is not one of this machine's".to_string()
                }
                _ => e.to_string(),
            };
            Error::Config(format!("cannot serve metrics on {address}: {why}"))
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::Config(e.to_string()))?;
        let server = tiny_http::Server::from_listener(listener, None)
            .map_err(|e| Error::Config(format!("cannot serve metrics on {address}: {e}")))?;
        let server = Arc::new(server);
        let hosts = address.ip().is_loopback().then(|| own_hosts(address));
        let thread = {
            let server = Arc::clone(&server);
            std::thread::Builder::new()
                .name("metrics-http".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        answer(request, hosts.as_deref());
                    }
                })
                .map_err(|e| Error::Config(format!("cannot start the metrics server: {e}")))?
        };
        Ok(MetricsServer {
            address,
            server,
            thread: Some(thread),
        })
    }

    /// The address served (the port chosen when 0 was asked for).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

/// The servers elements started, by port.
static ON_LOOPBACK: LazyLock<Mutex<HashMap<u16, Weak<MetricsServer>>>> =
    LazyLock::new(Mutex::default);

/// The server on 127.0.0.1:`port` that the elements of this process share: started by the first
/// to ask, stopped when the last one lets go.
///
/// # Errors
/// As [`MetricsServer::start`], when it is not running yet and cannot be bound.
pub fn shared_on_loopback(port: u16) -> Result<Arc<MetricsServer>> {
    let mut servers = super::lock(&ON_LOOPBACK);
    if let Some(server) = servers.get(&port).and_then(Weak::upgrade) {
        return Ok(server);
    }
    let server = Arc::new(MetricsServer::start(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        port,
    ))?);
    servers.insert(port, Arc::downgrade(&server));
    Ok(server)
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `Host` values that name a loopback server at `address`.
fn own_hosts(address: SocketAddr) -> Vec<String> {
    let port = address.port();
    vec![
        address.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ]
}

/// Answers one request; `hosts`: the `Host` values accepted (all, when `None`).
fn answer(request: tiny_http::Request, hosts: Option<&[String]>) {
    let host = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string());
    let method = request.method().clone();
    let (status, content_type, body) =
        if hosts.is_some_and(|hosts| !host.as_ref().is_some_and(|host| hosts.contains(host))) {
            (
                403,
                "text/plain",
                "this server answers only to its own address\n".into(),
            )
        } else if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
            (405, "text/plain", "only GET and HEAD\n".into())
        } else {
            match request.url().split('?').next().unwrap_or("") {
                "/metrics" => (
                    200,
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    super::encode(),
                ),
                "/healthz" => {
                    let health = super::health();
                    let status = if health.healthy { 200 } else { 503 };
                    let body = serde_json::to_string(&health).unwrap_or_default() + "\n";
                    (status, "application/json", body)
                }
                _ => (404, "text/plain", "see /metrics and /healthz\n".into()),
            }
        };
    let mut response = tiny_http::Response::from_string(body).with_status_code(status);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", content_type) {
        response.add_header(header);
    }
    // A client that went away is its own loss.
    let _ = request.respond(response);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_means_loopback_and_other_addresses_are_given_in_full() {
        assert_eq!(
            parse_address("9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            parse_address("localhost:9100").unwrap(),
            "127.0.0.1:9100".parse().unwrap()
        );
        assert_eq!(
            parse_address("0.0.0.0:9100").unwrap(),
            "0.0.0.0:9100".parse().unwrap()
        );
        assert!(parse_address("example.org:9100").is_err());
        assert!(parse_address("99999").is_err());
    }

    #[test]
    fn a_port_in_use_is_a_clear_error() {
        let first = MetricsServer::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let error = MetricsServer::start(first.address()).err().unwrap();
        assert!(error.to_string().contains("in use"), "{error}");
    }
}
