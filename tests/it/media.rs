//! Test media: the shared clips, decoding outputs back, and test models with known behaviour.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use gstreamer::prelude::*;

use prost::Message;
use segstream::infer::ModelCard;
use segstream::onnx::proto::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
    tensor_shape_proto::{Dimension, dimension::Value},
    type_proto,
};
use segstream::onnx::{GraphBuilder, INPUT, Weights, Window};
use segstream::video::{Frame, FrameSource, Pulled};

/// Folder of the shared data (`../shared/data/NAME`), for tests that need labelled datasets or
/// the shared clips. When it is missing the test fails with one line saying so.
pub fn shared(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: this test needs the shared data folder beside the checkout",
        path.display()
    );
    path
}

/// A clip from the shared test data (`../shared/data/videos`).
pub fn clip(name: &str) -> PathBuf {
    shared("videos").join(name)
}

/// A clip Debian's `opencv-doc` ships (installed by `scripts/setup`).
pub fn opencv_clip(name: &str) -> PathBuf {
    Path::new("/usr/share/doc/opencv-doc/examples/data").join(name)
}

/// The pedestrians clip of `opencv-doc` (768×576, 10 fps, 795 frames): people for live tests.
pub fn people_clip() -> PathBuf {
    opencv_clip("vtest.avi")
}

