//! A real RTSP server for the tests: GStreamer's own (`gstreamer-rtsp-server`), on 127.0.0.1
//! and a port of its choosing, serving one mount from a gst-launch description.

use std::sync::mpsc;
use std::thread::JoinHandle;

use gstreamer::glib;
use gstreamer_rtsp_server as rtsp;
use rtsp::prelude::*;

/// A running server; stopped (its clients disconnected) on drop.
pub struct RtspServer {
    /// The port it listens on.
    pub port: u16,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

impl RtspServer {
    /// Serves `launch` (a bin with payloaders named `pay0`…) at `/MOUNT`, on a free port.
    pub fn start(mount: &str, launch: &str) -> Self {
        Self::start_on(0, mount, launch)
    }

    /// As [`RtspServer::start`], on `port` (0: a free one).
    pub fn start_on(port: u16, mount: &str, launch: &str) -> Self {
        gstreamer::init().unwrap();
        let (mount, launch) = (mount.to_string(), launch.to_string());
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let context = glib::MainContext::new();
            context
                .with_thread_default(|| {
                    let server = rtsp::RTSPServer::new();
                    server.set_address("127.0.0.1");
                    server.set_service(&port.to_string());
                    let factory = rtsp::RTSPMediaFactory::new();
                    factory.set_launch(&launch);
                    factory.set_shared(true);
                    server
                        .mount_points()
                        .unwrap()
                        .add_factory(&format!("/{mount}"), factory);
                    let source = server.attach(Some(&context)).unwrap();
                    let main_loop = glib::MainLoop::new(Some(&context), false);
                    ready_tx
                        .send((server.bound_port() as u16, main_loop.clone()))
                        .unwrap();
                    main_loop.run();
                    // Stopping: every client is disconnected and the port closed.
                    server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
                    if let Some(source) = context.find_source_by_id(&source) {
                        source.destroy();
                    }
                })
                .unwrap();
        });
        let (port, main_loop) = ready_rx.recv().expect("the RTSP server starts");
        RtspServer {
            port,
            main_loop,
            thread: Some(thread),
        }
    }

    /// `rtsp://127.0.0.1:PORT/MOUNT` (or another scheme, e.g. `rtspt` for TCP).
    pub fn uri(&self, scheme: &str, mount: &str) -> String {
        format!("{scheme}://127.0.0.1:{}/{mount}", self.port)
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
