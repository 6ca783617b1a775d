//! `segstream label`: the ranking, the page's server over real HTTP on loopback, the dataset
//! and manifest it writes, bad input, Ctrl-C, and the page itself in a real browser.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use segstream::infer::{Segmenter, SegmenterOptions};
use segstream::label::{Origin, Ranker, Store, ranked_queue, store::model_identity};

use crate::helpers::{assert_fails, interrupt};
use crate::media::red_detector;

/// Pictures of the tests: 96×64, so that the red detector (input 64×96) sees every pixel.
pub const SIZE: [u32; 2] = [96, 64];

/// A picture whose red channel is `red(x, y)` (green and blue 0).
pub fn picture(dir: &Path, name: &str, red: impl Fn(u32, u32) -> u8) -> PathBuf {
    let image = image::RgbImage::from_fn(SIZE[0], SIZE[1], |x, y| image::Rgb([red(x, y), 0, 0]));
    let path = dir.join(name);
    image.save(&path).unwrap();
    path
}

/// A folder with a clear picture (left half red), a copy of it, another clear one (top half
/// red) and an ambiguous one (red about half-way: the detector is unsure everywhere).
pub fn pictures(dir: &Path) -> PathBuf {
    let folder = dir.join("pictures");
    std::fs::create_dir_all(&folder).unwrap();
    let left = |x: u32, _| if x < SIZE[0] / 2 { 255 } else { 0 };
    picture(&folder, "a-left.png", left);
    picture(&folder, "b-left-copy.png", left);
    picture(
        &folder,
        "c-top.png",
        |_, y| if y < SIZE[1] / 2 { 255 } else { 0 },
    );
    picture(&folder, "d-unsure.png", |x, _| {
        if x < SIZE[0] / 2 { 127 } else { 129 }
    });
    folder
}

pub fn red_model(dir: &Path) -> PathBuf {
    red_detector(dir, [SIZE[1] as usize, SIZE[0] as usize])
}

#[test]
fn the_ambiguous_picture_comes_first_and_copies_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, model) = (pictures(dir.path()), red_model(dir.path()));
    let segmenter = Segmenter::load(&model, &SegmenterOptions::default()).unwrap();
    let card = segmenter.card().clone();
    let identity = model_identity(&model, card.classes.clone(), card.architecture).unwrap();
    let store = Store::open(&dir.path().join("dataset"), identity).unwrap();
    let mut ranker = Ranker::new(segmenter);
    let queue = ranked_queue(&folder, &mut ranker, &store, 10, 10, |_| {}).unwrap();
    let names: Vec<String> = queue
        .iter()
        .map(|q| q.candidate.origin.stem(&folder))
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "d-unsure", "{names:?}");
    assert!(!(names.contains(&"a-left".into()) && names.contains(&"b-left-copy".into())));
    let (unsure, clear) = (&queue[0].scores, &queue[1].scores);
    assert!(unsure.uncertainty > 0.8, "{unsure:?}");
    assert!(clear.total() < 0.05, "{clear:?}");
    assert_eq!(
        queue[0].candidate.origin,
        Origin::File(folder.join("d-unsure.png"))
    );
}

/// A running `segstream label` and what it printed so far.
pub struct Labeller {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// The thread reading stdout: done once the process has printed its last line.
    reader: Option<std::thread::JoinHandle<()>>,
    pub base: String,
    pub port: u16,
}