/// A clip made with GStreamer's test sources for the tests that need only *some* video, once
/// per test run (under Cargo's temporary folder for tests):
/// - `bars.mkv`: 60 frames, 640×480 at 30 fps, SMPTE bars moving sideways (red, green and blue
///   areas in every frame, different pixels in each);
/// - `tone.mp4`: 90 frames, 320×240 at 30 fps, with 3 s of a sine tone (H.264 + AAC);
/// - `rotated.mp4`: 10 frames stored 64×32 and tagged to be shown turned 90° clockwise;
/// - `two-sizes.ts`: 15 red frames 320×240, then 15 blue frames 160×160 (MPEG-TS, as joined
///   clips are);
/// - `odd.mkv`: 10 frames of 321×241 (lossless FFV1);
/// - `tiny.mkv`: 10 frames of 2×2;
/// - `people.mkv`: the first 36 frames of the pedestrians clip at 30 fps (each shown three
///   times, about 110 frames), 640×480;
/// - `interlaced.mkv`: 50 interlaced frames (25 fps, top field first) of a moving ball, 320×240,
///   H.264 coded as fields, as broadcast and camcorder footage is;
/// - `vfr.mkv`: 50 frames, 160×120, in irregular gaps of 40 to 120 ms over 3.4 s, in a stream
///   whose nominal rate is 25 fps (a variable-frame-rate file: phone clips, screen captures);
/// - `forever.gif`: an animated GIF of 20 frames, 160×120, 100 ms each, set to loop forever;
/// - `moving-square.mkv`: 60 frames, 320×240 at 30 fps, lossless (FFV1, RGB): a red square
///   crossing a still dark background left to right, 4 pixels a frame, above a still band
///   whose red hovers around the red detector's threshold with noise (see
///   [`make_moving_square`]).
pub fn generated(name: &str) -> PathBuf {
    static MADE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("clips");
    let path = dir.join(name);
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if made.iter().any(|m| m == name) {
        return path;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let bars = "videotestsrc pattern=smpte horizontal-speed=8";
    let h264 = H264;
    match name {
        "bars.mkv" => make_clip(
            &format!(
                "{bars} num-buffers=60 ! video/x-raw,width=640,height=480,framerate=30/1 ! \
                 {h264} ! matroskamux ! filesink name=file"
            ),
            &path,
        ),
        "tone.mp4" => make_clip(
            &format!(
                "{bars} num-buffers=90 ! video/x-raw,width=320,height=240,framerate=30/1 ! \
                 {h264} ! mux. audiotestsrc num-buffers=129 samplesperbuffer=1024 ! \
                 audio/x-raw,rate=44100 ! audioconvert ! avenc_aac ! aacparse ! \
                 mp4mux name=mux ! filesink name=file"
            ),
            &path,
        ),
        "rotated.mp4" => {
            make_clip(
                &format!(
                    "{bars} num-buffers=10 ! video/x-raw,width=64,height=32,framerate=30/1 ! \
                     {h264} ! mp4mux ! filesink name=file"
                ),
                &path,
            );
            tag_rotated_90(&path);
        }
        "two-sizes.ts" => {
            let part = |pattern: &str, size: &str, file: &Path| {
                make_clip(
                    &format!(
                        "videotestsrc pattern={pattern} num-buffers=15 ! \
                         video/x-raw,{size},framerate=30/1 ! {h264} key-int-max=5 ! \
                         mpegtsmux ! filesink name=file"
                    ),
                    file,
                );
                std::fs::read(file).unwrap()
            };
            let first = part("red", "width=320,height=240", &dir.join("part1.ts"));
            let second = part("blue", "width=160,height=160", &dir.join("part2.ts"));
            std::fs::write(&path, [first, second].concat()).unwrap();
        }
        "odd.mkv" => make_clip(
            &format!(
                "{bars} num-buffers=10 ! video/x-raw,width=321,height=241,framerate=30/1 ! \
                 videoconvert ! avenc_ffv1 ! matroskamux ! filesink name=file"
            ),
            &path,
        ),
        "tiny.mkv" => make_clip(
            "videotestsrc num-buffers=10 ! video/x-raw,width=2,height=2,framerate=30/1 ! \
             videoconvert ! x264enc threads=1 ! matroskamux ! filesink name=file",
            &path,
        ),
        "people.mkv" => make_people_clip(&path),
        "interlaced.mkv" => make_clip(
            "videotestsrc pattern=ball num-buffers=100 ! \
             video/x-raw,width=320,height=240,framerate=50/1 ! \
             interlace field-pattern=1:1 top-field-first=true ! videoconvert ! \
             video/x-raw,format=I420 ! x264enc speed-preset=ultrafast threads=1 interlaced=true ! \
             matroskamux ! filesink name=file",
            &path,
        ),
        "vfr.mkv" => make_vfr_clip(&path),
        "forever.gif" => make_looping_gif(&path),
        "moving-square.mkv" => make_moving_square(&path),
        other => panic!("no recipe for the generated clip {other}"),
    }
    made.push(name.to_string());
    path
}

/// H.264 for the generated clips: x264 on one thread, whose output is the same on every run
/// (with its default threads, two encodes of the same frames differ).
const H264: &str = "videoconvert ! x264enc speed-preset=ultrafast threads=1";

/// Runs the gst-launch `description` (its `filesink name=file` writing `path`) to its end.
fn make_clip(description: &str, path: &Path) {
    let pipeline = writing(description, path);
    pipeline.set_state(gstreamer::State::Playing).unwrap();
    wait_for_end(&pipeline, path);
}

/// The gst-launch `description`, its `filesink name=file` set to write `path` (not started).
fn writing(description: &str, path: &Path) -> gstreamer::Pipeline {
    gstreamer::init().unwrap();
    let pipeline = gstreamer::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast::<gstreamer::Pipeline>()
        .unwrap();
    pipeline
        .by_name("file")
        .unwrap()
        .set_property("location", path);
    pipeline
}

/// Waits until `pipeline`, which writes `path`, ends; then stops it.
fn wait_for_end(pipeline: &gstreamer::Pipeline, path: &Path) {
    let bus = pipeline.bus().unwrap();
    for message in bus.iter_timed(gstreamer::ClockTime::from_seconds(60)) {
        match message.view() {
            gstreamer::MessageView::Eos(_) => break,
            gstreamer::MessageView::Error(e) => panic!("making {}: {e:?}", path.display()),
            _ => {}
        }
    }
    pipeline.set_state(gstreamer::State::Null).unwrap();
}

/// Gaps between the frames of `vfr.mkv`, in milliseconds, repeated: 68 ms on average.
const VFR_GAPS_MS: [u64; 5] = [40, 120, 40, 80, 60];

/// Writes `vfr.mkv` (see [`generated`]): frames pushed with their own timestamps into an H.264
/// Matroska file whose caps say 25 fps.
fn make_vfr_clip(path: &Path) {
    let (pipeline, src) = pushing_rgba(
        &format!("appsrc name=src format=time ! {H264} ! matroskamux ! filesink name=file"),
        path,
        [160, 120],
        25,
    );
    let mut pts = 0;
    for i in 0..50u64 {
        let gap = VFR_GAPS_MS[i as usize % VFR_GAPS_MS.len()];
        let shade = (i * 5) as u8;
        push_rgba(&src, vec![shade; 160 * 120 * 4], pts, gap);
        pts += gap;
    }
    src.end_of_stream().unwrap();
    wait_for_end(&pipeline, path);
}

/// The gst-launch `description` writing `path`, playing, with its `appsrc name=src` taking
/// RGBA frames of `[width, height]` at `fps` (caps; timestamps are the pushed buffers').
fn pushing_rgba(
    description: &str,
    path: &Path,
    [width, height]: [usize; 2],
    fps: i32,
) -> (gstreamer::Pipeline, gstreamer_app::AppSrc) {
    let pipeline = writing(description, path);
    let src = pipeline
        .by_name("src")
        .unwrap()
        .downcast::<gstreamer_app::AppSrc>()
        .unwrap();
    src.set_caps(Some(
        &gstreamer::Caps::builder("video/x-raw")
            .field("format", "RGBA")
            .field("width", width as i32)
            .field("height", height as i32)
            .field("framerate", gstreamer::Fraction::new(fps, 1))
            .build(),
    ));
    pipeline.set_state(gstreamer::State::Playing).unwrap();
    (pipeline, src)
}

/// Pushes one RGBA frame into `src`, shown at `pts_ms` for `duration_ms`.
fn push_rgba(src: &gstreamer_app::AppSrc, pixels: Vec<u8>, pts_ms: u64, duration_ms: u64) {
    let mut buffer = gstreamer::Buffer::from_mut_slice(pixels);
    {
        let buffer = buffer.get_mut().unwrap();
        buffer.set_pts(gstreamer::ClockTime::from_mseconds(pts_ms));
        buffer.set_duration(gstreamer::ClockTime::from_mseconds(duration_ms));
    }
    src.push_buffer(buffer).unwrap();
}

/// Writes `people.mkv` (see [`generated`]): the first 36 frames of the pedestrians clip, as
/// segstream's own source decodes them, pushed with 10 fps timestamps and turned into 30 fps
/// by `videorate`. (An `identity eos-after=36` behind `decodebin` let a varying number of
/// frames through, 38 to 101 of the clip's: the tests on it saw a different clip each run.)
fn make_people_clip(path: &Path) {
    let mut frames = Vec::new();
    decode(&people_clip(), |frame| {
        if frames.len() < 36 {
            frames.push(frame.pixels);
        }
    });
    let (pipeline, src) = pushing_rgba(
        &format!(
            "appsrc name=src format=time ! videoscale ! videorate ! \
             video/x-raw,width=640,height=480,framerate=30/1 ! {H264} ! matroskamux ! \
             filesink name=file"
        ),
        path,
        [768, 576],
        10,
    );
    for (i, pixels) in frames.into_iter().enumerate() {
        push_rgba(&src, pixels, i as u64 * 100, 100);
    }
    src.end_of_stream().unwrap();
    wait_for_end(&pipeline, path);
}

/// Writes `moving-square.mkv` (see [`generated`]): what motion-aware smoothing must tell
/// apart. The square (red 255 on grey 40) moves, so the mask must follow it; in the band below
/// (rows 160 up) the picture stands still while each pixel's red is drawn from 118..=131 in
/// every frame, crossing the red detector's threshold (127.5) about one frame in four: false
/// detections that come and go without anything moving, the way a model's mask sparkles on a
/// still background.
fn make_moving_square(path: &Path) {
    let (width, height) = (320usize, 240usize);
    let (pipeline, src) = pushing_rgba(
        "appsrc name=src format=time ! videoconvert ! video/x-raw,format=BGRA ! avenc_ffv1 ! \
         matroskamux ! filesink name=file",
        path,
        [width, height],
        30,
    );
    let mut noise = 0x2545_f491_u32;
    for i in 0..60usize {
        let mut pixels = vec![0u8; width * height * 4];
        for (p, px) in pixels.chunks_exact_mut(4).enumerate() {
            let (x, y) = (p % width, p / width);
            let red = if y >= 160 {
                // xorshift32: the same noise on every run.
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                118 + (noise % 14) as u8
            } else if (40..100).contains(&y) && (i * 4..i * 4 + 40).contains(&x) {
                255
            } else {
                40
            };
            px.copy_from_slice(&[red, 40, 40, 255]);
        }
        push_rgba(&src, pixels, i as u64 * 1000 / 30, 33);
    }
    src.end_of_stream().unwrap();
    wait_for_end(&pipeline, path);
}

/// Writes `forever.gif` (see [`generated`]) with the `image` crate's GIF encoder.
fn make_looping_gif(path: &Path) {
    use image::codecs::gif::{GifEncoder, Repeat};
    use image::{Delay, Frame, Rgba, RgbaImage};
    let mut encoder = GifEncoder::new(std::fs::File::create(path).unwrap());
    encoder.set_repeat(Repeat::Infinite).unwrap();
    for i in 0..20u32 {
        let picture = RgbaImage::from_fn(160, 120, |x, y| {
            let inside = (i * 6..i * 6 + 30).contains(&x) && (30..90).contains(&y);
            if inside {
                Rgba([255, 0, 0, 255])
            } else {
                Rgba([30, 30, 30, 255])
            }
        });
        let delay = Delay::from_numer_denom_ms(100, 1);
        encoder
            .encode_frame(Frame::from_parts(picture, 0, 0, delay))
            .unwrap();
    }
}

/// Writes the 90° rotation matrix into the MP4's track header, as phones tag upright clips
/// filmed sideways (GStreamer 1.22's mp4mux cannot be asked for it).
fn tag_rotated_90(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let header = bytes
        .windows(4)
        .position(|w| w == b"tkhd")
        .expect("an MP4 track header");
    // Version-0 tkhd: the matrix follows 40 bytes of version, flags, times, ids and volume.
    let matrix_at = header + 4 + 40;
    let rotate_90: [u32; 9] = [0, 0x0001_0000, 0, 0xFFFF_0000, 0, 0, 0, 0, 0x4000_0000];
    for (i, value) in rotate_90.iter().enumerate() {
        bytes[matrix_at + 4 * i..][..4].copy_from_slice(&value.to_be_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// The number of frames segstream's own source decodes from `path`.
pub fn frame_count(path: &Path) -> usize {
    let mut frames = 0;
    decode(path, |_| frames += 1);
    frames
}

/// Decodes every frame of `path` with segstream's own source and hands it to `visit`.
pub fn decode(path: &Path, mut visit: impl FnMut(Frame)) {
    let mut source = FrameSource::file(path).unwrap();
    source.start().unwrap();
    loop {
        match source.pull(gstreamer::ClockTime::from_seconds(10)).unwrap() {
            Pulled::Frame(frame) => visit(*frame),
            Pulled::End => break,
            Pulled::Timeout => panic!("decoding {} stalled", path.display()),
        }
    }
}

/// Logit gain of the red detector: sharp enough that the mask is a threshold on red.
const RED_GAIN: f32 = 200.0;

/// Writes `dir/name`: one 1×1 convolution (`weight` is C×3) from RGB in 0..1 (identity
/// normalisation) to the logits of `classes`, with input size `[h, w]` in the card.
fn pointwise_model(
    dir: &Path,
    name: &str,
    classes: &[&str],
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    size: [usize; 2],
) -> PathBuf {
    let mut graph = GraphBuilder::new();
    let window = Window {
        kernel: [1, 1],
        stride: [1, 1],
        pads: [0; 4],
    };
    let weight = Weights::new(vec![classes.len(), 3, 1, 1], weight);
    let bias = bias.map(|b| Weights::new(vec![classes.len()], b));
    let logits = graph.conv(INPUT, &weight, bias.as_ref(), window);
    let mut card = ModelCard::with_defaults(classes.len(), size);
    card.classes = classes.iter().map(|c| c.to_string()).collect();
    card.mean = [0.0; 3];
    card.std = [1.0; 3];
    let path = dir.join(name);
    std::fs::write(
        &path,
        graph.finish(&logits, classes.len(), None, card.to_metadata()),
    )
    .unwrap();
    path
}

/// A binary model whose logit is `RED_GAIN · (red − 0.5)`: the mask is exactly "red ≥ 128".
pub fn red_detector(dir: &Path, size: [usize; 2]) -> PathBuf {
    pointwise_model(
        dir,
        "red.onnx",
        &["red"],
        vec![RED_GAIN, 0.0, 0.0],
        Some(vec![-RED_GAIN * 0.5]),
        size,
    )
}

/// A 3-class model whose logits are the pixel's red, green and blue (times 10): the class is
/// the dominant channel.
pub fn channel_classifier(dir: &Path, size: [usize; 2]) -> PathBuf {
    let mut identity = vec![0.0; 9];
    for c in 0..3 {
        identity[c * 4] = 10.0;
    }
    pointwise_model(
        dir,
        "channels.onnx",
        &["red", "green", "blue"],
        identity,
        None,
        size,
    )
}

/// The channel classifier's class for an RGBA pixel: the first largest of R, G, B.
pub fn dominant_channel(pixel: &[u8]) -> u8 {
    (0..3u8).fold(0, |best, c| {
        if pixel[usize::from(c)] > pixel[usize::from(best)] {
            c
        } else {
            best
        }
    })
}

/// A binary model in the contract whose weights are NaN (a diverged training run's): every
/// output is NaN.
pub fn nan_model(dir: &Path) -> PathBuf {
    pointwise_model(
        dir,
        "nan.onnx",
        &["object"],
        vec![f32::NAN; 3],
        Some(vec![f32::NAN]),
        [32, 32],
    )
}

/// Whether the red detector calls this RGBA pixel an object.
pub fn is_red(pixel: &[u8]) -> bool {
    // logit = 200·(r/255 − 0.5) ≥ 0
    f32::from(pixel[0]) / 255.0 >= 0.5
}

/// Reads the PNG frames a folder output holds, in order.
pub fn png_frames(dir: &Path) -> Vec<image::RgbaImage> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| image::open(p).unwrap().to_rgba8())
        .collect()
}

/// A model whose single input and output have the given shape (-1 = dynamic): `Identity`.
pub fn identity_model(dims: &[i64]) -> Vec<u8> {
    foreign_model(&[("input", dims)], "Identity", ("logits", dims))
}

/// A model of one node `op` reading the f32 `inputs` (name, shape) into `output`, as another
/// program would write it (no segstream card).
pub fn foreign_model(inputs: &[(&str, &[i64])], op: &str, output: (&str, &[i64])) -> Vec<u8> {
    let info = |name: &str, dims: &[i64]| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(1),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(if d < 0 {
                                Value::DimParam("n".into())
                            } else {
                                Value::DimValue(d)
                            }),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some(op.to_lowercase()),
            node: vec![NodeProto {
                op_type: Some(op.into()),
                input: inputs.iter().map(|(name, _)| name.to_string()).collect(),
                output: vec![output.0.into()],
                ..Default::default()
            }],
            input: inputs.iter().map(|(name, dims)| info(name, dims)).collect(),
            output: vec![info(output.0, output.1)],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Writes `to`: the model `from` with its metadata `key` set to `value` (raw JSON text), for
/// cards that are malformed or that the graph cannot run with.
pub fn with_metadata(from: &Path, to: &Path, key: &str, value: &str) {
    let mut model = ModelProto::decode(std::fs::read(from).unwrap().as_slice()).unwrap();
    model
        .metadata_props
        .retain(|entry| entry.key.as_deref() != Some(key));
    model.metadata_props.push(StringStringEntryProto {
        key: Some(key.into()),
        value: Some(value.into()),
    });
    std::fs::write(to, model.encode_to_vec()).unwrap();
}
