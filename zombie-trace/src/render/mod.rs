//! Rendering: text tables, units and times; the reviewer's summary, the
//! HTML page and the Perfetto trace of a recorded incident.
pub mod html;
pub mod perfetto;
pub mod summary;
pub mod text;
pub mod top;
