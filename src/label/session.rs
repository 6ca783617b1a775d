//! The labelling session behind the page: the ranked queue, what each frame offers (the
//! model's mask, or a correction carried from the same scene), and the page's requests —
//! answered without knowing anything of HTTP, so that the rules are plain to test.
//!
//! Requests name frames by their number in the queue only; no request names a file, so none
//! can reach outside the dataset.

use std::path::{Path, PathBuf};

use super::rank::{Scored, changed};
use super::store::{Decision, Provenance, Split, Store, encode_png};
use crate::imaging::Scaler;
use crate::infer::ModelCard;
use crate::{Error, Result};

/// A frame of the same scene that differs from a corrected frame in fewer than this share of
/// its thumbnail's pixels is offered that correction (when the page asks for carrying).
pub const CARRY: f64 = 0.015;

/// The page, its script and its style, embedded in the binary.
const PAGE: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("page/index.html"),
    ),
    (
        "/label.js",
        "text/javascript; charset=utf-8",
        include_str!("page/label.js"),
    ),
    (
        "/label.css",
        "text/css; charset=utf-8",
        include_str!("page/label.css"),
    ),
];

/// An answer to the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Media type of `body`.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    fn json(value: &serde_json::Value) -> Self {
        Reply {
            status: 200,
            content_type: "application/json",
            body: value.to_string().into_bytes(),
        }
    }

    /// An error the page shows: `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::json!({ "error": message })
                .to_string()
                .into_bytes(),
        }
    }
}

/// What became of a queued frame.
#[derive(Debug, Clone, PartialEq)]
enum Status {
    Pending,
    Saved(String),
    Skipped,
}

/// A queued frame.
struct Item {
    scored: Scored,
    /// Place in the ranked queue, from 1.
    rank: usize,
    status: Status,
    /// A correction carried from another frame: its labels and that frame's pair name.
    carried: Option<(Vec<u8>, String)>,
}

impl Item {
    /// The mask the page is offered: a carried correction, else the model's.
    fn offered(&self) -> &[u8] {
        self.carried
            .as_ref()
            .map_or(&self.scored.labels, |(labels, _)| labels)
    }
}

/// The queue and the dataset it fills.
pub struct Session {
    input: PathBuf,
    store: Store,
    items: Vec<Item>,
    /// Item numbers in the order the page offers them.
    order: Vec<usize>,
    /// Class names and colours as the page shows them (background first for binary models).
    classes: Vec<(String, [u8; 3])>,
    scaler: Scaler,
    finished: bool,
}

impl Session {
    /// A session over `queue` (ranked) from `input`, saving into `store`.
    pub fn new(input: &Path, card: &ModelCard, queue: Vec<Scored>, store: Store) -> Self {
        let classes = match card.num_classes() {
            1 => vec![
                ("background".to_string(), [0, 0, 0]),
                (card.classes[0].clone(), card.colors[0]),
            ],
            _ => card
                .classes
                .iter()
                .cloned()
                .zip(card.colors.iter().copied())
                .collect(),
        };
        let items: Vec<Item> = queue
            .into_iter()
            .enumerate()
            .map(|(i, scored)| Item {
                scored,
                rank: i + 1,
                status: Status::Pending,
                carried: None,
            })
            .collect();
        Session {
            input: input.to_path_buf(),
            store,
            order: (0..items.len()).collect(),
            items,
            classes,
            scaler: Scaler::default(),
            finished: false,
        }
    }

