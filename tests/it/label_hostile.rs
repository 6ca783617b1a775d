//! `segstream label` against what another site, another program or the machine itself may do:
//! forged requests, slow and stalled uploads, bodies that lie about their length, a second
//! session on the same folder, a read-only folder, and a disk that fills during a save.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::{describe, exits_within, interrupt, segstream};
use crate::label::{Labeller, manifest, pictures, red_model};

/// A labelling session on the test pictures into `dataset`.
fn labeller(dir: &Path, dataset: &Path) -> Labeller {
    let (folder, model) = (pictures(dir), red_model(dir));
    Labeller::start(&folder, &model, dataset, &[])
}

/// Sends `head` (the request line and headers, without the blank line) and `body` on a fresh
/// connection, then reads the answer: its status code and text. A reply that never comes fails
/// the test after a minute.
fn exchange(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = connect(port);
    stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    stream.write_all(body).unwrap();
    answer(&mut stream)
}

fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

/// The status code and the answer on `stream`: its head and as much body as it announces
/// (the server may keep the connection open while it discards the rest of a refused upload).
fn answer(stream: &mut TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    while !whole_answer(&bytes) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    (status, text)
}

/// Whether `bytes` hold an HTTP answer's head and the body its `Content-Length` announces.
fn whole_answer(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| body.len() >= length)
}

/// A `POST` to `path` with `headers` (each a full `Name: value` line).
fn post_head(labeller: &Labeller, path: &str, headers: &[String], length: usize) -> String {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {length}",
        labeller.port
    );
    for header in headers {
        head.push_str("\r\n");
        head.push_str(header);
    }
    head
}

/// The page's own headers: its origin and its token.
fn page_headers(labeller: &Labeller) -> Vec<String> {
    vec![
        format!("Origin: {}", labeller.base),
        format!("X-Segstream-Token: {}", labeller.token()),
    ]
}

#[test]
fn changes_from_anything_but_the_page_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    let labeller = labeller(dir.path(), &dataset);
    let token = labeller.token();
    let own = labeller.base.clone();
    let forged: [(&str, Vec<String>); 6] = [
        // A form on another site (text/plain needs no preflight).
        (
            "/api/items/0/accept",
            vec![
                "Origin: http://attacker.example".into(),
                "Content-Type: text/plain".into(),
                "Sec-Fetch-Site: cross-site".into(),
            ],
        ),
        // fetch(…, {mode: 'no-cors'}) from another site: no token, the other origin.
        (
            "/api/items/0/save",
            vec!["Origin: http://attacker.example".into()],
        ),
        // Another site that somehow learnt the token still names its own origin.
        (
            "/api/items/0/accept",
            vec![
                "Origin: http://attacker.example".into(),
                format!("X-Segstream-Token: {token}"),
            ],
        ),
        // The page's origin claimed, but the browser says the request is cross-site.
        (
            "/api/items/0/accept",
            vec![
                format!("Origin: {own}"),
                format!("X-Segstream-Token: {token}"),
                "Sec-Fetch-Site: cross-site".into(),
            ],
        ),
        // A local program without the token.
        ("/api/items/0/accept", vec![format!("Origin: {own}")]),
        ("/api/finish", vec![]),
    ];
    for (path, headers) in &forged {
        let (status, text) = exchange(labeller.port, &post_head(&labeller, path, headers, 0), b"");
        assert_eq!(status, 403, "{path} {headers:?}: {text}");
    }
    // A wrong token.
    let wrong = vec![
        format!("Origin: {own}"),
        "X-Segstream-Token: 00000000000000000000000000000000".into(),
    ];
    let (status, _) = exchange(
        labeller.port,
        &post_head(&labeller, "/api/finish", &wrong, 0),
        b"",
    );
    assert_eq!(status, 403);
    assert!(!dataset.join("manifest.json").exists(), "nothing was saved");
    let queue = labeller.queue();
    assert!(
        queue["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["status"] == "pending"),
        "{queue}"
    );
    // The page itself still works, and the session was not ended by the forged finish.
    let (status, answer) = labeller.post("/api/items/0/accept", &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(manifest(&dataset)["entries"].as_array().unwrap().len(), 1);
}

#[test]
fn bodies_that_lie_about_their_length_are_refused_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    let labeller = labeller(dir.path(), &dataset);
    let headers = page_headers(&labeller);
    // Shorter than announced: the connection ends half-way.
    let mask = vec![1u8; 96 * 64];
    let mut stream = connect(labeller.port);
    let head = post_head(&labeller, "/api/items/0/save", &headers, mask.len());
    stream
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .unwrap();
    stream.write_all(&mask[..mask.len() / 2]).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let (status, text) = answer(&mut stream);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("incomplete body"), "{text}");
    // Larger than any mask: refused by its announced length, before it is read.
    let (status, text) = exchange(
        labeller.port,
        &post_head(&labeller, "/api/items/0/save", &headers, 200 << 20),
        b"",
    );
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("64 MB"), "{text}");
    assert!(!dataset.join("manifest.json").exists());
    let (status, _) = labeller.post("/api/items/0/save", &mask);
    assert_eq!(status, 200);
}

