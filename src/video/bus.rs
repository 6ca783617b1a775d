//! Reading a pipeline's bus: errors become [`Error::Pipeline`] naming the element.

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::Error;

/// The first error waiting on `pipeline`'s bus, if any. A warning that an element could not
/// write (a network sink whose packets cannot be sent: GStreamer's `udpsink` only warns) is an
/// error too: output that goes nowhere is no success. Other warnings are logged.
pub fn pending_error(pipeline: &gst::Pipeline) -> Option<Error> {
    let bus = pipeline.bus()?;
    while let Some(message) =
        bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Warning])
    {
        if let Some(error) = as_error(&message) {
            return Some(error);
        }
    }
    None
}

/// The error `message` reports: an error, or a warning that an element could not write.
fn as_error(message: &gst::MessageRef) -> Option<Error> {
    match message.view() {
        gst::MessageView::Error(error) => Some(error_from(error)),
        gst::MessageView::Warning(warning)
            if warning.error().matches(gst::ResourceError::Write) =>
        {
            Some(reported(message, &warning.error(), warning.debug()))
        }
        gst::MessageView::Warning(warning) => {
            tracing::debug!(element = %source_name(message), "GStreamer warning: {}", warning.error());
            None
        }
        _ => None,
    }
}

fn source_name(message: &gst::MessageRef) -> String {
    message
        .src()
        .map(|s| s.path_string().to_string())
        .unwrap_or_else(|| "pipeline".into())
}

/// Waits until `pipeline` posts end-of-stream (`Ok`) or an error (`Err`).
pub fn wait_for_eos(pipeline: &gst::Pipeline) -> Result<(), Error> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| Error::Pipeline("the pipeline has no bus".into()))?;
    for message in bus.iter_timed(gst::ClockTime::NONE) {
        if let gst::MessageView::Eos(_) = message.view() {
            return Ok(());
        }
        if let Some(error) = as_error(&message) {
            return Err(error);
        }
    }
    Err(Error::Pipeline(
        "the bus closed before end of stream".into(),
    ))
}

/// Turns a bus error message into [`Error::Pipeline`]: element, message and debug text.
pub fn error_from(error: &gst::message::Error) -> Error {
    reported(error.message(), &error.error(), error.debug())
}

/// [`Error::Pipeline`] from what `message` reports: its element, the error and the debug text.
fn reported(
    message: &gst::MessageRef,
    error: &gst::glib::Error,
    debug: Option<gst::glib::GString>,
) -> Error {
    let debug = debug.map(|d| format!(" ({d})")).unwrap_or_default();
    Error::Pipeline(format!("{}: {error}{debug}", source_name(message)))
}

/// Sets `pipeline` to `state`, turning a refusal into the bus error that explains it.
pub fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<(), Error> {
    pipeline.set_state(state).map(|_| ()).map_err(|_| {
        pending_error(pipeline)
            .unwrap_or_else(|| Error::Pipeline(format!("the pipeline refused to go to {state:?}")))
    })
}