    /// Whether the page asked to finish.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The dataset's pairs so far, of this run and earlier ones.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Answers one request: `method`, the path, its query string, its body.
    pub fn handle(&mut self, method: &str, path: &str, query: &str, body: &[u8]) -> Reply {
        if let ("GET", Some((_, content_type, text))) =
            (method, PAGE.iter().find(|(route, _, _)| *route == path))
        {
            return Reply {
                status: 200,
                content_type,
                body: text.as_bytes().to_vec(),
            };
        }
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let result = match (method, parts.as_slice()) {
            ("GET", ["api", "queue"]) => Ok(Reply::json(&self.queue())),
            ("POST", ["api", "finish"]) => {
                self.finished = true;
                Ok(Reply::json(&serde_json::json!({ "finished": true })))
            }
            (method, ["api", "items", id, action]) => match self.item_number(id) {
                Some(n) => self.item_request(method, n, action, query, body),
                None => Err(Reply::error(404, "no such frame in the queue")),
            },
            _ => Err(Reply::error(404, "not found")),
        };
        result.unwrap_or_else(|reply| reply)
    }

    fn item_number(&self, id: &str) -> Option<usize> {
        id.parse::<usize>().ok().filter(|&n| n < self.items.len())
    }

    fn item_request(
        &mut self,
        method: &str,
        n: usize,
        action: &str,
        query: &str,
        body: &[u8],
    ) -> std::result::Result<Reply, Reply> {
        let server_error = |e: Error| Reply::error(500, &e.to_string());
        match (method, action) {
            ("GET", "image.png") => self.image_png(n).map_err(server_error),
            ("GET", "mask") => Ok(Reply {
                status: 200,
                content_type: "application/octet-stream",
                body: self.items[n].offered().to_vec(),
            }),
            ("GET", "uncertainty.png") => self.heat_map_png(n).map_err(server_error),
            ("POST", "save") => self.save(n, Some(body), query),
            ("POST", "accept") => self.save(n, None, query),
            ("POST", "skip") => {
                if self.items[n].status == Status::Pending {
                    self.items[n].status = Status::Skipped;
                }
                Ok(Reply::json(&self.queue()))
            }
            _ => Err(Reply::error(404, "not found")),
        }
    }

    /// The queue in the order offered, with the classes, as the page reads it.
    fn queue(&self) -> serde_json::Value {
        let items: Vec<serde_json::Value> = self
            .order
            .iter()
            .map(|&n| {
                let item = &self.items[n];
                let [width, height] = item.scored.candidate.size;
                let (status, saved_as) = match &item.status {
                    Status::Pending => ("pending", None),
                    Status::Saved(name) => ("saved", Some(name)),
                    Status::Skipped => ("skipped", None),
                };
                serde_json::json!({
                    "id": n,
                    "rank": item.rank,
                    "name": item.scored.candidate.origin.stem(&self.input),
                    "width": width,
                    "height": height,
                    "score": item.scored.scores.total(),
                    "scores": item.scored.scores,
                    "scene": item.scored.scene,
                    "status": status,
                    "saved_as": saved_as,
                    "carried_from": item.carried.as_ref().map(|(_, from)| from),
                })
            })
            .collect();
        let classes: Vec<serde_json::Value> = self
            .classes
            .iter()
            .enumerate()
            .map(
                |(id, (name, color))| serde_json::json!({ "id": id, "name": name, "color": color }),
            )
            .collect();
        serde_json::json!({
            "input": self.input.to_string_lossy(),
            "classes": classes,
            "items": items,
            "labelled": self.store.entries().len(),
        })
    }

