//! The labelling page's HTTP server: loopback only, one request at a time (a save is whole
//! before the next request or Ctrl-C is looked at), and only for pages of its own address.

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::session::{Reply, Session};
use crate::{Error, Result};

/// How often the server looks at the stop flag while idle.
const POLL: Duration = Duration::from_millis(100);

/// The largest request body read: a mask of 8K UHD is 33 MB.
const MAX_BODY: u64 = 64 << 20;

/// A bound, not yet serving, loopback listener.
pub struct Listener {
    listener: TcpListener,
    address: SocketAddr,
}

impl Listener {
    /// Binds `127.0.0.1:port` (0: a free port), so that a port in use is an error before any
    /// work is done.
    ///
    /// # Errors
    /// [`Error::Config`] naming the port when it cannot be bound.
    pub fn bind(port: u16) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => {
                    "it is in use; pick another with --port, or 0 for any free one".to_string()
                }
                _ => e.to_string(),
            };
            Error::Config(format!("cannot listen on 127.0.0.1:{port}: {why}"))
        })?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Listener { listener, address })
    }

    /// The page's address.
    pub fn url(&self) -> String {
        format!("http://{}/", self.address)
    }

    /// Serves `session` until the page finishes it or `stop` is set.
    ///
    /// # Errors
    /// When the server cannot run.
    pub fn serve(self, session: &mut Session, stop: &AtomicBool) -> Result<()> {
        let port = self.address.port();
        let server = tiny_http::Server::from_listener(self.listener, None)
            .map_err(|e| Error::Config(format!("cannot serve on 127.0.0.1:{port}: {e}")))?;
        while !stop.load(Ordering::SeqCst) && !session.finished() {
            let Some(mut request) = server
                .recv_timeout(POLL)
                .map_err(|e| Error::Config(format!("the page's server failed: {e}")))?
            else {
                continue;
            };
            let reply = answer(&mut request, session, port);
            let response = tiny_http::Response::from_data(reply.body)
                .with_status_code(reply.status)
                .with_header(header("Content-Type", reply.content_type))
                .with_header(header("Cache-Control", "no-store"))
                .with_header(header(
                    "Content-Security-Policy",
                    "default-src 'self'; img-src 'self' blob:",
                ));
            // A page that went away while it waited is no reason to stop serving.
            let _ = request.respond(response);
        }
        Ok(())
    }
}

/// The session's answer to `request`, refused when the page is not this server's own (a
/// site elsewhere reaching loopback through a browser names another host).
fn answer(request: &mut tiny_http::Request, session: &mut Session, port: u16) -> Reply {
    let host = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string());
    let own = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    if !host.is_some_and(|h| own.contains(&h)) {
        return Reply::error(403, "requests must come from the page at this address");
    }
    let mut body = Vec::new();
    if request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .is_err()
        || body.len() as u64 > MAX_BODY
    {
        return Reply::error(400, "the request's body could not be read");
    }
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    session.handle(request.method().as_str(), path, query, &body)
}

fn header(field: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(field.as_bytes(), value.as_bytes()).expect("ASCII header")
}
