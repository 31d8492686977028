//! Views: pure functions of the ledger, a clock reading and host facts.
pub mod diagnosis;
pub mod guard;
pub mod incident;
pub mod latency;
pub mod metrics;
pub mod report;
pub mod timeline;
pub mod top;
pub mod watch;

#[cfg(test)]
mod tests {
    /// Views and rendering are pure: what they show comes from the ledger,
    /// the clock reading and the host facts they are handed. A view that
    /// read /proc or the clock itself would show something else over a
    /// recording than live. (The replay source is held to the same rule.)
    #[test]
    fn views_and_rendering_read_neither_proc_nor_the_clock() {
        let sources = [
            ("views/diagnosis.rs", include_str!("diagnosis.rs")),
            ("views/latency.rs", include_str!("latency.rs")),
            ("views/report.rs", include_str!("report.rs")),
            ("views/watch.rs", include_str!("watch.rs")),
            ("views/incident.rs", include_str!("incident.rs")),
            ("views/timeline.rs", include_str!("timeline.rs")),
            ("views/top.rs", include_str!("top.rs")),
            ("render/top.rs", include_str!("../render/top.rs")),
            ("render/text.rs", include_str!("../render/text.rs")),
            ("render/summary.rs", include_str!("../render/summary.rs")),
            ("render/html.rs", include_str!("../render/html.rs")),
            ("render/perfetto.rs", include_str!("../render/perfetto.rs")),
            ("engine/replay.rs", include_str!("../engine/replay.rs")),
        ];
        let forbidden = [
            "std::fs",
            "File::open",
            "SystemTime::now",
            "Instant::now",
            "boot_time_now",
            "realtime_now",
            "procfs::read",
            "facts::now",
            "LiveHost",
            "/proc/",
        ];
        for (file, text) in sources {
            // Their tests may write files.
            let text = text.split("#[cfg(test)]").next().unwrap_or(text);
            for word in forbidden {
                assert!(
                    !text.contains(word),
                    "{file} uses `{word}`: views must be pure"
                );
            }
        }
    }
}
