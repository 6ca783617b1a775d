//! Engines shared by elements that name the same `model-instance`: one ONNX Runtime session
//! and one batcher per name in the process, released when its last element stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::{Duration, Instant};

use ndarray::Array4;

use super::settings::Settings;
use crate::infer::{Segmenter, SegmenterOptions};
use crate::paths::shown;
use crate::stream::{Batching, Engine};
use crate::{Error, Result};

/// What elements sharing an engine must agree on.
#[derive(Debug, Clone, PartialEq)]
struct EngineKey {
    model: PathBuf,
    options: SegmenterOptions,
    batching: Batching,
    /// Whether the batch is the provider's (none set): see [`Settings::batch_from_provider`].
    batch_from_provider: bool,
}

impl EngineKey {
    /// What a message shows of the key.
    fn describe(&self) -> String {
        format!(
            "{} ({:?}, batch {}, leaky {}, {} inference calls side by side)",
            shown(&self.model),
            self.options.device,
            self.batching.batch_size,
            self.batching.live,
            self.batching.sessions
        )
    }
}

/// A running engine and what an element needs to know of it.
pub struct SharedEngine {
    engine: Option<Engine>,
    key: EngineKey,
    /// What the engine adds to a frame's latency: the batch wait (when frames of several
    /// elements, or several frames of one, are batched) and two inference calls (one running,
    /// one waiting), timed at start.
    pub latency: Duration,
}

impl SharedEngine {
    /// The engine.
    pub fn engine(&self) -> &Engine {
        self.engine
            .as_ref()
            .expect("the engine is taken only when the last element lets go")
    }
}

impl Drop for SharedEngine {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            // A failure of the shared stages was already posted by the elements that saw it.
            let _ = engine.finish();
        }
    }
}

/// Engines by instance name.
static INSTANCES: LazyLock<Mutex<HashMap<String, Weak<SharedEngine>>>> =
    LazyLock::new(Mutex::default);

/// The engine for `settings`: the running one of its `model-instance` (then `true`), or a new
/// one.
///
/// # Errors
/// [`Error::Model`]/[`Error::Runtime`] when the model cannot be loaded; [`Error::Config`] when
/// the instance already runs with other model settings.
pub fn acquire(settings: &Settings) -> Result<(Arc<SharedEngine>, bool)> {
    let model = settings.model_path()?;
    let key = EngineKey {
        model: model.canonicalize().unwrap_or_else(|_| model.clone()),
        options: settings.segmenter_options(),
        batching: settings.batching(),
        batch_from_provider: settings.batch_from_provider(),
    };
    let Some(name) = &settings.model_instance else {
        return Ok((Arc::new(start(key, false)?), false));
    };
    // Held while loading, so that two elements starting at once share one session.
    let mut instances = INSTANCES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(running) = instances.get(name).and_then(Weak::upgrade) {
        if running.key != key {
            return Err(Error::Config(format!(
                "model-instance '{name}' runs {}; this element asks for {}: elements sharing an \
                 instance need the same model, provider, threads, batch, max-wait-ms and leaky, and \
                 all or none of them smoothing or using every (which run one call at a time)",
                running.key.describe(),
                key.describe(),
            )));
        }
        return Ok((running, true));
    }
    let shared = Arc::new(start(key, true)?);
    instances.retain(|_, weak| weak.strong_count() > 0);
    instances.insert(name.clone(), Arc::downgrade(&shared));
    Ok((shared, false))
}

/// Loads the model, times one batch of the size frames will mostly come in, and starts the
/// engine (`shared`: for elements of a model-instance).
fn start(key: EngineKey, shared: bool) -> Result<SharedEngine> {
    let mut segmenter = Segmenter::load(&key.model, &key.options)?;
    let batching = Batching {
        batch_size: match key.batch_from_provider {
            true => segmenter.provider().file_batch(),
            false => key.batching.batch_size,
        },
        ..key.batching
    };
    // A live batch holds one frame per element: time one frame.
    let timed = if batching.live {
        1
    } else {
        batching.batch_size
    };
    let [height, width] = segmenter.card().input_size;
    let input = Array4::<f32>::zeros((timed, 3, height, width));
    let started = Instant::now();
    segmenter.run(input.view())?;
    let call = started.elapsed();
    // A live batch closes as soon as it holds a frame of each element: alone, at once.
    let batched = if batching.live {
        shared
    } else {
        batching.batch_size > 1
    };
    let wait = if batched {
        batching.max_wait
    } else {
        Duration::ZERO
    };
    Ok(SharedEngine {
        engine: Some(Engine::start(segmenter, batching)?),
        key,
        latency: wait + 2 * call,
    })
}
