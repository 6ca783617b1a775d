//! The labelling page in a real browser: Debian's Chromium, driven through WebDriver
//! (`chromedriver`), paints on the canvas with the mouse, undoes a stroke and saves; the mask
//! on disk must hold the painted pixels exactly there.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::interrupt;
use crate::label::{Labeller, SIZE, manifest, picture, red_model};

/// Chromium and its driver, as Debian installs them (`scripts/setup`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A WebDriver session on a headless Chromium; ends both when dropped.
///
/// The test starts Chromium itself, with its DevTools on `127.0.0.1:PORT`, and hands that
/// address to the driver: a driver that launches the browser reaches it as `localhost`,
/// which a machine without `/etc/hosts` (a bare chroot) does not resolve.
struct Browser {
    chromium: Child,
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// A port free at the time of asking, on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `url` answers.
fn until_up(url: &str, what: &str) {
    let started = Instant::now();
    while ureq::get(url).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what} did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Browser {
    fn start() -> Self {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(program).exists(),
                "{program} is missing: run scripts/setup"
            );
        }
        let profile = tempfile::tempdir().unwrap();
        let devtools = free_port();
        let chromium = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1200,900",
                "--force-device-scale-factor=1",
                "--remote-debugging-address=127.0.0.1",
            ])
            .arg(format!("--remote-debugging-port={devtools}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut browser = Browser {
            chromium,
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            _profile: profile,
        };
        until_up(
            &format!("http://127.0.0.1:{devtools}/json/version"),
            "chromium",
        );
        until_up(&format!("{}/status", browser.base), "chromedriver");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": { "debuggerAddress": format!("127.0.0.1:{devtools}") },
        }}});
        let created = browser.send("/session", &capabilities);
        browser.session = created["sessionId"]
            .as_str()
            .expect("a session")
            .to_string();
        browser
    }

    /// POSTs `body` to the driver (relative to the session once there is one).
    fn send(&self, path: &str, body: &Value) -> Value {
        let url = match self.session.as_str() {
            "" => format!("{}{path}", self.base),
            session => format!("{}/session/{session}{path}", self.base),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent.post(&url).send_json(body).unwrap();
        let answer: Value = response.body_mut().read_json().unwrap();
        assert_eq!(
            response.status().as_u16(),
            200,
            "WebDriver {path}: {answer}"
        );
        answer["value"].clone()
    }

    /// Runs `script` in the page; returns its value.
    fn script(&self, script: &str) -> Value {
        self.send("/execute/sync", &json!({ "script": script, "args": [] }))
    }

    /// Waits until `script` returns true.
    fn until(&self, script: &str) {
        let started = Instant::now();
        while self.script(script) != json!(true) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "waited in vain for {script}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Drags the mouse from `from` to `to` (viewport pixels) with the button down.
    fn drag(&self, from: [i64; 2], to: [i64; 2]) {
        let mv = |[x, y]: [i64; 2], duration: u64| json!({ "type": "pointerMove", "origin": "viewport", "x": x, "y": y, "duration": duration });
        let actions = json!({ "actions": [{
            "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
            "actions": [
                mv(from, 0),
                { "type": "pointerDown", "button": 0 },
                mv(to, 200),
                { "type": "pointerUp", "button": 0 },
            ],
        }]});
        self.send("/actions", &actions);
    }

    /// Presses `keys` together (WebDriver key codes), then lets them go.
    fn press(&self, keys: &[&str]) {
        let mut actions: Vec<Value> = keys
            .iter()
            .map(|k| json!({ "type": "keyDown", "value": k }))
            .collect();
        actions.extend(
            keys.iter()
                .rev()
                .map(|k| json!({ "type": "keyUp", "value": k })),
        );
        self.send(
            "/actions",
            &json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] }),
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = ureq::delete(&format!("{}/session/{}", self.base, self.session)).call();
        }
        for process in [&mut self.driver, &mut self.chromium] {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

/// A labelling session on one picture with no red anywhere (the model's mask is empty), into
/// `dir/dataset`; returns it and the dataset folder.
fn plain_session(dir: &Path) -> (Labeller, std::path::PathBuf) {
    let folder = dir.join("pictures");
    std::fs::create_dir_all(&folder).unwrap();
    picture(&folder, "plain.png", |_, _| 0);
    let model = red_model(dir);
    let dataset = dir.join("dataset");
    (Labeller::start(&folder, &model, &dataset, &[]), dataset)
}

/// WebDriver's code of the Control key.
const CONTROL: &str = "\u{E009}";

#[test]
fn strokes_painted_in_the_browser_are_saved_exactly_and_undo_takes_one_back() {
    let dir = tempfile::tempdir().unwrap();
    // No red anywhere: the model's mask is empty, so every object pixel saved was painted.
    let (labeller, dataset) = plain_session(dir.path());
    let browser = Browser::start();
    browser.send("/url", &json!({ "url": format!("{}/", labeller.base) }));
    browser.until("return document.body.dataset.ready === 'true'");
    browser.script("document.getElementById('size').value = 5; return true");
    let origin = browser.script(
        "const r = document.getElementById('guide').getBoundingClientRect(); \
         return [r.left, r.top, r.width, state.zoom]",
    );
    let [left, top, width, zoom] = [0, 1, 2, 3].map(|i| origin[i].as_f64().unwrap());
    assert_eq!(
        (width, zoom),
        (f64::from(SIZE[0]), 1.0),
        "the frame is shown at 100 %"
    );
    let at = |x: f64, y: f64| [(left + x).round() as i64, (top + y).round() as i64];
    // Stroke one along row 20 from x 10 to 60; stroke two down column 80, then undone.
    browser.drag(at(10.0, 20.0), at(60.0, 20.0));
    browser.drag(at(80.0, 5.0), at(80.0, 55.0));
    browser.press(&[CONTROL, "z"]);
    browser.press(&["s"]);
    let started = Instant::now();
    // The manifest is written last, once both halves of the pair are whole on disk.
    while !dataset.join("manifest.json").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the page did not save"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mask = image::open(dataset.join("masks/plain.png"))
        .unwrap()
        .to_luma8();
    // Where the stroke's centre line ran, every pixel is the object; nothing further than
    // the brush's radius (and a pixel of rounding) from it changed; the undone stroke left
    // nothing; only ids 0 and 1 (0/255 on disk) are there.
    let image_x = |x: f64| (left + x).round() - left;
    let (x0, x1, y, reach) = (
        image_x(10.0),
        image_x(60.0),
        (top + 20.0).round() - top,
        2.5 + 1.5,
    );
    for (x, py, value) in mask.enumerate_pixels().map(|(x, y, p)| (x, y, p[0])) {
        assert!(value == 0 || value == 255, "value {value} at ({x}, {py})");
        let (cx, cy) = (f64::from(x) + 0.5, f64::from(py) + 0.5);
        let nearest_x = cx.clamp(x0, x1);
        let distance = ((cx - nearest_x).powi(2) + (cy - y).powi(2)).sqrt();
        if value == 255 {
            assert!(
                distance <= reach,
                "({x}, {py}) painted {distance:.1} px from the stroke"
            );
        }
        if distance <= 1.0 {
            assert_eq!(
                value, 255,
                "({x}, {py}) lies on the stroke but was not painted"
            );
        }
        if x == 80 {
            assert_eq!(value, 0, "the undone stroke left ({x}, {py})");
        }
    }
    let entries = manifest(&dataset)["entries"].clone();
    assert_eq!(entries[0]["decision"], "edited", "{entries}");
    drop(browser);
    interrupt(&labeller.child);
    let (code, _) = labeller.wait();
    assert_eq!(code, Some(130));
}

/// Serves `page` as HTML to every request on a port of its own (another origin than the
/// labelling page's), until the test process ends; returns its address.
fn serve_elsewhere(page: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
    address
}

#[test]
fn a_page_of_another_origin_cannot_save_accept_or_finish() {
    let dir = tempfile::tempdir().unwrap();
    let (mut labeller, dataset) = plain_session(dir.path());
    // What any site the person visits can send without reading an answer: no-cors fetches
    // (with and without a body) and a text/plain form, into a hidden frame.
    let target = labeller.base.clone();
    let attack = format!(
        r#"<!doctype html><html><body><iframe name="sink"></iframe><script>
        const target = "{target}";
        const sends = [
          fetch(target + "/api/items/0/accept", {{ method: "POST", mode: "no-cors" }}),
          fetch(target + "/api/items/0/save", {{ method: "POST", mode: "no-cors",
            body: new Uint8Array({pixels}).fill(1) }}),
          fetch(target + "/api/items/0/save", {{ method: "POST", mode: "no-cors",
            headers: {{ "Content-Type": "text/plain" }}, body: "x" }}),
        ].map((p) => p.catch(() => null));
        const form = document.createElement("form");
        form.method = "POST"; form.enctype = "text/plain"; form.target = "sink";
        form.action = target + "/api/finish";
        document.body.appendChild(form);
        form.submit();
        Promise.all(sends).then(() => setTimeout(() => {{ document.title = "done"; }}, 1000));
        </script></body></html>"#,
        pixels = SIZE[0] * SIZE[1]
    );
    let elsewhere = serve_elsewhere(attack);
    let browser = Browser::start();
    browser.send("/url", &json!({ "url": format!("{elsewhere}/") }));
    browser.until("return document.title === 'done'");
    drop(browser);
    assert!(
        labeller.child.try_wait().unwrap().is_none(),
        "the forged finish ended the session"
    );
    assert!(
        !dataset.join("manifest.json").exists(),
        "a forged save was written"
    );
    let queue = labeller.queue();
    assert_eq!(queue["items"][0]["status"], "pending", "{queue}");
    interrupt(&labeller.child);
    let (code, _) = labeller.wait();
    assert_eq!(code, Some(130));
}
