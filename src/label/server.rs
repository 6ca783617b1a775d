//! The labelling page's HTTP server: loopback only, and only for the page it served.
//!
//! - Every request must name this server as its `Host` (a site elsewhere that reaches loopback
//!   through the browser, by DNS rebinding, names its own).
//! - A request that changes anything (a `POST`) must also come from the page itself: `Origin`
//!   is this server's, `Sec-Fetch-Site` is absent or `same-origin`, and it carries the session's
//!   token in [`TOKEN_HEADER`], a header no other site can send without a CORS preflight, which
//!   this server never grants. The token is written into the page when it is served.
//! - Bodies are read off the serving thread, each within [`BODY_DEADLINE`] and up to
//!   [`MAX_BODY`]: a slow, stalled or oversized upload holds only its own connection, never the
//!   page or Ctrl-C. Replies are written off it too. The session itself answers one request
//!   at a time, so a save is whole before the next request is looked at.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use super::session::{Reply, Session};
use crate::{Error, Result};

/// How often the server looks at the stop flag while idle.
const POLL: Duration = Duration::from_millis(100);

/// The largest request body read: a mask of 8K UHD is 33 MB.
const MAX_BODY: u64 = 64 << 20;

/// The longest a request's body may take to arrive: a mask of 8K UHD takes well under a second
/// on loopback.
const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// The header the page sends its session token in.
pub const TOKEN_HEADER: &str = "X-Segstream-Token";

/// What the page's HTML holds where the session's token goes.
const TOKEN_PLACEHOLDER: &str = "{segstream-token}";

/// A bound, not yet serving, loopback listener.
pub struct Listener {
    listener: TcpListener,
    address: SocketAddr,
}

/// A request whose body has arrived whole, for the session to answer.
struct Arrived {
    request: tiny_http::Request,
    body: Vec<u8>,
}

/// What every request is checked against.
#[derive(Clone)]
struct Guard {
    /// `Host` values that name this server.
    hosts: [String; 2],
    /// `Origin` values of the page this server served.
    origins: [String; 2],
    token: String,
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
        let server = Arc::new(server);
        let guard = Guard {
            hosts: [format!("127.0.0.1:{port}"), format!("localhost:{port}")],
            origins: [
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}"),
            ],
            token: session_token()?,
        };
        let (arrived_tx, arrived_rx) = crossbeam_channel::unbounded::<Arrived>();
        let receiving = {
            let (server, guard) = (Arc::clone(&server), guard.clone());
            std::thread::Builder::new()
                .name("label-http".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        let (guard, arrived_tx) = (guard.clone(), arrived_tx.clone());
                        // Each body arrives on its own thread: a slow one holds only itself.
                        let spawned = std::thread::Builder::new().name("label-body".into()).spawn(
                            move || {
                                if let Some(arrived) = receive(request, &guard) {
                                    let _ = arrived_tx.send(arrived);
                                }
                            },
                        );
                        if spawned.is_err() {
                            tracing::warn!("label: no thread for a request; it was dropped");
                        }
                    }
                })
                .map_err(|e| Error::Config(format!("cannot start the page's server: {e}")))?
        };
        while !stop.load(Ordering::SeqCst) && !session.finished() {
            let arrived = match arrived_rx.recv_timeout(POLL) {
                Ok(arrived) => arrived,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let url = arrived.request.url().to_string();
            let (path, query) = url.split_once('?').unwrap_or((&url, ""));
            let method = arrived.request.method().as_str().to_string();
            let mut reply = session.handle(&method, path, query, &arrived.body);
            if reply.content_type.starts_with("text/html") {
                let page = String::from_utf8_lossy(&reply.body);
                reply.body = page.replace(TOKEN_PLACEHOLDER, &guard.token).into_bytes();
            }
            respond_aside(arrived.request, reply);
        }
        server.unblock();
        // The receiving thread ends at once; bodies still arriving are left to the process.
        let _ = receiving.join();
        Ok(())
    }
}

/// Checks `request` against `guard` and reads its body; answers it here (and returns `None`)
/// when it is refused.
fn receive(mut request: tiny_http::Request, guard: &Guard) -> Option<Arrived> {
    let refusal = refusal(&request, guard).or_else(|| {
        request
            .body_length()
            .filter(|&length| length as u64 > MAX_BODY)
            .map(|_| too_large())
    });
    if let Some(reply) = refusal {
        respond(request, reply);
        return None;
    }
    match read_body(&mut request) {
        Ok(body) => Some(Arrived { request, body }),
        Err(reply) => {
            respond(request, reply);
            None
        }
    }
}

/// Why `request` is refused, if it is: another `Host`, or a change asked by anything but the
/// page this server served.
fn refusal(request: &tiny_http::Request, guard: &Guard) -> Option<Reply> {
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str().to_string())
    };
    if !header("Host").is_some_and(|h| guard.hosts.contains(&h)) {
        return Some(Reply::error(
            403,
            "requests must come from the page at this address",
        ));
    }
    if *request.method() == tiny_http::Method::Get {
        return None;
    }
    let own_origin = header("Origin").is_some_and(|o| guard.origins.contains(&o));
    let same_site = header("Sec-Fetch-Site").is_none_or(|s| s == "same-origin");
    let token = header(TOKEN_HEADER).is_some_and(|t| t == guard.token);
    (!(own_origin && same_site && token)).then(|| {
        Reply::error(
            403,
            "changes are taken only from the labelling page this server served (its origin and \
             session token)",
        )
    })
}

/// Reads `request`'s whole body within [`BODY_DEADLINE`] and [`MAX_BODY`].
fn read_body(request: &mut tiny_http::Request) -> std::result::Result<Vec<u8>, Reply> {
    let started = Instant::now();
    let announced = request.body_length();
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    let mut chunk = vec![0u8; 64 << 10];
    let reader = request.as_reader();
    loop {
        if started.elapsed() > BODY_DEADLINE {
            return Err(Reply::error(
                408,
                &format!(
                    "the request's body did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ),
            ));
        }
        let read = reader.read(&mut chunk).map_err(|_| incomplete())?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
        if body.len() as u64 > MAX_BODY {
            return Err(too_large());
        }
    }
    match announced {
        Some(length) if body.len() < length => Err(incomplete()),
        _ => Ok(body),
    }
}

fn incomplete() -> Reply {
    Reply::error(
        400,
        "incomplete body: the connection ended before the announced length arrived",
    )
}

fn too_large() -> Reply {
    Reply::error(
        413,
        &format!(
            "the request's body is over the limit of {} MB",
            MAX_BODY >> 20
        ),
    )
}

/// Sends `reply` on a thread of its own: a client that does not read it holds only that one.
fn respond_aside(request: tiny_http::Request, reply: Reply) {
    let spawned = std::thread::Builder::new()
        .name("label-reply".into())
        .spawn(move || respond(request, reply));
    if spawned.is_err() {
        tracing::warn!("label: no thread for a reply; it was dropped");
    }
}

fn respond(request: tiny_http::Request, reply: Reply) {
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

/// A fresh token for this session: 128 bits from the kernel's random source, as hex.
fn session_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom fills at most `bytes.len()` bytes of a buffer this function owns.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if filled != bytes.len() as isize {
        return Err(Error::Config(
            "no random bytes for the page's session token".into(),
        ));
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn header(field: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(field.as_bytes(), value.as_bytes()).expect("ASCII header")
}
