#!/usr/bin/env bash
# The GStreamer element measured (figures only; nothing here fails on a timing):
#  1. the element in gst-launch-1.0 (decode → segstream → x264enc → mp4mux: in the decoder's I420
#     with no converter, and in RGBA between two videoconverts) against `segstream segment` on
#     the same clip, model and encoder settings, in alternating triples;
#  2. the latency the element adds in a live pipeline (videotestsrc is-live=true, 30 fps),
#     from GStreamer's own latency tracer;
#  3. two elements sharing one model-instance against two with sessions of their own:
#     peak memory and aggregate fps.
# Usage, after `cargo build --release`: benches/element.sh [CLIP] [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
clip=$(realpath "${1:-../shared/data/videos/solidWhiteRight.mp4}")
pairs=${2:-3}
export GST_PLUGIN_PATH=$PWD/target/release
segstream=$PWD/target/release/segstream
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The encoder settings of segment's mp4 sink (pipelines/sinks/mp4.gst), behind a queue: segment's
# appsrc hands frames to the encoder on a thread of its own, and so does the queue.
x264="x264enc speed-preset=superfast mb-tree=true rc-lookahead=10 pass=qual quantizer=20 bitrate=50000 bframes=0 ! h264parse ! mp4mux"
encode="queue ! videoconvert ! video/x-raw,format=I420 ! $x264"

# Runs the command; prints its wall seconds and peak memory (MB).
measure() {
    if ! /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/log" 2>&1; then
        echo "failed: $*" >&2
        tail -5 "$work/log" >&2
        exit 1
    fi
    awk '{ printf "%s %.0f\n", $1, $2 / 1024 }' "$work/time"
}

frames=$(gst-launch-1.0 -v filesrc location="$clip" ! decodebin ! video/x-raw ! \
    fakesink silent=false 2>/dev/null | grep -c 'chain')
echo "clip: $clip ($frames frames), $(nproc) cores"
echo
echo "1. element in gst-launch-1.0 vs segstream segment (same model, same x264 settings), $pairs alternating triples"
yuv_ratios=()
rgba_ratios=()
for ((i = 1; i <= pairs; i++)); do
    read -r yuv_s _ < <(measure gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! \
        segstream ! queue ! $x264 ! filesink location="$work/element.mp4")
    read -r rgba_s _ < <(measure gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! \
        videoconvert ! video/x-raw,format=RGBA ! segstream ! $encode ! filesink location="$work/element.mp4")
    read -r segment_s _ < <(measure "$segstream" segment "$clip" -o "$work/segment.mp4" --no-audio)
    yuv=$(awk -v e="$yuv_s" -v s="$segment_s" 'BEGIN { printf "%.3f", e / s }')
    rgba=$(awk -v e="$rgba_s" -v s="$segment_s" 'BEGIN { printf "%.3f", e / s }')
    yuv_ratios+=("$yuv")
    rgba_ratios+=("$rgba")
    echo "   triple $i: element I420 ${yuv_s} s, element RGBA ${rgba_s} s, segment ${segment_s} s; ratios $yuv, $rgba"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
echo "   median wall-time ratio element/segment: I420 $(median "${yuv_ratios[@]}"), RGBA $(median "${rgba_ratios[@]}")"

echo
echo "2. latency the element adds, live 640x480 at 30 fps, leaky (300 frames; GStreamer's latency tracer,"
echo "   source to sink pad, against the same pipeline with identity and with a bare queue in its place:"
echo "   a sink that synchronises holds each push for the pipeline's latency, which any element with a"
echo "   streaming thread of its own, a queue too, then measures)"
live_latency() { # $1: the element under test; prints p50 p95 (ms) and the latency it reports
    GST_TRACERS="latency(flags=pipeline+reported)" GST_DEBUG="GST_TRACER:7" GST_DEBUG_NO_COLOR=1 \
        gst-launch-1.0 -q videotestsrc is-live=true num-buffers=300 pattern=ball ! \
        video/x-raw,width=640,height=480,framerate=30/1 ! videoconvert ! $1 ! \
        fakesink sync=true 2>"$work/trace" >/dev/null
    grep -o 'latency, src-element-id.*time=(guint64)[0-9]*' "$work/trace" |
        sed -E 's/.*time=\(guint64\)//' | sort -n |
        awk '{ a[NR] = $1 / 1e6 } END { printf "%.1f %.1f", a[int(NR * 0.5) + 1], a[int(NR * 0.95) + 1] }'
    grep -o 'element=(string)segstream0, live=(boolean)1, min=(guint64)[0-9]*' "$work/trace" |
        tail -1 | sed -E 's/.*min=\(guint64\)([0-9]+)/ \1/' | awk '{ printf " %.1f", $1 / 1e6 }' || true
    echo
}
read -r base50 base95 < <(live_latency identity)
read -r queue50 queue95 < <(live_latency queue)
read -r seg50 seg95 reported < <(live_latency "segstream leaky=true")
infer_fps=$("$segstream" bench --input "$clip" --batch 1 --repeats 3 2>/dev/null | awk '$1 == "inference" { print $3 }')
echo "   with identity:  p50 ${base50} ms, p95 ${base95} ms"
echo "   with a queue:   p50 ${queue50} ms, p95 ${queue95} ms"
echo "   with segstream: p50 ${seg50} ms, p95 ${seg95} ms (it reports ${reported:-?} ms to the latency query)"
awk -v s="$seg95" -v q="$queue95" -v r="${reported:-0}" -v f="$infer_fps" 'BEGIN {
    printf "   it adds p95 %.1f ms over the queue (reports %.1f ms); inference alone %.1f ms a frame (%s fps)\n", s - q, r, 1000 / f, f }'

echo
echo "3. two elements on one decoded stream (tee), fakesink sync=false"
two() { # $1 $2: the properties of each element
    measure gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! videoconvert ! tee name=t \
        t. ! queue ! segstream $1 ! fakesink sync=false \
        t. ! queue ! segstream $2 ! fakesink sync=false
}
for setup in shared separate; do
    case $setup in
        shared) read -r s mb < <(two model-instance=one model-instance=one) ;;
        separate) read -r s mb < <(two "" "") ;;
    esac
    fps=$(awk -v f="$frames" -v s="$s" 'BEGIN { printf "%.1f", 2 * f / s }')
    echo "   $setup sessions: ${s} s, aggregate ${fps} fps, peak memory ${mb} MB"
done
