//! The mount table: the one parser of `/proc/mounts` (tracefs and the
//! cgroup hierarchies are found through it).

use std::path::PathBuf;

/// Where the kernel lists the mounts of our mount namespace.
pub const PROC_MOUNTS: &str = "/proc/mounts";

/// One line of `/proc/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// Comma-separated mount options (`rw,relatime,pids`).
    pub options: String,
}

impl MountEntry {
    pub fn has_option(&self, option: &str) -> bool {
        self.options.split(',').any(|o| o == option)
    }
}

/// Decodes the octal escapes (`\040` for a space, ...) the kernel uses in
/// `/proc/mounts` fields.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let digits = bytes.get(i + 1..i + 4).and_then(|d| {
                d.iter()
                    .all(|c| (b'0'..=b'7').contains(c))
                    .then(|| d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')))
            });
            if let Some(v) = digits.and_then(|v| u8::try_from(v).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses the text of `/proc/mounts`; malformed lines are skipped.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_ascii_whitespace();
            let source = fields.next()?;
            let mount_point = fields.next()?;
            let fs_type = fields.next()?;
            let options = fields.next().unwrap_or_default();
            Some(MountEntry {
                source: unescape_mount_field(source),
                mount_point: PathBuf::from(unescape_mount_field(mount_point)),
                fs_type: unescape_mount_field(fs_type),
                options: unescape_mount_field(options),
            })
        })
        .collect()
}

/// The mount table as it is now; empty when it cannot be read.
pub fn read_mounts() -> Vec<MountEntry> {
    std::fs::read_to_string(PROC_MOUNTS).map_or_else(|_| Vec::new(), |text| parse_mounts(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_are_decoded_in_every_field() {
        let mounts = parse_mounts(concat!(
            r"none /mnt/with\040space\011tab tracefs rw,relatime 0 0",
            "\n",
            "cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,pids 0 0\n",
            "broken-line\n",
        ));
        assert_eq!(mounts.len(), 2, "{mounts:?}");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt/with space\ttab"));
        assert_eq!(mounts[0].fs_type, "tracefs");
        assert!(mounts[1].has_option("pids"));
        assert!(!mounts[1].has_option("pid"));
    }

    #[test]
    fn a_backslash_without_three_octal_digits_is_kept() {
        assert_eq!(unescape_mount_field(r"a\011b\134c"), "a\tb\\c");
        assert_eq!(unescape_mount_field("trailing\\"), "trailing\\");
        assert_eq!(unescape_mount_field(r"short\04"), r"short\04");
        assert_eq!(unescape_mount_field(r"\777"), r"\777");
    }
}
