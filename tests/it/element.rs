//! The `segstream` GStreamer element: real decoded frames through it (gst-check's Harness, in
//! this process), and the built plugin in `gst-launch-1.0` (a separate process, as users run
//! it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;
use std::time::Duration;

use gst::prelude::*;
use gst_video::VideoFormat;
use gstreamer as gst;
use gstreamer_check::Harness;
use gstreamer_video as gst_video;
use segstream::element::meta;
use segstream::imaging::yuv::{I420Layout, YuvMatrix, i420_to_rgba, rgba_to_i420};
use segstream::video::{Frame, swap_red_and_blue};

use crate::helpers::run_ok;
use crate::media::{decode, frame_count, generated, png_frames, shared};

/// Registers the element in this process (the plugin's own registration function).
fn init() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        gst::init().unwrap();
        segstream::element::register(None).unwrap();
    });
}

/// A harness around a `segstream` element with `properties`, taking `format` frames of
/// `frame`'s size.
pub fn harness(properties: &[(&str, &str)], format: &str, frame: &Frame) -> Harness {
    init();
    let element = gst::ElementFactory::make("segstream").build().unwrap();
    for (name, value) in properties {
        element.set_property_from_str(name, value);
    }
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.play();
    h.set_src_caps_str(&format!(
        "video/x-raw,format={format},width={},height={},framerate=30/1",
        frame.width(),
        frame.height()
    ));
    h
}

/// `frame` as a buffer in `format` (RGBA or BGRx) with its timestamps.
pub fn buffer(frame: &Frame, bgr: bool) -> gst::Buffer {
    let mut pixels = frame.pixels.clone();
    if bgr {
        swap_red_and_blue(&mut pixels);
    }
    let mut buffer = gst::Buffer::from_mut_slice(pixels);
    let b = buffer.get_mut().unwrap();
    b.set_pts(frame.pts);
    b.set_duration(frame.duration);
    buffer
}

/// Every buffer the harness holds up to the EOS (which must come).
fn pull_to_eos(h: &mut Harness) -> Vec<gst::Buffer> {
    let mut out = Vec::new();
    while let Some(buffer) = h.pull_until_eos().unwrap() {
        out.push(buffer);
    }
    out
}

/// The first `n` frames segstream's own source decodes from the people clip.
pub fn people_frames(n: usize) -> Vec<Frame> {
    let mut frames = Vec::new();
    decode(&generated("people.mkv"), |f| {
        if frames.len() < n {
            frames.push(f);
        }
    });
    frames
}