impl Labeller {
    /// Starts `segstream label INPUT --model MODEL -o DATASET EXTRA…` and waits for its URL.
    pub fn start(input: &Path, model: &Path, dataset: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_segstream"))
            .args([
                "label",
                input.to_str().unwrap(),
                "--model",
                model.to_str().unwrap(),
            ])
            .args(["-o", dataset.to_str().unwrap(), "--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            match lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) => {
                    if let Some(url) = line.split("label at ").nth(1) {
                        let url = url.split_whitespace().next().unwrap_or_default();
                        break Some(url.trim_end_matches('/').to_string());
                    }
                }
                Err(_) => break None,
            }
        };
        let Some(base) = base else {
            let _ = child.kill();
            let status = child.wait();
            panic!("label did not print its address ({status:?})");
        };
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Labeller {
            child,
            lines,
            reader: Some(reader),
            base,
            port,
        }
    }

    pub fn get(&self, path: &str) -> Vec<u8> {
        let mut response = ureq::get(&format!("{}{path}", self.base)).call().unwrap();
        response.body_mut().read_to_vec().unwrap()
    }

    pub fn queue(&self) -> serde_json::Value {
        serde_json::from_slice(&self.get("/api/queue")).unwrap()
    }

    /// The session token the server wrote into its page.
    pub fn token(&self) -> String {
        let page = String::from_utf8(self.get("/")).unwrap();
        let tag = page
            .split("name=\"segstream-token\" content=\"")
            .nth(1)
            .unwrap_or_else(|| panic!("no token in the page: {page}"));
        tag.split('"').next().unwrap().to_string()
    }

    /// POSTs `body` to `path` as the page does (its origin and token); returns the status and
    /// the JSON answer.
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, serde_json::Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .post(&format!("{}{path}", self.base))
            .header("Origin", &self.base)
            .header("X-Segstream-Token", &self.token())
            .send(body)
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_slice(&response.body_mut().read_to_vec().unwrap()).unwrap(),
        )
    }

    /// The status line of a hand-written request (no client tidies its path or host).
    fn raw(&self, path: &str, host: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    }

    /// Waits for the process to end; returns its exit code and everything it printed.
    pub fn wait(mut self) -> (Option<i32>, String) {
        let status = crate::helpers::exits_within(&mut self.child, crate::helpers::DEADLINE);
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        let printed: Vec<String> = self.lines.try_iter().collect();
        (status.code(), printed.join("\n"))
    }
}

/// A test that fails half-way leaves no server running.
impl Drop for Labeller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The item of `queue` named `name`.
fn item<'a>(queue: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not queued: {queue}"))
}

pub fn manifest(dataset: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dataset.join("manifest.json")).unwrap()).unwrap()
}

fn gray(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().to_luma8().into_raw()
}

