//! Live feeds: where `camera` reads (a V4L2 camera, RTP/H.264 over UDP, RTSP, any gst-launch
//! source) and where it writes (a window, RTP/H.264 over UDP, a V4L2 loopback device, a file),
//! each built from its template in `pipelines/` with the user's device or address set as
//! element properties.

use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::sink::FrameSink;
use super::source::FrameSource;
use super::staged::StagedOutput;
use super::templates::{OutputKind, strip_comments};
use crate::paths::shown;
use crate::{Error, Result};

const CAMERA_SOURCE: &str = include_str!("../../pipelines/sources/camera.gst");
const UDP_SOURCE: &str = include_str!("../../pipelines/sources/udp.gst");
const RTSP_SOURCE: &str = include_str!("../../pipelines/sources/rtsp.gst");
const DISPLAY_SINK: &str = include_str!("../../pipelines/sinks/display.gst");
const UDP_SINK: &str = include_str!("../../pipelines/sinks/udp.gst");
const V4L2_SINK: &str = include_str!("../../pipelines/sinks/v4l2.gst");

/// Size and frame rate asked of a camera; what is not given is left to the camera.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CameraFormat {
    /// Width × height in pixels.
    pub size: Option<(u32, u32)>,
    /// Frames per second.
    pub fps: Option<u32>,
}

impl CameraFormat {
    /// Caps that accept raw video or MJPEG in this format.
    fn caps(&self) -> gst::Caps {
        let mut caps = gst::Caps::new_empty();
        for media in ["video/x-raw", "image/jpeg"] {
            let mut structure = gst::Structure::new_empty(media);
            if let Some((width, height)) = self.size {
                structure.set("width", width as i32);
                structure.set("height", height as i32);
            }
            if let Some(fps) = self.fps {
                structure.set("framerate", gst::Fraction::new(fps as i32, 1));
            }
            caps.get_mut()
                .expect("a new caps is writable")
                .append_structure(structure);
        }
        caps
    }
}

/// Where a live feed comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveInput {
    /// A V4L2 device such as `/dev/video0`.
    Camera {
        /// The device node.
        device: PathBuf,
        /// Size and rate to ask for.
        format: CameraFormat,
    },
    /// RTP/H.264 over UDP, received on `address:port` (`udp://` or `rtp://`).
    Udp {
        /// Address to listen on (a multicast group is joined).
        address: String,
        /// UDP port.
        port: u16,
    },
    /// An RTSP URI.
    Rtsp(String),
    /// A gst-launch description ending in `appsink name=frames`.
    Pipeline(String),
}

impl LiveInput {
    /// Parses `--source`: `udp://HOST:PORT`, `rtp://HOST:PORT`, `rtsp://...`, `rtspt://...`
    /// (RTSP with the media interleaved over TCP, for cameras behind NAT or firewalls) or
    /// `rtsps://...`.
    ///
    /// # Errors
    /// [`Error::Config`] for another scheme or a malformed address.
    pub fn from_uri(uri: &str) -> Result<Self> {
        let scheme = uri.split_once("://").map_or("", |(scheme, _)| scheme);
        match scheme {
            "rtsp" | "rtspt" | "rtsps" => {
                check_rtsp_authority(uri)?;
                Ok(LiveInput::Rtsp(uri.to_string()))
            }
            "udp" | "rtp" => {
                let (host, port) = host_port(uri)?;
                let address = match host {
                    "" | "@" => "0.0.0.0",
                    host => host,
                };
                Ok(LiveInput::Udp {
                    address: address.to_string(),
                    port,
                })
            }
            _ => Err(Error::Config(format!(
                "--source {uri}: use udp://HOST:PORT (RTP/H.264), rtsp://..., --device or --source-pipeline"
            ))),
        }
    }

    /// How the feed is named in messages.
    pub fn describe(&self) -> String {
        match self {
            LiveInput::Camera { device, .. } => shown(device),
            LiveInput::Udp { address, port } => format!("udp://{address}:{port}"),
            LiveInput::Rtsp(uri) => without_password(uri),
            LiveInput::Pipeline(_) => "--source-pipeline".into(),
        }
    }

