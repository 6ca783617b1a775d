//! Reading a pipeline's bus: errors become [`Error::Pipeline`] naming the element.

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::Error;

/// The first error waiting on `pipeline`'s bus, if any.
pub fn pending_error(pipeline: &gst::Pipeline) -> Option<Error> {
    let bus = pipeline.bus()?;
    while let Some(message) = bus.pop_filtered(&[gst::MessageType::Error]) {
        if let gst::MessageView::Error(error) = message.view() {
            return Some(error_from(error));
        }
    }
    None
}

/// Waits until `pipeline` posts end-of-stream (`Ok`) or an error (`Err`).
pub fn wait_for_eos(pipeline: &gst::Pipeline) -> Result<(), Error> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| Error::Pipeline("the pipeline has no bus".into()))?;
    for message in bus.iter_timed(gst::ClockTime::NONE) {
        match message.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(error) => return Err(error_from(error)),
            _ => {}
        }
    }
    Err(Error::Pipeline(
        "the bus closed before end of stream".into(),
    ))
}

/// Turns a bus error message into [`Error::Pipeline`]: element, message and debug text.
pub fn error_from(error: &gst::message::Error) -> Error {
    let element = error
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_else(|| "pipeline".into());
    let debug = error.debug().map(|d| format!(" ({d})")).unwrap_or_default();
    Error::Pipeline(format!("{element}: {}{debug}", error.error()))
}

/// Sets `pipeline` to `state`, turning a refusal into the bus error that explains it.
pub fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<(), Error> {
    pipeline.set_state(state).map(|_| ()).map_err(|_| {
        pending_error(pipeline)
            .unwrap_or_else(|| Error::Pipeline(format!("the pipeline refused to go to {state:?}")))
    })
}