#[test]
fn the_server_offers_frames_and_saves_exactly_the_ids_sent() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, model) = (pictures(dir.path()), red_model(dir.path()));
    let dataset = dir.path().join("dataset");
    let labeller = Labeller::start(&folder, &model, &dataset, &[]);
    let queue = labeller.queue();
    assert_eq!(queue["classes"][1]["name"], "red");
    let top = item(&queue, "c-top");
    let id = top["id"].as_u64().unwrap();
    let source = image::open(folder.join("c-top.png")).unwrap().to_rgba8();
    let served =
        image::load_from_memory(&labeller.get(&format!("/api/items/{id}/image.png"))).unwrap();
    assert_eq!(served.to_rgba8(), source);
    let offered = labeller.get(&format!("/api/items/{id}/mask"));
    let expected: Vec<u8> = source.pixels().map(|p| u8::from(p[0] >= 128)).collect();
    assert_eq!(offered, expected, "the offered mask is the model's");

    // An edit: a 10×10 square of the object in the bottom half, where the model saw none.
    let mut edited = offered.clone();
    for y in 40..50 {
        for x in 20..30 {
            edited[y * SIZE[0] as usize + x] = 1;
        }
    }
    let (status, _) = labeller.post(&format!("/api/items/{id}/save"), &edited);
    assert_eq!(status, 200);
    let saved = gray(&dataset.join("masks/c-top.png"));
    assert_eq!(saved, edited.iter().map(|&l| l * 255).collect::<Vec<_>>());
    let image = image::open(dataset.join("images/c-top.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(image, image::DynamicImage::ImageRgba8(source).to_rgb8());
    let (status, answer) = labeller.post(&format!("/api/items/{id}/save"), &edited);
    assert_eq!(status, 409, "{answer}");

    let unsure = item(&queue, "d-unsure")["id"].as_u64().unwrap();
    let (status, answer) = labeller.post(&format!("/api/items/{unsure}/save"), &[1; 10]);
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("96×64"),
        "{answer}"
    );
    let (status, answer) = labeller.post(&format!("/api/items/{unsure}/save"), &vec![7; 96 * 64]);
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = labeller.post(&format!("/api/items/{unsure}/accept?split=test"), &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(item(&answer, "d-unsure")["status"], "saved");
    assert!(dataset.join("test/masks/d-unsure.png").exists());

    assert!(
        labeller
            .raw(
                "/api/items/../../../../etc/passwd",
                &format!("127.0.0.1:{}", labeller.port)
            )
            .contains("404")
    );
    assert!(
        labeller
            .raw(
                "/api/items/0/..%2F..%2Fmanifest.json",
                &format!("127.0.0.1:{}", labeller.port)
            )
            .contains("404")
    );
    assert!(
        labeller
            .raw("/api/queue", "attacker.example:80")
            .contains("403")
    );

    let entries = manifest(&dataset)["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["name"], "c-top");
    assert_eq!(entries[0]["decision"], "edited");
    assert_eq!(entries[0]["split"], "train");
    assert_eq!(entries[0]["file"], "c-top.png");
    assert_eq!(entries[1]["decision"], "accepted");
    assert_eq!(entries[1]["split"], "test");
    assert_eq!(entries[1]["model"]["file"], "red.onnx");
    assert_eq!(entries[1]["model"]["sha256"].as_str().unwrap().len(), 64);

    let (status, _) = labeller.post("/api/finish", &[]);
    assert_eq!(status, 200);
    let (code, printed) = labeller.wait();
    assert_eq!(code, Some(0), "{printed}");
    assert!(printed.contains("saved 2 masks"), "{printed}");

    // A second run continues the dataset: what was saved is not queued again.
    let again = Labeller::start(&folder, &model, &dataset, &[]);
    let names: Vec<String> = again.queue()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !names.contains(&"c-top".into()) && !names.contains(&"d-unsure".into()),
        "{names:?}"
    );
    let first = &again.queue()["items"][0];
    let (status, _) = again.post(&format!("/api/items/{}/accept", first["id"]), &[]);
    assert_eq!(status, 200);
    interrupt(&again.child);
    let (code, printed) = again.wait();
    assert_eq!(code, Some(130), "Ctrl-C: {printed}");
    let entries = manifest(&dataset)["entries"].as_array().unwrap().clone();
    assert_eq!(
        entries.len(),
        3,
        "Ctrl-C keeps every saved mask in a valid manifest"
    );
    assert_eq!(
        gray(&dataset.join("masks/c-top.png")),
        saved,
        "nothing is overwritten"
    );
}

#[test]
fn bad_input_is_refused_before_the_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, model) = (pictures(dir.path()), red_model(dir.path()));
    let dataset = dir.path().join("dataset");
    let (input, data) = (folder.to_str().unwrap(), dataset.to_str().unwrap());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let model_arg = model.to_str().unwrap();
    assert_fails(
        &[
            "label", input, "--model", model_arg, "-o", data, "--port", &port,
        ],
        &[],
        2,
        &["in use"],
    );
    let missing = dir.path().join("missing.mp4");
    assert_fails(
        &[
            "label",
            missing.to_str().unwrap(),
            "--model",
            model_arg,
            "-o",
            data,
        ],
        &[],
        1,
        &["missing.mp4", "no such file"],
    );
    let not_video = dir.path().join("notes.mp4");
    std::fs::write(&not_video, "not a video").unwrap();
    assert_fails(
        &[
            "label",
            not_video.to_str().unwrap(),
            "--model",
            model_arg,
            "-o",
            data,
        ],
        &[],
        1,
        &["notes.mp4"],
    );
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x08\x07garbage").unwrap();
    assert_fails(
        &[
            "label",
            input,
            "--model",
            corrupt.to_str().unwrap(),
            "-o",
            data,
        ],
        &[],
        1,
        &["corrupt.onnx"],
    );
    assert!(!dataset.join("manifest.json").exists());
}