    /// Builds the source pipeline (not started): frames are stamped by arrival, and its errors
    /// name the feed.
    ///
    /// # Errors
    /// [`Error::Input`] naming the device when there is no such camera; [`Error::Pipeline`] when
    /// the pipeline cannot be built.
    pub fn open(&self) -> Result<FrameSource> {
        let source = match self {
            LiveInput::Camera { device, format } => {
                check_device(device, "camera")?;
                let source = FrameSource::from_description(&strip_comments(CAMERA_SOURCE))?;
                source.element("source")?.set_property("device", device);
                source
                    .element("format")?
                    .set_property("caps", format.caps());
                source
            }
            LiveInput::Udp { address, port } => {
                let source = FrameSource::from_description(&strip_comments(UDP_SOURCE))?;
                let udp = source.element("source")?;
                udp.set_property("address", address);
                udp.set_property("port", i32::from(*port));
                source
            }
            LiveInput::Rtsp(uri) => {
                let source = FrameSource::from_description(&strip_comments(RTSP_SOURCE))?;
                source.element("source")?.set_property("location", uri);
                source
            }
            LiveInput::Pipeline(description) => FrameSource::from_description(description)?,
        };
        let feed = self.clone();
        Ok(source.live(&self.describe(), move || feed.open()))
    }
}

/// Where a live run writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveOutput {
    /// A window on the local display.
    Window,
    /// RTP/H.264 over UDP to `host:port`.
    Udp {
        /// Receiver address (unicast or multicast).
        host: String,
        /// UDP port.
        port: u16,
    },
    /// A V4L2 output device (a v4l2loopback virtual camera).
    Loopback(PathBuf),
    /// A file or PNG folder, as for `segment`.
    File(PathBuf, OutputKind),
}

impl LiveOutput {
    /// Parses `-o`: nothing or `window`, `udp://HOST:PORT`, `/dev/videoN`, or a file path.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed address or an unknown file extension.
    pub fn parse(output: Option<&str>) -> Result<Self> {
        match output {
            None | Some("window") => Ok(LiveOutput::Window),
            Some(uri) if uri.starts_with("udp://") || uri.starts_with("rtp://") => {
                let (host, port) = host_port(uri)?;
                if host.is_empty() {
                    return Err(Error::Config(format!(
                        "-o {uri}: give the receiver's address, e.g. udp://127.0.0.1:5000"
                    )));
                }
                check_resolves(uri, host, port)?;
                Ok(LiveOutput::Udp {
                    host: host.to_string(),
                    port,
                })
            }
            Some(device) if device.starts_with("/dev/video") => {
                Ok(LiveOutput::Loopback(PathBuf::from(device)))
            }
            Some(path) => {
                let path = PathBuf::from(path);
                let kind = OutputKind::from_path(&path)?;
                Ok(LiveOutput::File(path, kind))
            }
        }
    }

    /// How the output is named in messages.
    pub fn describe(&self) -> String {
        match self {
            LiveOutput::Window => "a window".into(),
            LiveOutput::Udp { host, port } => format!("udp://{host}:{port}"),
            LiveOutput::Loopback(device) | LiveOutput::File(device, _) => shown(device),
        }
    }

    /// Whether the output keeps the alpha channel of cut-outs.
    pub fn keeps_alpha(&self) -> bool {
        matches!(self, LiveOutput::File(_, kind) if kind.keeps_alpha())
    }