#[test]
fn masks_equal_segments_with_timestamps_kept_and_every_frame_drained() {
    let input = generated("people.mkv");
    let dir = tempfile::tempdir().unwrap();
    let pngs = dir.path().join("masks");
    run_ok(&[
        "segment",
        input.to_str().unwrap(),
        "-o",
        pngs.to_str().unwrap(),
        "--mode",
        "mask",
    ]);
    let expected = png_frames(&pngs);
    let frames = people_frames(usize::MAX);
    assert_eq!(expected.len(), frames.len());

    let mut h = harness(&[("mode", "mask")], "RGBA", &frames[0]);
    for frame in &frames {
        h.push(buffer(frame, false)).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_to_eos(&mut h);
    assert_eq!(out.len(), frames.len(), "EOS came after every frame");
    let (w, h_) = (frames[0].width(), frames[0].height());
    let stride = w.next_multiple_of(4);
    let mut object_pixels = 0;
    for ((buffer, frame), png) in out.iter().zip(&frames).zip(&expected) {
        assert_eq!(buffer.pts(), frame.pts, "frame {}", frame.seq);
        assert_eq!(buffer.duration(), frame.duration, "frame {}", frame.seq);
        let gray = buffer.map_readable().unwrap();
        let drawn: Vec<u8> = gray
            .chunks(stride)
            .flat_map(|row| &row[..w])
            .copied()
            .collect();
        let segments: Vec<u8> = png.pixels().map(|p| p[0]).collect();
        assert!(
            drawn == segments,
            "frame {}: the element's mask differs from segment's",
            frame.seq
        );
        let labels = meta::read(buffer).expect("every buffer carries the mask meta");
        assert_eq!((labels.width, labels.height), (w, h_));
        assert!(
            labels
                .labels
                .iter()
                .zip(&segments)
                .all(|(&l, &s)| u8::from(s == 255) == l)
        );
        object_pixels += labels.labels.iter().filter(|&&l| l == 1).count();
    }
    assert!(
        object_pixels > 1000,
        "people were found ({object_pixels} pixels)"
    );
}

#[test]
fn bgrx_overlay_and_passthrough_keep_the_format_and_carry_the_mask() {
    let frames = people_frames(6);
    let overlay = |format: &str, bgr: bool| {
        let mut h = harness(&[("mode", "overlay")], format, &frames[0]);
        for frame in &frames {
            h.push(buffer(frame, bgr)).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        pull_to_eos(&mut h)
    };
    let rgba = overlay("RGBA", false);
    let bgrx = overlay("BGRx", true);
    assert_eq!(rgba.len(), frames.len());
    for (a, b) in rgba.iter().zip(&bgrx) {
        let mut from_bgrx = b.map_readable().unwrap().to_vec();
        swap_red_and_blue(&mut from_bgrx);
        let rgba = a.map_readable().unwrap();
        // RGBx leaves the fourth byte as it came; the colours must agree.
        let same = rgba
            .chunks(4)
            .zip(from_bgrx.chunks(4))
            .all(|(x, y)| x[..3] == y[..3]);
        assert!(same, "BGRx overlay differs from the RGBA one");
        assert_eq!(meta::read(a), meta::read(b), "same labels in both formats");
    }
    let tinted = rgba
        .iter()
        .zip(&frames)
        .any(|(out, frame)| out.map_readable().unwrap().as_slice() != frame.pixels.as_slice());
    assert!(tinted, "the overlay drew on some frame");

    let mut h = harness(&[("mode", "passthrough")], "BGRx", &frames[0]);
    for frame in &frames {
        h.push(buffer(frame, true)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_to_eos(&mut h);
    for ((passed, frame), drawn) in out.iter().zip(&frames).zip(&rgba) {
        assert_eq!(
            passed.map_readable().unwrap().as_slice(),
            buffer(frame, true).map_readable().unwrap().as_slice()
        );
        assert_eq!(meta::read(passed), meta::read(drawn));
    }
}

/// `frames` (RGBA) in I420 and in NV12 (the same samples, chroma interleaved), as GStreamer
/// lays them out.
fn yuv_buffers(frames: &[Frame]) -> (Vec<gst::Buffer>, Vec<gst::Buffer>) {
    let (w, h) = (frames[0].width() as u32, frames[0].height() as u32);
    let info = |format| gst_video::VideoInfo::builder(format, w, h).build().unwrap();
    let (i420, nv12) = (info(VideoFormat::I420), info(VideoFormat::Nv12));
    let layout = I420Layout::new(&i420);
    let matrix = YuvMatrix::new(&i420.colorimetry());
    let with_times = |pixels: Vec<u8>, frame: &Frame| {
        let mut buffer = gst::Buffer::from_mut_slice(pixels);
        let b = buffer.get_mut().unwrap();
        b.set_pts(frame.pts);
        b.set_duration(frame.duration);
        buffer
    };
    frames
        .iter()
        .map(|frame| {
            let planar = rgba_to_i420(&frame.pixels, &layout, &matrix);
            let mut interleaved = vec![0; nv12.size()];
            let (offsets, strides) = (nv12.offset(), nv12.stride());
            for y in 0..h as usize {
                let start = offsets[0] + y * strides[0] as usize;
                interleaved[start..start + w as usize].copy_from_slice(layout.row(&planar, 0, y));
            }
            for y in 0..layout.plane_size(1)[1] {
                let (u, v) = (layout.row(&planar, 1, y), layout.row(&planar, 2, y));
                let start = offsets[1] + y * strides[1] as usize;
                for x in 0..u.len() {
                    interleaved[start + 2 * x] = u[x];
                    interleaved[start + 2 * x + 1] = v[x];
                }
            }
            (with_times(planar, frame), with_times(interleaved, frame))
        })
        .unzip()
}

/// The buffers `mode` sends for `input` (in `format`, of `frame`'s size), and the caps.
fn through(
    mode: &str,
    format: &str,
    frame: &Frame,
    input: &[gst::Buffer],
) -> (Vec<gst::Buffer>, gst::Caps) {
    let mut h = harness(&[("mode", mode)], format, frame);
    for buffer in input {
        h.push(buffer.clone()).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_to_eos(&mut h);
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    (out, caps)
}

#[test]
fn the_decoders_formats_are_composed_in_yuv_and_sent_as_they_came() {
    let frames = people_frames(6);
    let (i420, nv12) = yuv_buffers(&frames);
    let (w, h) = (frames[0].width(), frames[0].height());

    // Overlay: I420 out for I420 in, NV12 for NV12, the same picture and labels in both.
    let (planar, caps) = through("overlay", "I420", &frames[0], &i420);
    assert_eq!(
        caps.structure(0).unwrap().get::<&str>("format").unwrap(),
        "I420"
    );
    let (interleaved, caps) = through("overlay", "NV12", &frames[0], &nv12);
    assert_eq!(
        caps.structure(0).unwrap().get::<&str>("format").unwrap(),
        "NV12"
    );
    assert_eq!(planar.len(), frames.len());
    assert_eq!(interleaved.len(), frames.len());
    let info = |format| {
        gst_video::VideoInfo::builder(format, w as u32, h as u32)
            .build()
            .unwrap()
    };
    let (i420_info, nv12_info) = (info(VideoFormat::I420), info(VideoFormat::Nv12));
    let layout = I420Layout::new(&i420_info);
    let mut tinted = false;
    for ((a, b), input) in planar.iter().zip(&interleaved).zip(&i420) {
        let (a, b) = (a.map_readable().unwrap(), b.map_readable().unwrap());
        assert_eq!(a.len(), i420_info.size());
        assert_eq!(b.len(), nv12_info.size());
        tinted |= a.as_slice() != input.map_readable().unwrap().as_slice();
        let uv = nv12_info.offset()[1];
        let uv_stride = nv12_info.stride()[1] as usize;
        for y in 0..h {
            let nv12_row = &b[nv12_info.offset()[0] + y * nv12_info.stride()[0] as usize..][..w];
            assert_eq!(layout.row(&a, 0, y), nv12_row, "luma row {y}");
        }
        for y in 0..layout.plane_size(1)[1] {
            let pairs = &b[uv + y * uv_stride..][..2 * layout.plane_size(1)[0]];
            let u: Vec<u8> = pairs.iter().step_by(2).copied().collect();
            let v: Vec<u8> = pairs.iter().skip(1).step_by(2).copied().collect();
            assert_eq!(layout.row(&a, 1, y), u.as_slice(), "U row {y}");
            assert_eq!(layout.row(&a, 2, y), v.as_slice(), "V row {y}");
        }
    }
    assert!(tinted, "the overlay drew on some frame");
    for (a, b) in planar.iter().zip(&interleaved) {
        assert_eq!(meta::read(a), meta::read(b), "same labels in both formats");
    }

    // Against the RGBA path on the same pictures (the I420 frames' exact RGB): the same
    // labels, and the overlay within 2 levels once converted.
    let matrix = YuvMatrix::new(&i420_info.colorimetry());
    let exact: Vec<gst::Buffer> = i420
        .iter()
        .map(|b| {
            let rgba = i420_to_rgba(&b.map_readable().unwrap(), &layout, &matrix);
            let mut buffer = gst::Buffer::from_mut_slice(rgba);
            buffer.get_mut().unwrap().set_pts(b.pts());
            buffer
        })
        .collect();
    let (in_rgba, _) = through("overlay", "RGBA", &frames[0], &exact);
    for (yuv, rgb) in planar.iter().zip(&in_rgba) {
        let (a, b) = (meta::read(yuv).unwrap(), meta::read(rgb).unwrap());
        let differ = a
            .labels
            .iter()
            .zip(&b.labels)
            .filter(|(x, y)| x != y)
            .count();
        assert!(
            differ * 1000 <= a.labels.len(),
            "{differ} labels differ from the RGBA path's"
        );
        let converted = i420_to_rgba(&yuv.map_readable().unwrap(), &layout, &matrix);
        let rgb = rgb.map_readable().unwrap();
        let total: u64 = converted
            .iter()
            .zip(rgb.iter())
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        let mad = total as f64 / converted.len() as f64;
        assert!(mad <= 2.0, "overlay {mad:.2} levels from the RGBA path's");
    }

    // Mask: GRAY8 whatever comes in, each pixel 255 where the label is the object.
    let (masks, caps) = through("mask", "I420", &frames[0], &i420);
    assert_eq!(
        caps.structure(0).unwrap().get::<&str>("format").unwrap(),
        "GRAY8"
    );
    let stride = w.next_multiple_of(4);
    let mut object = 0;
    for mask in &masks {
        let labels = meta::read(mask).unwrap();
        let gray = mask.map_readable().unwrap();
        let drawn: Vec<u8> = gray
            .chunks(stride)
            .flat_map(|row| &row[..w])
            .copied()
            .collect();
        let expected: Vec<u8> = labels
            .labels
            .iter()
            .map(|&l| if l == 1 { 255 } else { 0 })
            .collect();
        assert!(drawn == expected, "the GRAY8 mask is the labels");
        object += labels.labels.iter().filter(|&&l| l == 1).count();
    }
    assert!(object > 1000, "people were found ({object} pixels)");

    // A transparent cut-out: RGBA out of I420 in, its alpha the mask's.
    let (cutouts, caps) = through("cutout", "I420", &frames[0], &i420);
    assert_eq!(
        caps.structure(0).unwrap().get::<&str>("format").unwrap(),
        "RGBA"
    );
    for (cutout, mask) in cutouts.iter().zip(&masks) {
        let rgba = cutout.map_readable().unwrap();
        assert_eq!(rgba.len(), w * h * 4);
        let labels = meta::read(mask).unwrap();
        let opaque = |l: u8| {
            rgba.chunks(4)
                .zip(&labels.labels)
                .filter(|(_, label)| **label == l)
                .map(|(px, _)| usize::from(px[3] > 127))
                .sum::<usize>()
        };
        let (inside, outside) = (opaque(1), opaque(0));
        let count = |l: u8| labels.labels.iter().filter(|&&x| x == l).count();
        assert!(
            inside * 10 >= count(1) * 8,
            "the people are kept: {inside} of {}",
            count(1)
        );
        assert!(
            outside * 10 <= count(0),
            "the rest is cut: {outside} of {}",
            count(0)
        );
    }
}

#[test]
fn a_decoder_and_an_encoder_link_to_the_element_with_no_converter() {
    // H.264 in 4:2:0, as cameras and phones write it: the decoder sends I420.
    let input = shared("videos/solidWhiteRight.mp4");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("blurred.mp4");
    let line = format!(
        "-v filesrc location={} ! decodebin ! segstream mode=blur ! \
         x264enc speed-preset=ultrafast ! mp4mux ! filesink location={}",
        input.display(),
        out.display()
    );
    let output = gst_launch(&line);
    let printed = stderr(&output);
    assert!(output.status.success(), "{printed}");
    assert_eq!(frame_count(&out), frame_count(&input), "every frame");
    let caps = printed
        .lines()
        .find(|l| l.contains("segstream0.GstPad:src: caps"))
        .unwrap_or_else(|| panic!("no caps line for segstream's source pad in {printed}"));
    assert!(caps.contains("format=(string)I420"), "{caps}");
}

#[test]
fn frames_a_qos_event_says_are_late_are_dropped_before_inference_and_counted() {
    init();
    let frames = people_frames(1);
    let element = gst::ElementFactory::make("segstream").build().unwrap();
    element.set_property_from_str("mode", "mask");
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.play();
    h.set_src_caps_str(&format!(
        "video/x-raw,format=RGBA,width={},height={},framerate=10/1",
        frames[0].width(),
        frames[0].height()
    ));
    let at = |tenths: u64| {
        let mut b = buffer(&frames[0], false);
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_mseconds(100 * tenths));
        b
    };
    h.push(at(0)).unwrap();
    // The sink saw the frame of 1 s arrive 0.5 s late: frames before 1.5 s are late too.
    let late = gst::event::Qos::new(
        gst::QOSType::Underflow,
        1.0,
        500_000_000,
        gst::ClockTime::from_seconds(1),
    );
    assert!(h.push_upstream_event(late));
    for tenths in [1, 5, 14, 15, 20] {
        h.push(at(tenths)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out: Vec<u64> = pull_to_eos(&mut h)
        .iter()
        .map(|b| b.pts().unwrap().mseconds())
        .collect();
    assert_eq!(
        out,
        [0, 1500, 2000],
        "the late frames (0.1, 0.5, 1.4 s) are dropped"
    );
    let mut stats = Vec::new();
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Qos]) {
        if let gst::MessageView::Qos(qos) = message.view() {
            let (processed, dropped) = qos.stats();
            stats.push((processed.value(), dropped.value()));
        }
    }
    assert_eq!(
        stats,
        [(1, 1), (1, 2), (1, 3)],
        "one QoS message per dropped frame"
    );
}

#[test]
fn cutout_edges_are_soft_unless_turned_off() {
    let frames = people_frames(4);
    let alphas = |properties: &[(&str, &str)]| -> Vec<u8> {
        let mut h = harness(properties, "RGBA", &frames[0]);
        for frame in &frames {
            h.push(buffer(frame, false)).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let out = pull_to_eos(&mut h);
        assert_eq!(out.len(), frames.len());
        out.iter()
            .flat_map(|b| {
                b.map_readable()
                    .unwrap()
                    .chunks(4)
                    .map(|px| px[3])
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let partial = |alpha: &[u8]| alpha.iter().filter(|&&a| a != 0 && a != 255).count();
    let (soft, hard) = (
        alphas(&[("mode", "cutout")]),
        alphas(&[("mode", "cutout"), ("soft-edges", "false")]),
    );
    assert!(hard.contains(&255), "people were kept");
    assert_eq!(partial(&hard), 0, "hard edges are 0 or 255");
    let share = partial(&soft) as f64 / soft.len() as f64;
    assert!(
        share > 0.0005 && share < 0.03,
        "partial alpha on {share:.4}"
    );
}

#[test]
fn a_flush_discards_the_frames_in_flight_and_the_next_ones_all_come() {
    let frames = people_frames(20);
    let mut h = harness(&[("mode", "overlay"), ("batch", "4")], "RGBA", &frames[0]);
    for frame in &frames[..16] {
        h.push(buffer(frame, false)).unwrap();
    }
    assert!(h.push_event(gst::event::FlushStart::new()));
    let at_flush = h.buffers_received();
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    // The segment again, as after a seek.
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        h.buffers_received(),
        at_flush,
        "frames pushed before the flush came out after it"
    );
    assert!(
        at_flush < 16,
        "the flush caught frames in flight ({at_flush} of 16 were out)"
    );
    while h.try_pull().is_some() {}
    let later = gst::ClockTime::from_seconds(100);
    for frame in &frames[16..] {
        let mut buffer = buffer(frame, false);
        buffer.make_mut().set_pts(frame.pts.map(|pts| pts + later));
        h.push(buffer).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_to_eos(&mut h);
    assert_eq!(out.len(), 4, "every frame after the flush");
    assert!(out.iter().all(|b| b.pts().is_some_and(|pts| pts >= later)));
}

/// A folder holding only the plugin this test run built (Cargo leaves it in `deps/` beside the
/// binary under test; the copy beside the binary is refreshed only by `cargo build`).
fn plugin_dir() -> PathBuf {
    static LINKED: Once = Once::new();
    let built = Path::new(env!("CARGO_BIN_EXE_segstream"))
        .parent()
        .unwrap()
        .join("deps/libsegstream.so");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin");
    LINKED.call_once(|| {
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("libsegstream.so");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&built, &link).unwrap();
    });
    dir
}

/// Runs `gst-launch-1.0` on `line` with the built plugin, logging the element's info lines.
fn gst_launch(line: &str) -> Output {
    let mut args = vec!["-e".to_string()];
    args.extend(line.split_whitespace().map(String::from));
    crate::helpers::output_within(
        Command::new("gst-launch-1.0")
            .args(&args)
            .env("GST_PLUGIN_PATH", plugin_dir())
            .env("GST_DEBUG", "segstream:4")
            .env("GST_DEBUG_NO_COLOR", "1"),
    )
}

fn stderr(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn gst_launch_writes_a_playable_file_with_every_frame_and_two_elements_share_one_model() {
    let input = generated("people.mkv");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.mp4"), dir.path().join("b.mp4"));
    let encode = "videoconvert ! video/x-raw,format=I420 ! x264enc speed-preset=ultrafast ! mp4mux";
    let line = format!(
        "filesrc location={} ! decodebin ! videoconvert ! tee name=t \
         t. ! queue ! segstream mode=blur model-instance=shared ! {encode} ! filesink location={} \
         t. ! queue ! segstream mode=overlay model-instance=shared ! {encode} ! filesink location={}",
        input.display(),
        a.display(),
        b.display()
    );
    let output = gst_launch(&line);
    let printed = stderr(&output);
    assert!(output.status.success(), "{printed}");
    let frames = frame_count(&input);
    assert_eq!(frame_count(&a), frames, "every frame in the first output");
    assert_eq!(frame_count(&b), frames, "every frame in the second output");
    assert_eq!(
        printed.matches("model loaded").count(),
        1,
        "one session: {printed}"
    );
    assert_eq!(
        printed.matches("joined model-instance").count(),
        1,
        "{printed}"
    );
}

#[test]
fn missing_or_corrupt_models_and_unsupported_caps_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"not a model").unwrap();
    let cases = [
        (
            "videotestsrc num-buffers=5 ! videoconvert ! segstream model=/no/such/model.onnx ! fakesink".to_string(),
            vec!["/no/such/model.onnx", "not found"],
        ),
        (
            format!(
                "videotestsrc num-buffers=5 ! videoconvert ! segstream model={} ! fakesink",
                corrupt.display()
            ),
            vec!["corrupt.onnx"],
        ),
        (
            "videotestsrc num-buffers=5 ! video/x-raw,format=YUY2 ! segstream ! fakesink".to_string(),
            // GStreamer refuses the link itself, naming the caps.
            vec!["segstream0 can't handle caps", "YUY2"],
        ),
        (
            "videotestsrc num-buffers=5 ! videoconvert ! segstream mode=replace background=nonsense ! fakesink".to_string(),
            vec!["nonsense"],
        ),
    ];
    for (line, needles) in cases {
        let output = gst_launch(&line);
        let printed = stderr(&output);
        assert!(!output.status.success(), "{line}: succeeded\n{printed}");
        assert!(!printed.contains("panicked"), "{line}: {printed}");
        for needle in needles {
            assert!(
                printed.contains(needle),
                "{line}: no '{needle}' in\n{printed}"
            );
        }
    }
}

#[test]
fn caps_the_element_cannot_take_are_refused_saying_what_it_takes() {
    init();
    let element = gst::ElementFactory::make("segstream").build().unwrap();
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = Harness::with_element(&element, Some("sink"), Some("src"));
    h.play();
    h.set_src_caps_str("video/x-raw,format=YUY2,width=64,height=48,framerate=30/1");
    let pushed = h.push(gst::Buffer::from_mut_slice(vec![0u8; 64 * 48 * 2]));
    assert_eq!(pushed, Err(gst::FlowError::NotNegotiated));
    let message = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error on the bus");
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    let text = error.error().to_string();
    for needle in [
        "I420, NV12, RGBA, RGBx, BGRx or BGRA",
        "YUY2",
        "videoconvert",
    ] {
        assert!(text.contains(needle), "no '{needle}' in: {text}");
    }
}

#[test]
fn a_setting_changed_while_playing_is_refused_and_reads_back_as_it_was() {
    let frames = people_frames(1);
    let mut h = harness(&[("mode", "mask")], "RGBA", &frames[0]);
    let element = h.element().unwrap();
    h.push(buffer(&frames[0], false)).unwrap();
    let before = h.pull().unwrap();
    // Mask mode writes GRAY8: one byte a pixel.
    assert_eq!(before.size(), frames[0].width() * frames[0].height());
    let mode = || {
        use gst::prelude::GstValueExt as _;
        element
            .property_value("mode")
            .serialize()
            .unwrap()
            .to_string()
    };
    let set = mode();
    element.set_property_from_str("mode", "overlay");
    assert_eq!(mode(), set, "a change while playing does not read back");
    h.push(buffer(&frames[0], false)).unwrap();
    let after = h.pull().unwrap();
    assert_eq!(
        after.size(),
        before.size(),
        "the element still writes masks"
    );
}

/// The resident memory of process `pid` in MB, from the kernel's account.
fn resident_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib >> 10)
}

#[test]
fn a_leaky_element_whose_downstream_takes_nothing_keeps_its_memory_flat() {
    let model = crate::helpers::fixture_model();
    // gst-launch never pulls from the appsink, and one buffer fills it.
    let line = format!(
        "videotestsrc is-live=true ! video/x-raw,width=640,height=480,framerate=30/1 ! \
         videoconvert ! segstream leaky=true model={} ! appsink max-buffers=1 drop=false",
        model.display()
    );
    let mut child = Command::new("gst-launch-1.0")
        .args(line.split_whitespace())
        .env("GST_PLUGIN_PATH", plugin_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Past start-up (the model loaded, downstream full), then 6 s more of frames: 180 of
    // 1.2 MB each, which the element used to keep one by one.
    std::thread::sleep(Duration::from_secs(3));
    let settled = resident_mb(child.id());
    std::thread::sleep(Duration::from_secs(6));
    let later = resident_mb(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(settled > 0, "gst-launch-1.0 did not run");
    assert!(
        later < settled + 60,
        "memory grew from {settled} MB to {later} MB with downstream full"
    );
}

#[test]
fn sharers_that_need_their_logits_in_order_share_only_with_others_that_do() {
    init();
    let element = |properties: &[(&str, &str)]| {
        let element = gst::ElementFactory::make("segstream").build().unwrap();
        for (name, value) in properties {
            element.set_property_from_str(name, value);
        }
        element
    };
    let first = element(&[("model-instance", "order-test")]);
    let smoothing = element(&[("model-instance", "order-test"), ("smooth", "0.5")]);
    let masking = element(&[("model-instance", "order-test"), ("mode", "mask")]);
    assert!(first.set_state(gst::State::Paused).is_ok());
    assert!(
        smoothing.set_state(gst::State::Paused).is_err(),
        "a smoothing sharer cannot join an instance that infers side by side"
    );
    assert!(
        masking.set_state(gst::State::Paused).is_ok(),
        "drawing settings may differ between sharers"
    );
    for element in [&first, &smoothing, &masking] {
        element.set_state(gst::State::Null).unwrap();
    }
}