    /// Saves frame `n` with `labels` (raw class ids, one byte a pixel; `None`: the offered
    /// mask). Query: `split=test` holds it back for evaluation, `carry=1` offers the
    /// correction to the frames of its scene that barely differ.
    fn save(
        &mut self,
        n: usize,
        labels: Option<&[u8]>,
        query: &str,
    ) -> std::result::Result<Reply, Reply> {
        let item = &self.items[n];
        if let Status::Saved(name) = &item.status {
            return Err(Reply::error(
                409,
                &format!("this frame is saved already, as {name}"),
            ));
        }
        let [width, height] = item.scored.candidate.size;
        let labels = labels.unwrap_or(item.offered());
        if labels.len() != width * height {
            return Err(Reply::error(
                400,
                &format!(
                    "the mask has {} values; the frame has {width}×{height} pixels",
                    labels.len()
                ),
            ));
        }
        if let Some(&bad) = labels
            .iter()
            .find(|&&l| usize::from(l) >= self.classes.len())
        {
            return Err(Reply::error(
                400,
                &format!(
                    "class id {bad} is not one of the model's {} classes",
                    self.classes.len()
                ),
            ));
        }
        let option = |key: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        };
        let split = match option("split") {
            Some("test") => Split::Test,
            _ => Split::Train,
        };
        let decision = match labels == item.offered() {
            true => Decision::Accepted,
            false => Decision::Edited,
        };
        let provenance = Provenance {
            input: &self.input,
            origin: &item.scored.candidate.origin,
            scores: item.scored.scores,
            rank: item.rank,
            decision,
            carried_from: item.carried.as_ref().map(|(_, from)| from.clone()),
            split,
        };
        let entry = self
            .store
            .save(
                &item.scored.candidate.rgba,
                [width, height],
                labels,
                provenance,
            )
            .map_err(|e| Reply::error(500, &e.to_string()))?;
        let labels = labels.to_vec();
        self.items[n].status = Status::Saved(entry.name.clone());
        self.carry_forward(n, &labels, &entry.name, option("carry") == Some("1"));
        Ok(Reply::json(&self.queue()))
    }

    /// After frame `n` is saved: the pending frames of its scene come next (in rank order),
    /// and with `carry`, those that barely differ from it are offered its `labels`.
    fn carry_forward(&mut self, n: usize, labels: &[u8], name: &str, carry: bool) {
        let saved = &self.items[n].scored;
        let (scene, size, thumbnail) = (saved.scene, saved.candidate.size, saved.thumbnail.clone());
        let same_scene = |item: &Item| item.status == Status::Pending && item.scored.scene == scene;
        let (mut next, rest): (Vec<usize>, Vec<usize>) = self
            .order
            .iter()
            .partition(|&&i| same_scene(&self.items[i]));
        next.sort_by_key(|&i| self.items[i].rank);
        if carry {
            for &i in &next {
                let item = &mut self.items[i];
                if item.scored.candidate.size == size
                    && changed(&item.scored.thumbnail, &thumbnail) < CARRY
                {
                    item.carried = Some((labels.to_vec(), name.to_string()));
                }
            }
        }
        next.extend(rest);
        self.order = next;
    }

    fn image_png(&self, n: usize) -> Result<Reply> {
        let candidate = &self.items[n].scored.candidate;
        let [width, height] = candidate.size.map(|v| v as u32);
        let image = image::RgbaImage::from_raw(width, height, candidate.rgba.clone())
            .ok_or_else(|| Error::Config("a frame's size does not match its pixels".into()))?;
        png(image)
    }

    /// The model's uncertainty at the frame's size: transparent where it is sure, towards an
    /// opaque red where it is not.
    fn heat_map_png(&mut self, n: usize) -> Result<Reply> {
        let scored = &self.items[n].scored;
        let size = scored.candidate.size;
        let plane = self
            .scaler
            .gray(&scored.uncertainty, scored.model_size, size);
        let rgba: Vec<u8> = plane
            .iter()
            .flat_map(|&u| [255, 255 - u, 0, (u16::from(u) * 220 / 255) as u8])
            .collect();
        let [width, height] = size.map(|v| v as u32);
        let image = image::RgbaImage::from_raw(width, height, rgba)
            .ok_or_else(|| Error::Config("a heat map's size does not match".into()))?;
        png(image)
    }
}

/// `image` as a PNG reply.
fn png(image: image::RgbaImage) -> Result<Reply> {
    Ok(Reply {
        status: 200,
        content_type: "image/png",
        body: encode_png(&image::DynamicImage::ImageRgba8(image))?,
    })
}