    /// Builds the sink pipeline (not started); a file is written under a temporary name,
    /// staged until the run settles it.
    ///
    /// # Errors
    /// [`Error::Config`] when there is no display for a window; [`Error::Input`] when the
    /// loopback device does not exist; [`Error::Pipeline`] when the pipeline cannot be built.
    pub fn open(&self) -> Result<(FrameSink, Option<StagedOutput>)> {
        let sink = match self {
            LiveOutput::Window => {
                if !has_display() {
                    return Err(Error::Config(
                        "no display for a window (DISPLAY and WAYLAND_DISPLAY are unset): \
                         give -o FILE, -o udp://HOST:PORT or -o /dev/videoN"
                            .into(),
                    ));
                }
                keep_out_of_windows(CONSOLE_SINKS);
                FrameSink::from_description(&strip_comments(DISPLAY_SINK))?
            }
            LiveOutput::Udp { host, port } => {
                let sink = FrameSink::from_description(&strip_comments(UDP_SINK))?;
                let udp = sink.element("udp")?;
                udp.set_property("host", host);
                udp.set_property("port", i32::from(*port));
                sink.with_even_size()
            }
            LiveOutput::Loopback(device) => {
                check_device(device, "video output device")?;
                let sink = FrameSink::from_description(&strip_comments(V4L2_SINK))?;
                sink.element("device")?.set_property("device", device);
                sink.with_even_size()
            }
            LiveOutput::File(path, kind) => {
                let staged = StagedOutput::new(path, *kind);
                let sink = FrameSink::to_path(staged.temp_path(), *kind, None)?;
                return Ok((sink, Some(staged)));
            }
        };
        Ok((sink, None))
    }
}

/// Video sinks that draw on the console (DRM/KMS), never in a window. GStreamer 1.26's
/// `autovideosink` tries `kmssink` before `ximagesink`, and on a machine whose graphics it
/// cannot take over it spends seconds probing (about 7 s on a virtual machine under Xvfb)
/// while a live feed's frames are dropped: the window showed a frozen picture.
const CONSOLE_SINKS: &[&str] = &["kmssink"];

/// Takes the `sinks` out of `autovideosink`'s choice in this process (rank none): a window was
/// asked for and a window system is there.
fn keep_out_of_windows(sinks: &[&str]) {
    for name in sinks {
        if let Some(factory) = gst::ElementFactory::find(name) {
            factory.set_rank(gst::Rank::NONE);
        }
    }
}

/// The `HOST:PORT` after the scheme of `uri`.
fn host_port(uri: &str) -> Result<(&str, u16)> {
    let rest = uri.split_once("://").map_or(uri, |(_, rest)| rest);
    rest.trim_end_matches('/')
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .filter(|&(_, port)| port > 0)
        .ok_or_else(|| Error::Config(format!("{uri}: expected HOST:PORT after the scheme")))
}

/// Checks the `[USER@]HOST[:PORT]` part of an RTSP URI: a host is needed, and a port, when
/// given, must be a number from 1 to 65535.
fn check_rtsp_authority(uri: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::Config(format!(
            "--source {uri}: {why}, e.g. rtsp://192.168.1.10:554/stream"
        ))
    };
    let rest = uri.split_once("://").map_or("", |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = match host_port.strip_prefix('[') {
        // An IPv6 address: [::1]:8554.
        Some(bracketed) => match bracketed.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return Err(bad("an IPv6 address needs its closing ']'")),
        },
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err(bad("the URL names no host"));
    }
    match port.map(str::parse::<u16>) {
        Some(Ok(0) | Err(_)) => Err(bad(&format!(
            "'{}' is not a port (1 to 65535)",
            port.unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

/// Checks that the receiver `host` of the output `uri` resolves to an address this machine
/// has a route to.
fn check_resolves(uri: &str, host: &str, port: u16) -> Result<()> {
    use std::net::{ToSocketAddrs as _, UdpSocket};
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let bad = |why: String| Error::Config(format!("-o {uri}: {why}"));
    let address = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("the host '{host}' does not resolve ({e})")))?
        .next()
        .ok_or_else(|| bad(format!("the host '{host}' has no address")))?;
    let local: std::net::SocketAddr = match address {
        std::net::SocketAddr::V4(_) => ([0, 0, 0, 0], 0).into(),
        std::net::SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    // Connecting a UDP socket sends nothing; it only looks the route up.
    UdpSocket::bind(local)
        .and_then(|socket| {
            socket.set_broadcast(true)?;
            socket.connect(address)
        })
        .map_err(|e| bad(format!("cannot send to {address}: {e}")))
}

/// Whether a window can be opened: an X11 or Wayland display is set.
fn has_display() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()))
}

