#![no_std]
// This file exists so that zombie-trace/build.rs can depend on this crate and be
// rebuilt when it changes; the programs live in main.rs.