#[test]
fn a_stalled_upload_holds_neither_the_page_nor_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    let mut labeller = labeller(dir.path(), &dataset);
    let headers = page_headers(&labeller);
    // One upload stops half-way and stays open; another trickles a byte every half second.
    let mut stalled = connect(labeller.port);
    let head = post_head(&labeller, "/api/items/1/save", &headers, 96 * 64);
    stalled
        .write_all(format!("{head}\r\n\r\n").as_bytes())
        .unwrap();
    stalled.write_all(&[1u8; 2000]).unwrap();
    let port = labeller.port;
    let trickle_head = post_head(&labeller, "/api/items/2/save", &headers, 96 * 64);
    let trickling = std::thread::spawn(move || {
        let mut stream = connect(port);
        stream
            .write_all(format!("{trickle_head}\r\n\r\n").as_bytes())
            .unwrap();
        // Until the server answers (408 after its deadline) or 60 s pass.
        for _ in 0..120 {
            if stream.write_all(&[1]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            stream.set_nonblocking(true).unwrap();
            let mut peek = [0u8; 1];
            let answered = matches!(stream.peek(&mut peek), Ok(n) if n > 0);
            stream.set_nonblocking(false).unwrap();
            if answered {
                break;
            }
        }
        answer(&mut stream)
    });
    // Meanwhile the page is answered: the queue, and a save of another frame.
    std::thread::sleep(Duration::from_secs(1));
    let queue = labeller.queue();
    assert_eq!(queue["items"].as_array().unwrap().len(), 3, "{queue}");
    let (status, _) = labeller.post("/api/items/0/accept", &[]);
    assert_eq!(status, 200);
    let (status, text) = trickling.join().unwrap();
    assert_eq!(status, 408, "{text}");
    // Ctrl-C ends the session at once with the upload still stalled; what was saved stays.
    interrupt(&labeller.child);
    let code = exits_within(&mut labeller.child, Duration::from_secs(60)).code();
    assert_eq!(code, Some(130));
    drop(stalled);
    assert_eq!(manifest(&dataset)["entries"].as_array().unwrap().len(), 1);
}

/// `segstream label FOLDER --model MODEL -o DATASET`, asserted to fail with exit code 1 before
/// serving; returns everything it printed.
fn label_fails(folder: &Path, model: &Path, dataset: &Path) -> String {
    let args = [
        "label",
        folder.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "-o",
        dataset.to_str().unwrap(),
        "--port",
        "0",
    ];
    let output = segstream(&args);
    let text = describe(&args, &output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    text
}

#[test]
fn a_second_session_on_one_folder_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("dataset");
    let first = labeller(dir.path(), &dataset);
    let (folder, model) = (dir.path().join("pictures"), dir.path().join("red.onnx"));
    let text = label_fails(&folder, &model, &dataset);
    assert!(
        text.contains(&format!("process {}", first.child.id())),
        "{text}"
    );
    let (status, _) = first.post("/api/items/0/accept", &[]);
    assert_eq!(status, 200);
    assert_eq!(manifest(&dataset)["entries"].as_array().unwrap().len(), 1);
}

/// A tmpfs of `size` mounted at a new folder under `dir`, unmounted on drop. Mounting needs
/// root, as CI and the set-up machine have; elsewhere the test fails saying so.
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(dir: &Path, size: &str) -> Self {
        let point = dir.join("mounted");
        std::fs::create_dir_all(&point).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&point)
            .status()
            .expect("mount (util-linux) runs");
        assert!(
            status.success(),
            "this test mounts a small tmpfs: it needs root"
        );
        Mounted(point)
    }

    fn read_only(&self) {
        let status = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Bytes still free for files.
    fn free(&self) -> u64 {
        let path = std::ffi::CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: statvfs fills the struct it is given for a valid path.
        unsafe {
            let mut stats: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut stats), 0);
            stats.f_bavail * stats.f_bsize
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_read_only_folder_is_refused_before_the_page_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (folder, model) = (pictures(dir.path()), red_model(dir.path()));
    let mounted = Mounted::tmpfs(dir.path(), "1m");
    let dataset = mounted.0.join("dataset");
    std::fs::create_dir_all(dataset.join("images")).unwrap();
    mounted.read_only();
    let text = label_fails(&folder, &model, &dataset);
    assert!(text.contains("cannot write in this folder"), "{text}");
    assert!(text.contains(dataset.to_str().unwrap()), "{text}");
    assert!(!text.contains("label at"), "{text}");
}

#[test]
fn a_save_that_fills_the_disk_leaves_no_half_pair_and_the_next_save_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = Mounted::tmpfs(dir.path(), "1m");
    let dataset = mounted.0.join("dataset");
    let labeller = labeller(dir.path(), &dataset);
    // Room for the image (one page of the tmpfs) but not for its mask.
    let filler = mounted.0.join("filler");
    let page = 4096;
    std::fs::write(&filler, vec![0u8; (mounted.free() - page) as usize]).unwrap();
    assert_eq!(mounted.free(), page);
    let mut edited = vec![0u8; 96 * 64];
    edited[..96 * 10].fill(1);
    let (status, answer) = labeller.post("/api/items/0/save", &edited);
    assert_eq!(status, 500, "{answer}");
    let listed = |kind: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dataset.join(kind))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert!(
        listed("images").is_empty() && listed("masks").is_empty(),
        "a failed save leaves neither half: {:?} {:?}",
        listed("images"),
        listed("masks")
    );
    assert!(!dataset.join("manifest.json").exists());
    // Room again: the next save (another frame) writes one whole pair and one entry.
    std::fs::remove_file(&filler).unwrap();
    let (status, answer) = labeller.post("/api/items/1/accept", &[]);
    assert_eq!(status, 200, "{answer}");
    let entries = manifest(&dataset)["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 1, "{entries:?}");
    for key in ["image", "mask"] {
        let path = dataset.join(entries[0][key].as_str().unwrap());
        image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert_eq!(listed("images").len(), 1);
    assert_eq!(listed("masks").len(), 1);
    drop(labeller);
}
