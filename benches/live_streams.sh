#!/usr/bin/env bash
# Several live RTP feeds served by one `segstream camera` (figures only; nothing fails on a
# timing): N feeds of the pedestrians clip at 640x480 and FPS each, RTP/H.264 over loopback UDP,
# sent by N gst-launch-1.0 encoders on the same machine, against one feed alone. Prints each
# feed's fps, dropped frames and latency (appsink to appsrc) p50/p95 from --stats-json. Street
# feeds, so the street model (camera's own default is the portrait model).
# Usage, after `cargo build --release`: benches/live_streams.sh [N] [SECONDS] [FPS] [-- CAMERA OPTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
feeds=${1:-4}
seconds=${2:-12}
fps=${3:-15}
shift $(($# < 3 ? $# : 3))
[ "${1:-}" = "--" ] && shift
clip=/usr/share/doc/opencv-doc/examples/data/vtest.avi
segstream=$PWD/target/release/segstream
model=(--model models/people.onnx)
for option in "$@"; do [ "$option" = --model ] && model=(); done
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# Streams the clip to 127.0.0.1:$1 as the tests' senders do, until killed.
send() {
    exec gst-launch-1.0 -q filesrc location="$clip" ! decodebin ! videoconvert ! videoscale ! videorate ! \
        "video/x-raw,width=640,height=480,framerate=$fps/1" ! videoconvert ! \
        x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=2000 ! \
        rtph264pay config-interval=-1 ! udpsink host=127.0.0.1 port="$1" sync=true >/dev/null 2>&1
}

# Runs one camera process on $1 feeds; prints one line per feed.
run() {
    local n=$1 sources=() senders=()
    shift
    for i in $(seq 0 $((n - 1))); do sources+=(--source "udp://127.0.0.1:$((45000 + i))"); done
    "$segstream" camera "${sources[@]}" -o "$work/out-{index}.mkv" --stats-json "$work/stats.json" \
        "${model[@]}" --reconnect-timeout 1 "$@" 2>"$work/log" &
    local camera=$!
    sleep 1.5
    for i in $(seq 0 $((n - 1))); do send $((45000 + i)) & senders+=($!); done
    sleep "$seconds"
    kill "${senders[@]}"
    wait "$camera" || { tail -5 "$work/log" >&2; exit 1; }
    python3 - "$work/stats.json" "$n" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
sources = stats.get("sources") or [stats]
for i, s in enumerate(sources):
    l = s["latency"]
    print(f"{sys.argv[2]} feeds  feed {i}: {s['output_fps']:5.1f} fps  dropped {s['frames_dropped']:3d} of {s['frames_read']:4d}"
          f"  latency p50 {l['p50_ms']:6.1f} ms  p95 {l['p95_ms']:6.1f} ms")
PY
}

run 1 "$@"
run "$feeds" "$@"
