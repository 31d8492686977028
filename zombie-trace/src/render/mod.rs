//! Rendering: text tables, units and times.
pub mod text;