#[test]
fn a_video_is_sampled_over_its_length_with_flicker_scored() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    red_detector(dir.path(), [48, 64]);
    std::fs::rename(dir.path().join("red.onnx"), &model).unwrap();
    let clip = crate::media::generated("bars.mkv");
    let dataset = dir.path().join("dataset");
    let labeller = Labeller::start(
        &clip,
        &model,
        &dataset,
        &["--frames", "4", "--candidates", "6"],
    );
    let queue = labeller.queue();
    let frames: Vec<u64> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            i["name"]
                .as_str()
                .unwrap()
                .rsplit("-f")
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(frames.len(), 4, "{queue}");
    // 60 frames, 6 candidates: frames 5, 15, … 55, of which the 4 ranked first are queued.
    assert!(frames.iter().all(|f| f % 10 == 5), "{frames:?}");
    let scores = &queue["items"][0]["scores"];
    assert!(
        scores["flicker"].as_f64().unwrap() > 0.0,
        "moving bars flicker: {scores}"
    );
    interrupt(&labeller.child);
    let (code, _) = labeller.wait();
    assert_eq!(code, Some(130));
}

#[test]
fn a_correction_is_carried_to_the_frames_of_its_scene_that_barely_differ() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("scene");
    std::fs::create_dir_all(&folder).unwrap();
    let top = |_: u32, y: u32| if y < SIZE[1] / 2 { 255 } else { 0 };
    picture(&folder, "a-other.png", |x, _| {
        if x < SIZE[0] / 2 { 255 } else { 0 }
    });
    picture(&folder, "s1.png", top);
    // The same picture with a 6×6 red square more: a frame later in the same shot.
    let moved = move |x: u32, y: u32| match (x, y) {
        (70..76, 50..56) => 255,
        _ => top(x, y),
    };
    picture(&folder, "s2.png", moved);
    let model = red_model(dir.path());
    let dataset = dir.path().join("dataset");
    let labeller = Labeller::start(&folder, &model, &dataset, &[]);
    let queue = labeller.queue();
    assert_eq!(queue["items"].as_array().unwrap().len(), 3, "{queue}");
    let (s1, s2) = (
        item(&queue, "s1")["id"].clone(),
        item(&queue, "s2")["id"].clone(),
    );
    let edited = vec![1u8; (SIZE[0] * SIZE[1]) as usize];
    let (status, answer) = labeller.post(&format!("/api/items/{s1}/save?carry=1"), &edited);
    assert_eq!(status, 200, "{answer}");
    let next = answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["status"] == "pending")
        .unwrap();
    assert_eq!(
        next["name"], "s2",
        "the scene's next frame comes first: {answer}"
    );
    assert_eq!(next["carried_from"], "s1");
    assert_eq!(
        item(&answer, "a-other")["carried_from"],
        serde_json::Value::Null
    );
    assert_eq!(labeller.get(&format!("/api/items/{s2}/mask")), edited);
    let (status, _) = labeller.post(&format!("/api/items/{s2}/accept"), &[]);
    assert_eq!(status, 200);
    let entries = manifest(&dataset)["entries"].clone();
    assert_eq!(entries[1]["carried_from"], "s1", "{entries}");
    assert_eq!(entries[1]["decision"], "accepted");
    interrupt(&labeller.child);
    let (code, _) = labeller.wait();
    assert_eq!(code, Some(130));
}

#[cfg(feature = "train")]
#[test]
fn finish_with_train_fine_tunes_and_scores_the_held_back_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, model) = (pictures(dir.path()), red_model(dir.path()));
    let dataset = dir.path().join("dataset");
    let labeller = Labeller::start(&folder, &model, &dataset, &["--train", "--epochs", "2"]);
    for (k, queued) in labeller.queue()["items"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let split = if k == 0 { "test" } else { "train" };
        let (status, answer) = labeller.post(
            &format!("/api/items/{}/accept?split={split}", queued["id"]),
            &[],
        );
        assert_eq!(status, 200, "{answer}");
    }
    let (status, _) = labeller.post("/api/finish", &[]);
    assert_eq!(status, 200);
    let (code, printed) = labeller.wait();
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        dataset.join("runs/fine-tune/model.onnx").exists(),
        "{printed}"
    );
    for needle in [
        "segstream train --data",
        "before: segstream eval",
        "after: segstream eval",
    ] {
        assert!(printed.contains(needle), "{needle}: {printed}");
    }
    let scored = printed.lines().filter(|l| l.starts_with("iou ")).count();
    assert_eq!(scored, 2, "two evaluations: {printed}");
}
