//! Post-processing and composition cost per frame on a 960×540 frame: logits to a mask (one
//! class at 256×352, eleven at 96×128 like the CamVid model; without and with motion-aware
//! smoothing, the frame's luma shrunk to the model's grid included), then overlay, a colour cut-out
//! and the halo-free blurred background with a person-sized object, each in RGBA and in I420
//! (frames kept in the decoder's format), side by side; pre-processing of either format to
//! the people model's 384×288 input; and soft edges: the mask with its coverage, and a colour
//! cut-out refined along the frame's luma against the hard one.
//!
//! `cargo bench --bench compose -- [FRAMES]` (default 200). Prints milliseconds per frame (the
//! copy of the frame each call starts from included: 2 MB in RGBA, 0.8 MB in I420).

use std::time::Instant;

use gstreamer_video as gst_video;
use segstream::imaging::{
    Background, Compositor, Edge, LabelStyle, Mask, Mode, Postprocessor, Preprocessor, Scaler,
    Smoothing,
};
use segstream::infer::ModelCard;

const WIDTH: usize = 960;
const HEIGHT: usize = 540;

fn main() -> anyhow::Result<()> {
    let frames: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map_or(Ok(200), |n| n.parse())?;
    let pixels: Vec<u8> = (0..WIDTH * HEIGHT)
        .flat_map(|i| [(i % 251) as u8, (i % 241) as u8, (i % 239) as u8, 255])
        .collect();
    // An upright ellipse in the middle third: about the share of a frame a person takes.
    let labels: Vec<u8> = (0..WIDTH * HEIGHT)
        .map(|i| {
            let (x, y) = ((i % WIDTH) as f32, (i / WIDTH) as f32);
            let (dx, dy) = ((x - 480.0) / 120.0, (y - 300.0) / 220.0);
            u8::from(dx * dx + dy * dy <= 1.0)
        })
        .collect();
    let mask = Mask {
        width: WIDTH,
        height: HEIGHT,
        labels,
        coverage: None,
    };
    let styles = vec![
        LabelStyle {
            color: None,
            foreground: false,
            mask_value: 0,
        },
        LabelStyle {
            color: Some([230, 25, 75]),
            foreground: true,
            mask_value: 255,
        },
    ];
    gstreamer::init()?;
    let i420 =
        gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, WIDTH as u32, HEIGHT as u32)
            .build()?;
    let yuv: Vec<u8> = (0..i420.size()).map(|i| (i % 251) as u8).collect();
    println!("{WIDTH}x{HEIGHT}, {frames} frames");
    for (classes, [h, w]) in [(1, [256, 352]), (11, [96, 128])] {
        // Smooth class fields, each peaking somewhere else: regions with boundaries between.
        let logits = ndarray::Array3::from_shape_fn((classes, h, w), |(c, y, x)| {
            let (cx, cy) = ((c * 37 % w) as f32, (c * 23 % h) as f32);
            -((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() * 0.2
        });
        let mut post = Postprocessor::new(0.5);
        let ms = ms_per_frame(frames, || post.run(logits.view(), WIDTH, HEIGHT));
        println!("mask, {classes:>2} class(es) {ms:6.2} ms per frame");
        // Motion-aware smoothing: the frame's luma shrunk to the grid, then the blend.
        let mut smoothed = Postprocessor::new(0.5).with_smoothing(Smoothing::following_motion(0.8));
        let mut scaler = Scaler::default();
        let ms = ms_per_frame(frames, || {
            let luma = scaler.gray(&yuv[..WIDTH * HEIGHT], [WIDTH, HEIGHT], [w, h]);
            smoothed.run_moving(logits.view(), WIDTH, HEIGHT, Some(&luma))
        });
        println!("  + smoothing       {ms:6.2} ms per frame");
    }
    // Eleven classes, every pixel coloured (a road scene): stripes of all labels.
    let classes = 11u8;
    let scene = Mask {
        labels: (0..WIDTH * HEIGHT)
            .map(|i| ((i % WIDTH) * usize::from(classes) / WIDTH) as u8)
            .collect(),
        ..mask.clone()
    };
    let scene_styles: Vec<LabelStyle> = (0..classes)
        .map(|c| LabelStyle {
            color: Some([c * 20, 255 - c * 20, 128]),
            foreground: true,
            mask_value: c,
        })
        .collect();
    let mut pre = Preprocessor::new(&ModelCard::with_defaults(1, [288, 384]));
    let rgba_ms = ms_per_frame(frames, || pre.run(&pixels, WIDTH, HEIGHT));
    let i420_ms = ms_per_frame(frames, || pre.run_i420(&yuv, &i420));
    println!(
        "{:<16} {rgba_ms:6.2} ms RGBA {i420_ms:6.2} ms I420",
        "preprocess"
    );
    let mut compositor = Compositor::new(Mode::Overlay { opacity: 0.5 }, scene_styles)?;
    compose_row(
        "overlay 11 cls",
        &mut compositor,
        frames,
        &pixels,
        &yuv,
        &i420,
        &scene,
    );
    for (name, mode) in [
        ("overlay", Mode::Overlay { opacity: 0.5 }),
        (
            "cutout #00ff00",
            Mode::Cutout {
                background: Background::Color([0, 255, 0]),
            },
        ),
        (
            "cutout blur",
            Mode::Cutout {
                background: Background::Blur,
            },
        ),
    ] {
        let mut compositor = Compositor::new(mode, styles.clone())?;
        compositor.run(pixels.clone(), &mask); // warm-up
        compose_row(name, &mut compositor, frames, &pixels, &yuv, &i420, &mask);
    }
    // Soft edges: the same object from people.onnx-sized logits, with its coverage (the
    // post-processing that makes it, then the colour cut-out refined along the frame's luma).
    let [h, w] = [288, 384];
    let logits = ndarray::Array3::from_shape_fn((1, h, w), |(_, y, x)| {
        let (x, y) = (
            x as f32 * WIDTH as f32 / w as f32,
            y as f32 * HEIGHT as f32 / h as f32,
        );
        let (dx, dy) = ((x - 480.0) / 120.0, (y - 300.0) / 220.0);
        8.0 * (1.0 - (dx * dx + dy * dy).sqrt())
    });
    let mut post = Postprocessor::new(0.5).with_coverage(true);
    let soft = post.run(logits.view(), WIDTH, HEIGHT);
    let hard_ms = ms_per_frame(frames, || {
        Postprocessor::new(0.5).run(logits.view(), WIDTH, HEIGHT)
    });
    let soft_ms = ms_per_frame(frames, || post.run(logits.view(), WIDTH, HEIGHT));
    println!(
        "{:<16} {hard_ms:6.2} ms hard  {soft_ms:6.2} ms soft",
        "mask 288x384"
    );
    let green = || Mode::Cutout {
        background: Background::Color([0, 255, 0]),
    };
    for (name, edge) in [
        ("cutout hard", Edge::Hard),
        ("cutout soft", Edge::Soft { feather: None }),
    ] {
        let mut compositor = Compositor::new(green(), styles.clone())?.with_edge(edge);
        compose_row(name, &mut compositor, frames, &pixels, &yuv, &i420, &soft);
    }
    Ok(())
}

/// Prints `name`'s milliseconds per frame for `compositor` drawing `mask` on a copy of the RGBA
/// frame `rgba` and of the I420 frame `yuv` (laid out as `i420`).
fn compose_row(
    name: &str,
    compositor: &mut Compositor,
    frames: usize,
    rgba: &[u8],
    yuv: &[u8],
    i420: &gst_video::VideoInfo,
    mask: &Mask,
) {
    let rgba_ms = ms_per_frame(frames, || compositor.run(rgba.to_vec(), mask));
    let i420_ms = ms_per_frame(frames, || {
        let mut frame = yuv.to_vec();
        compositor.run_i420(&mut frame, i420, mask);
        frame
    });
    println!("{name:<16} {rgba_ms:6.2} ms RGBA {i420_ms:6.2} ms I420");
}

/// Milliseconds per call of `run`, over `frames` calls.
fn ms_per_frame<T>(frames: usize, mut run: impl FnMut() -> T) -> f64 {
    let started = Instant::now();
    for _ in 0..frames {
        std::hint::black_box(run());
    }
    started.elapsed().as_secs_f64() * 1e3 / frames as f64
}
