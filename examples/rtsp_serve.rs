//! Serves a GStreamer pipeline over RTSP on 127.0.0.1 until the process is killed: a live
//! source to try `segstream camera --source rtsp://…` against, and the server the tests kill
//! and start again to see `camera` reconnect.
//!
//! ```sh
//! cargo run --release --example rtsp_serve -- 8554 live \
//!   '( videotestsrc is-live=true ! x264enc tune=zerolatency ! rtph264pay name=pay0 pt=96 )'
//! ```
//! The arguments are the port (0: a free one), the mount and the media (gst-launch syntax, in
//! parentheses, payloaders named `pay0`, `pay1`…). It prints the stream's URI once it listens.

#[path = "../tests/it/rtsp_server.rs"]
#[allow(dead_code, reason = "the tests' helper, of which this uses a part")]
mod rtsp_server;

use std::io::Write;
use std::process::ExitCode;

use rtsp_server::RtspServer;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, mount, launch] = args.as_slice() else {
        eprintln!("usage: rtsp_serve PORT MOUNT '( … ! rtph264pay name=pay0 )'");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("rtsp_serve: {port} is not a port number");
        return ExitCode::from(2);
    };
    let server = RtspServer::start_on(port, mount, launch);
    println!("{}", server.uri("rtsp", mount));
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