/// Fails with a message naming `device` and the devices there are, when it does not exist.
fn check_device(device: &Path, what: &str) -> Result<()> {
    if device.exists() {
        return Ok(());
    }
    let mut present: Vec<String> = std::fs::read_dir("/dev")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("video"))
        .map(|name| format!("/dev/{name}"))
        .collect();
    present.sort();
    let there = if present.is_empty() {
        "no video devices are present".to_string()
    } else {
        format!("present: {}", present.join(", "))
    };
    Err(Error::Input {
        path: device.to_path_buf(),
        reason: format!("no such {what} ({there})"),
    })
}

/// `uri` with the password of its user part (`rtsp://user:secret@host/…`) left out, for
/// messages and metrics labels.
fn without_password(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{}", &rest[authority_end..])
        }
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feeds_password_is_not_shown() {
        let feed = LiveInput::from_uri("rtsp://admin:secret@10.0.0.2:554/live").unwrap();
        assert_eq!(feed.describe(), "rtsp://admin@10.0.0.2:554/live");
        let feed = LiveInput::from_uri("rtsp://cam/a@b").unwrap();
        assert_eq!(feed.describe(), "rtsp://cam/a@b");
    }

    #[test]
    fn source_uris_choose_the_template() {
        assert_eq!(
            LiveInput::from_uri("udp://127.0.0.1:5000").unwrap(),
            LiveInput::Udp {
                address: "127.0.0.1".into(),
                port: 5000
            }
        );
        assert_eq!(
            LiveInput::from_uri("rtp://@:5004").unwrap(),
            LiveInput::Udp {
                address: "0.0.0.0".into(),
                port: 5004
            }
        );
        assert!(matches!(
            LiveInput::from_uri("rtsp://cam/stream").unwrap(),
            LiveInput::Rtsp(_)
        ));
        assert!(LiveInput::from_uri("udp://host").is_err());
        for bad in [
            "rtsp://",
            "rtsp:///stream",
            "rtsp://user@/x",
            "rtsp://cam:port/x",
            "rtsp://cam:0/",
        ] {
            let err = LiveInput::from_uri(bad).unwrap_err();
            assert!(
                matches!(err, Error::Config(_)) && err.to_string().contains(bad),
                "{err}"
            );
        }
        for good in [
            "rtsp://cam:8554/live",
            "rtsp://u:p@10.0.0.2/x",
            "rtspt://[::1]:554/s",
        ] {
            assert!(LiveInput::from_uri(good).is_ok(), "{good}");
        }
        assert!(LiveInput::from_uri("http://host/x").is_err());
    }

    #[test]
    fn outputs_follow_the_argument() {
        assert_eq!(LiveOutput::parse(None).unwrap(), LiveOutput::Window);
        assert_eq!(
            LiveOutput::parse(Some("udp://10.0.0.2:6000")).unwrap(),
            LiveOutput::Udp {
                host: "10.0.0.2".into(),
                port: 6000
            }
        );
        assert_eq!(
            LiveOutput::parse(Some("/dev/video4")).unwrap(),
            LiveOutput::Loopback("/dev/video4".into())
        );
        assert!(matches!(
            LiveOutput::parse(Some("live.mkv")).unwrap(),
            LiveOutput::File(_, OutputKind::Mkv)
        ));
        assert!(LiveOutput::parse(Some("udp://:5000")).is_err());
        let err = LiveOutput::parse(Some("udp://no.such.host.invalid:5000")).unwrap_err();
        assert!(err.to_string().contains("does not resolve"), "{err}");
        assert!(LiveOutput::parse(Some("live.xyz")).is_err());
    }

    #[test]
    fn camera_caps_ask_for_raw_or_mjpeg() {
        crate::video::init().unwrap();
        let format = CameraFormat {
            size: Some((640, 480)),
            fps: Some(30),
        };
        let caps = format.caps().to_string();
        assert!(caps.contains("video/x-raw") && caps.contains("image/jpeg"));
        assert!(caps.contains("width=(int)640") && caps.contains("framerate=(fraction)30/1"));
    }
}
