//! Frames kept in the decoder's I420: composition in YUV against composition of the same frames
//! in RGBA, on real decoded frames with masks that follow the pictures' own edges.

use gstreamer as gst;
use gstreamer_video as gst_video;
use segstream::imaging::yuv::{YuvMatrix, i420_to_rgba};
use segstream::imaging::{Background, Compositor, LabelStyle, Mask, Mode, label_styles};
use segstream::infer::ModelCard;
use segstream::video::{Frame, FrameSource, OutputKind, Pulled};

use crate::media::people_clip;

/// The first `n` frames of `source`.
fn first_frames(mut source: FrameSource, n: usize) -> Vec<Frame> {
    source.start().unwrap();
    (0..n)
        .map(
            |_| match source.pull(gst::ClockTime::from_seconds(10)).unwrap() {
                Pulled::Frame(frame) => *frame,
                other => panic!("expected a frame, got {other:?}"),
            },
        )
        .collect()
}

/// I420 `frame` converted to packed RGBA by GStreamer (the conversion the RGBA source's
/// `videoconvert` makes, so both sides see the same colours).
fn to_rgba(frame: &Frame) -> Vec<u8> {
    let rgba = gst_video::VideoInfo::builder(
        gst_video::VideoFormat::Rgba,
        frame.info.width(),
        frame.info.height(),
    )
    .fps(frame.info.fps())
    .build()
    .unwrap();
    let input = gst::Buffer::from_slice(frame.pixels.clone());
    let input = gst_video::VideoFrame::from_buffer_readable(input, &frame.info).unwrap();
    let output = gst::Buffer::with_size(rgba.size()).unwrap();
    let mut output = gst_video::VideoFrame::from_buffer_writable(output, &rgba).unwrap();
    let converter = gst_video::VideoConverter::new(&frame.info, &rgba, None).unwrap();
    converter.frame(&input, &mut output);
    output.plane_data(0).unwrap().to_vec()
}

/// I420 `frame` as packed RGBA by the standard conversion of its colorimetry (each chroma
/// sample repeated over its 2×2 block), rounded.
fn exact_rgba(frame: &Frame) -> Vec<u8> {
    let matrix = YuvMatrix::new(&frame.info.colorimetry());
    i420_to_rgba(&frame.pixels, &frame.i420_layout().unwrap(), &matrix)
}

/// Label 1 where the picture is darker than mid-grey: a mask as ragged as the picture's own
/// edges (people, shadows, windows), the hard case for chroma shared by 2×2 blocks.
fn dark_mask(rgba: &[u8], [width, height]: [usize; 2]) -> Mask {
    Mask {
        width,
        height,
        labels: rgba
            .chunks_exact(4)
            .map(|px| u8::from(u32::from(px[0]) + u32::from(px[1]) + u32::from(px[2]) < 300))
            .collect(),
        coverage: None,
    }
}

/// The styles a binary model's card gives: label 1 tinted, kept, white.
fn styles() -> Vec<LabelStyle> {
    label_styles(&ModelCard::with_defaults(1, [64, 64]), &[], false).unwrap()
}

fn mean_absolute_difference(a: &[u8], b: &[u8]) -> f64 {
    let total: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.len() as f64
}

#[test]
fn composing_in_i420_matches_composing_in_rgba_on_real_frames() {
    segstream::video::init().unwrap();
    let clip = people_clip();
    let frames = 6;
    let rgba = first_frames(FrameSource::file(&clip).unwrap(), frames);
    let i420 = first_frames(
        FrameSource::file(&clip)
            .unwrap()
            .for_output(Some(OutputKind::Mp4)),
        frames,
    );
    assert!(i420[0].i420_layout().is_some() && rgba[0].i420_layout().is_none());
    assert_eq!(
        i420[0].info.size(),
        768 * 576 * 3 / 2,
        "I420 at 1.5 bytes a pixel"
    );
    // A background image with colour everywhere: a gradient of 200×120, stretched.
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("background.png");
    image::RgbImage::from_fn(200, 120, |x, y| {
        image::Rgb([x as u8, (y * 2) as u8, 255 - x as u8])
    })
    .save(&image)
    .unwrap();
    let modes = [
        Mode::Overlay { opacity: 0.5 },
        Mode::Cutout {
            background: Background::Color([20, 200, 90]),
        },
        Mode::Cutout {
            background: Background::Blur,
        },
        Mode::Cutout {
            background: Background::Image(image.clone()),
        },
        Mode::Mask,
    ];
    for mode in modes {
        let mut worst = 0.0f64;
        let mut in_rgba = Compositor::new(mode.clone(), styles()).unwrap();
        let mut in_i420 = Compositor::new(mode.clone(), styles()).unwrap();
        for (rgba, i420) in rgba.iter().zip(&i420) {
            assert_eq!((rgba.pts, rgba.seq), (i420.pts, i420.seq));
            // The same picture, read either way.
            assert_eq!(to_rgba(i420), rgba.pixels, "frame {}", i420.seq);
            // Both ways composed from the exact RGB of the decoded frame: only where the
            // composition is done can differ.
            let picture = exact_rgba(i420);
            let mask = dark_mask(&picture, [i420.width(), i420.height()]);
            let shown = mask.labels.iter().filter(|&&l| l == 1).count();
            assert!(
                shown > mask.labels.len() / 100 && shown < mask.labels.len() * 9 / 10,
                "{shown} dark pixels"
            );
            let expected = in_rgba.run(picture, &mask);
            let mut composed = i420.clone();
            in_i420.run_i420(&mut composed.pixels, &composed.info, &mask);
            let mad = mean_absolute_difference(&exact_rgba(&composed), &expected);
            assert!(
                mad <= 2.0,
                "{mode:?}: mean absolute difference {mad:.2} levels"
            );
            worst = worst.max(mad);
            if mode == (Mode::Overlay { opacity: 0.5 }) {
                // Luma of untinted pixels is untouched, byte for byte.
                let layout = i420.i420_layout().unwrap();
                let changed = (0..mask.labels.len())
                    .filter(|&i| mask.labels[i] == 0)
                    .map(|i| {
                        layout.offsets[0]
                            + i / layout.size[0] * layout.strides[0]
                            + i % layout.size[0]
                    })
                    .filter(|&at| composed.pixels[at] != i420.pixels[at])
                    .count();
                assert_eq!(changed, 0, "untinted luma changed");
            }
        }
        eprintln!("{mode:?}: worst mean absolute difference {worst:.2} levels");
    }
}
