//! Finding (or mounting) tracefs and reading tracepoint record formats.
//!
//! Syscall tracepoint records (`syscalls/sys_enter_wait4`, ...) are laid out
//! by the kernel, and their layout is published in
//! `<tracefs>/events/<category>/<event>/format`. This module finds tracefs
//! through `/proc/mounts`, mounts it at `/sys/kernel/tracing` when nothing
//! is mounted, and parses those format files.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::host::mounts::{MountEntry, PROC_MOUNTS, parse_mounts};
use crate::kernel::check::{CAP_DAC_READ_SEARCH, CAP_SYS_ADMIN, errno_name, missing_caps_note};

/// Where tracefs is mounted on current systems, and where we mount it.
pub const TRACEFS_PATH: &str = match TRACEFS_PATH_C.to_str() {
    Ok(path) => path,
    Err(_) => panic!("the tracefs path is ASCII"),
};
/// [`TRACEFS_PATH`] for mount(2).
const TRACEFS_PATH_C: &CStr = c"/sys/kernel/tracing";
/// Where tracefs appears below debugfs (older systems).
pub const DEBUGFS_TRACING_PATH: &str = "/sys/kernel/debug/tracing";
const TRACEFS_TYPE_C: &CStr = c"tracefs";

/// Why tracefs or a tracepoint format could not be used.
#[derive(Debug, Error)]
pub enum TraceFsError {
    #[error("cannot read {PROC_MOUNTS} to find tracefs: {error}")]
    ReadMounts { error: io::Error },

    #[error(
        "tracefs is not mounted and mounting it at {TRACEFS_PATH} was refused ({errno}): mount \
         it first with `mount -t tracefs tracefs {TRACEFS_PATH}` (as the systemd unit and the \
         DaemonSet do), or run zombie-trace as root, which mounts it{missing}"
    )]
    MountPermission { errno: String, missing: String },

    #[error(
        "tracefs is not mounted and this kernel cannot mount it ({error}): it was built \
         without CONFIG_TRACING; zombie-trace needs syscall tracepoints"
    )]
    NoKernelSupport { error: io::Error },

    #[error(
        "tracefs is not mounted and mounting it at {TRACEFS_PATH} failed: {error}; mount it by \
         hand with `mount -t tracefs tracefs {TRACEFS_PATH}`"
    )]
    Mount { error: io::Error },

    #[error("`{category}/{event}` is not a valid tracepoint name")]
    InvalidName { category: String, event: String },

    #[error("tracepoint {category}/{event} does not exist (no {path}): {hint}")]
    EventNotFound {
        category: String,
        event: String,
        path: PathBuf,
        hint: &'static str,
    },

    #[error(
        "cannot read tracepoint format {path} ({errno}): tracefs is readable by its owner \
         only; run zombie-trace as root or grant CAP_DAC_READ_SEARCH{missing}"
    )]
    Permission {
        path: PathBuf,
        errno: String,
        /// Whether this process lacks CAP_DAC_READ_SEARCH ([`missing_caps_note`]).
        missing: String,
    },

    #[error("cannot read tracepoint format {path}: {error}")]
    ReadFormat { path: PathBuf, error: io::Error },

    #[error("malformed tracepoint format of {category}/{event}, line {line}: {reason}")]
    BadFormat {
        category: String,
        event: String,
        line: usize,
        reason: String,
    },

    #[error(
        "tracepoint {category}/{event} has no field `{field}` (it has: {available}); this \
         kernel's syscall record layout is not one zombie-trace knows"
    )]
    FieldNotFound {
        category: String,
        event: String,
        field: String,
        available: String,
    },
}

/// The tracefs mount points in `mounts`, preferred first:
/// [`TRACEFS_PATH`], then [`DEBUGFS_TRACING_PATH`], then the others in
/// mount-table order. Each appears once.
pub fn tracefs_mount_points(mounts: &[MountEntry]) -> Vec<PathBuf> {
    let rank = |p: &Path| {
        if p == Path::new(TRACEFS_PATH) {
            0
        } else if p == Path::new(DEBUGFS_TRACING_PATH) {
            1
        } else {
            2
        }
    };
    let mut points: Vec<PathBuf> = Vec::new();
    for m in mounts.iter().filter(|m| m.fs_type == "tracefs") {
        if !points.contains(&m.mount_point) {
            points.push(m.mount_point.clone());
        }
    }
    // Stable: equal ranks keep mount-table order.
    points.sort_by_key(|p| rank(p));
    points
}

/// One `field:` line of a tracepoint format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatField {
    /// The field name (`comm` for `char comm[16]`).
    pub name: String,
    /// The whole C declaration as written (`struct siginfo * infop`).
    pub declaration: String,
    /// Byte offset in the record.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
    pub signed: bool,
}

/// A parsed `events/<category>/<event>/format` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventFormat {
    pub category: String,
    pub event: String,
    /// The tracepoint id (`ID:` line), when present.
    pub id: Option<u32>,
    /// Fields in file order, common fields included.
    pub fields: Vec<FormatField>,
}

/// The name a C declaration declares: its last identifier, after dropping
/// array brackets (`char comm[16]` → `comm`, `__data_loc char[] name` → `name`).
fn declared_name(declaration: &str) -> Option<&str> {
    let mut decl = declaration.trim_end();
    while let Some(stripped) = decl.strip_suffix(']') {
        let open = stripped.rfind('[')?;
        decl = stripped[..open].trim_end();
    }
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start = decl
        .char_indices()
        .rev()
        .take_while(|&(_, c)| is_ident(c))
        .last()
        .map(|(i, _)| i)?;
    let name = &decl[start..];
    (!name.starts_with(|c: char| c.is_ascii_digit())).then_some(name)
}

impl EventFormat {
    /// Parses the text of a format file.
    pub fn parse(category: &str, event: &str, text: &str) -> Result<Self, TraceFsError> {
        let bad = |line: usize, reason: String| TraceFsError::BadFormat {
            category: category.to_string(),
            event: event.to_string(),
            line,
            reason,
        };
        let mut id = None;
        let mut fields = Vec::new();
        for (i, raw_line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw_line.trim();
            if let Some(v) = line.strip_prefix("ID:") {
                let v = v.trim();
                id = Some(
                    v.parse::<u32>()
                        .map_err(|_| bad(line_no, format!("ID `{v}` is not a number")))?,
                );
                continue;
            }
            if !line.starts_with("field:") {
                continue;
            }
            let mut declaration = None;
            let mut offset = None;
            let mut size = None;
            let mut signed = None;
            for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((key, value)) = part.split_once(':') else {
                    return Err(bad(line_no, format!("`{part}` is not `key:value`")));
                };
                let number = || {
                    value.trim().parse::<u32>().map_err(|_| {
                        bad(line_no, format!("{key} `{}` is not a number", value.trim()))
                    })
                };
                match key.trim() {
                    "field" => declaration = Some(value.trim()),
                    "offset" => offset = Some(number()?),
                    "size" => size = Some(number()?),
                    "signed" => signed = Some(number()? != 0),
                    _ => {} // Newer kernels may add keys; ignore them.
                }
            }
            let declaration =
                declaration.ok_or_else(|| bad(line_no, "no field declaration".to_string()))?;
            let name = declared_name(declaration).ok_or_else(|| {
                bad(
                    line_no,
                    format!("no field name in declaration `{declaration}`"),
                )
            })?;
            fields.push(FormatField {
                name: name.to_string(),
                declaration: declaration.to_string(),
                offset: offset.ok_or_else(|| bad(line_no, "no offset".to_string()))?,
                size: size.ok_or_else(|| bad(line_no, "no size".to_string()))?,
                // Kernels before 2.6.33 omitted `signed:`.
                signed: signed.unwrap_or(false),
            });
        }
        if fields.is_empty() {
            return Err(bad(0, "no `field:` lines".to_string()));
        }
        Ok(Self {
            category: category.to_string(),
            event: event.to_string(),
            id,
            fields,
        })
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FormatField> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The field called `name`, or an error listing the fields there are.
    pub fn require_field(&self, name: &str) -> Result<&FormatField, TraceFsError> {
        self.field(name).ok_or_else(|| TraceFsError::FieldNotFound {
            category: self.category.clone(),
            event: self.event.clone(),
            field: name.to_string(),
            available: self
                .fields
                .iter()
                .map(|f| f.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Byte offset of the field called `name` in the record.
    pub fn field_offset(&self, name: &str) -> Result<u32, TraceFsError> {
        self.require_field(name).map(|f| f.offset)
    }
}

/// A tracefs mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceFs {
    root: PathBuf,
}

impl fmt::Display for TraceFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.display().fmt(f)
    }
}

impl TraceFs {
    /// tracefs at a known path (no check is made).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The mounted tracefs, if any: the preferred tracefs entry of
    /// `/proc/mounts` whose mount point exists, else a tracefs already
    /// reachable at [`TRACEFS_PATH`] or [`DEBUGFS_TRACING_PATH`] (looking
    /// there lets the kernel automount it below debugfs).
    pub fn find_mounted() -> Result<Option<Self>, TraceFsError> {
        let text = std::fs::read_to_string(PROC_MOUNTS)
            .map_err(|error| TraceFsError::ReadMounts { error })?;
        if let Some(root) = tracefs_mount_points(&parse_mounts(&text))
            .into_iter()
            .find(|p| p.is_dir())
        {
            return Ok(Some(Self::at(root)));
        }
        Ok([TRACEFS_PATH, DEBUGFS_TRACING_PATH]
            .into_iter()
            .find(|p| Path::new(p).join("events").is_dir())
            .map(Self::at))
    }

    /// The mounted tracefs, or a new mount at [`TRACEFS_PATH`] when there is
    /// none (which needs root).
    pub fn open_or_mount() -> Result<Self, TraceFsError> {
        if let Some(found) = Self::find_mounted()? {
            return Ok(found);
        }
        mount_tracefs()?;
        log::info!("mounted tracefs at {TRACEFS_PATH}");
        Ok(Self::at(TRACEFS_PATH))
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn event_dir(&self, category: &str, event: &str) -> Result<PathBuf, TraceFsError> {
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        if !valid(category) || !valid(event) {
            return Err(TraceFsError::InvalidName {
                category: category.to_string(),
                event: event.to_string(),
            });
        }
        Ok(self.root.join("events").join(category).join(event))
    }

    /// Whether the tracepoint `category/event` exists.
    pub fn has_event(&self, category: &str, event: &str) -> bool {
        self.event_dir(category, event)
            .is_ok_and(|dir| dir.join("format").is_file())
    }

    /// Reads and parses `events/<category>/<event>/format`.
    pub fn event_format(&self, category: &str, event: &str) -> Result<EventFormat, TraceFsError> {
        let path = self.event_dir(category, event)?.join("format");
        let text = std::fs::read_to_string(&path).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => TraceFsError::EventNotFound {
                category: category.to_string(),
                event: event.to_string(),
                path: path.clone(),
                hint: if category == "syscalls" {
                    "this kernel was built without CONFIG_FTRACE_SYSCALLS, which zombie-trace \
                     needs to see wait4/waitid calls"
                } else {
                    "this kernel does not have this tracepoint"
                },
            },
            io::ErrorKind::PermissionDenied => TraceFsError::Permission {
                path: path.clone(),
                errno: errno_name(error.raw_os_error()),
                missing: missing_caps_note(&[CAP_DAC_READ_SEARCH]),
            },
            _ => TraceFsError::ReadFormat {
                path: path.clone(),
                error,
            },
        })?;
        EventFormat::parse(category, event, &text)
    }
}

/// `mount -t tracefs tracefs /sys/kernel/tracing`.
fn mount_tracefs() -> Result<(), TraceFsError> {
    // SAFETY: every pointer is a NUL-terminated string that outlives the
    // call; tracefs takes no mount data, so `data` may be null.
    let rc = unsafe {
        libc::mount(
            TRACEFS_TYPE_C.as_ptr(),
            TRACEFS_PATH_C.as_ptr(),
            TRACEFS_TYPE_C.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // Mounted meanwhile by someone else: fine.
        Some(libc::EBUSY) if Path::new(TRACEFS_PATH).join("events").is_dir() => Ok(()),
        Some(libc::EPERM | libc::EACCES) => Err(TraceFsError::MountPermission {
            errno: errno_name(error.raw_os_error()),
            missing: missing_caps_note(&[CAP_SYS_ADMIN]),
        }),
        Some(libc::ENODEV) => Err(TraceFsError::NoKernelSupport { error }),
        _ => Err(TraceFsError::Mount { error }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
none /mnt/odd\\040place tracefs rw,relatime 0 0
debugfs /sys/kernel/debug debugfs rw,relatime 0 0
tracefs /sys/kernel/debug/tracing tracefs rw,relatime 0 0
garbage
tracefs /sys/kernel/tracing tracefs rw,nosuid,nodev,noexec,relatime 0 0
tracefs /sys/kernel/tracing tracefs rw,relatime 0 0
";

    #[test]
    fn mounts_are_parsed_and_ranked() {
        let mounts = parse_mounts(MOUNTS);
        assert_eq!(mounts.len(), 7);
        assert_eq!(mounts[2].mount_point, PathBuf::from("/mnt/odd place"));
        assert_eq!(mounts[2].fs_type, "tracefs");
        assert_eq!(
            tracefs_mount_points(&mounts),
            vec![
                PathBuf::from(TRACEFS_PATH),
                PathBuf::from(DEBUGFS_TRACING_PATH),
                PathBuf::from("/mnt/odd place"),
            ]
        );
    }

    #[test]
    fn no_tracefs_mounted() {
        let mounts =
            parse_mounts("proc /proc proc rw 0 0\ndebugfs /sys/kernel/debug debugfs rw 0 0\n\n");
        assert_eq!(mounts.len(), 2);
        assert!(tracefs_mount_points(&mounts).is_empty());
        assert!(tracefs_mount_points(&parse_mounts("")).is_empty());
    }

    #[test]
    fn only_debugfs_tracing() {
        let mounts = parse_mounts("tracefs /sys/kernel/debug/tracing tracefs rw 0 0\n");
        assert_eq!(
            tracefs_mount_points(&mounts),
            vec![PathBuf::from(DEBUGFS_TRACING_PATH)]
        );
    }

    const WAITID: &str = "name: sys_enter_waitid
ID: 214
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int which;\toffset:16;\tsize:8;\tsigned:0;
\tfield:pid_t upid;\toffset:24;\tsize:8;\tsigned:0;
\tfield:struct siginfo * infop;\toffset:32;\tsize:8;\tsigned:0;
\tfield:int options;\toffset:40;\tsize:8;\tsigned:0;
\tfield:struct rusage * ru;\toffset:48;\tsize:8;\tsigned:0;

print fmt: \"which: 0x%08lx, upid: 0x%08lx\", ((unsigned long)(REC->which)), ((unsigned long)(REC->upid))
";

    #[test]
    fn format_is_parsed() {
        let f = EventFormat::parse("syscalls", "sys_enter_waitid", WAITID).unwrap();
        assert_eq!(f.id, Some(214));
        assert_eq!(f.fields.len(), 10);
        assert_eq!(f.field_offset("which").unwrap(), 16);
        assert_eq!(f.field_offset("upid").unwrap(), 24);
        assert_eq!(f.field_offset("infop").unwrap(), 32);
        assert_eq!(f.field_offset("options").unwrap(), 40);
        let infop = f.field("infop").unwrap();
        assert_eq!(infop.declaration, "struct siginfo * infop");
        assert_eq!((infop.size, infop.signed), (8, false));
        assert!(f.field("common_pid").unwrap().signed);
        let err = f.field_offset("stat_addr").unwrap_err();
        assert!(matches!(err, TraceFsError::FieldNotFound { .. }));
        assert!(err.to_string().contains("which, upid, infop"));
    }

    #[test]
    fn declaration_names() {
        assert_eq!(declared_name("char comm[16]"), Some("comm"));
        assert_eq!(declared_name("__data_loc char[] name"), Some("name"));
        assert_eq!(declared_name("unsigned long args[6]"), Some("args"));
        assert_eq!(declared_name("int * stat_addr"), Some("stat_addr"));
        assert_eq!(declared_name("const char *filename"), Some("filename"));
        assert_eq!(declared_name("u8 x[2][3]"), Some("x"));
        assert_eq!(declared_name("int"), Some("int"));
        assert_eq!(declared_name(""), None);
        assert_eq!(declared_name("int *"), None);
        assert_eq!(declared_name("char ]"), None);
        assert_eq!(declared_name("int 9"), None);
    }

    #[test]
    fn format_variants_and_errors() {
        // No `signed:` (very old kernels), an extra unknown key, arrays.
        let old = "ID: 7\n\tfield:char comm[16];\toffset:8;\tsize:16;\n\
                   \tfield:long ret;\toffset:16;\tsize:8;\tsigned:1;\tfuture:3;\n";
        let f = EventFormat::parse("sched", "x", old).unwrap();
        assert_eq!(f.field("comm").unwrap().size, 16);
        assert!(!f.field("comm").unwrap().signed);
        assert!(f.field("ret").unwrap().signed);

        for bad in [
            "",
            "name: x\nformat:\n",
            "ID: abc\n\tfield:int a;\toffset:0;\tsize:4;\tsigned:0;\n",
            "\tfield:int a;\toffset:zero;\tsize:4;\tsigned:0;\n",
            "\tfield:int a;\tsize:4;\tsigned:0;\n",
            "\tfield:int a;\toffset:0;\tsigned:0;\n",
            "\tfield:int *;\toffset:0;\tsize:4;\tsigned:0;\n",
            "\tfield:int a;\toffset 0;\tsize:4;\n",
        ] {
            assert!(
                matches!(
                    EventFormat::parse("c", "e", bad),
                    Err(TraceFsError::BadFormat { .. })
                ),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn event_names_are_checked() {
        let fs = TraceFs::at("/nonexistent-tracefs");
        assert!(!fs.has_event("syscalls", "sys_enter_wait4"));
        assert!(matches!(
            fs.event_format("..", "x"),
            Err(TraceFsError::InvalidName { .. })
        ));
        assert!(matches!(
            fs.event_format("syscalls/../..", "x"),
            Err(TraceFsError::InvalidName { .. })
        ));
        let err = fs.event_format("syscalls", "sys_enter_wait4").unwrap_err();
        assert!(matches!(err, TraceFsError::EventNotFound { .. }));
        assert!(err.to_string().contains("CONFIG_FTRACE_SYSCALLS"));
    }

    /// Reads the real tracefs when it is mounted and readable (root).
    #[test]
    fn real_tracefs() {
        let fs = match TraceFs::find_mounted() {
            Ok(Some(fs)) => fs,
            Ok(None) => {
                println!("skipping: tracefs is not mounted");
                return;
            }
            Err(e) => {
                println!("skipping: {e}");
                return;
            }
        };
        if !fs.path().join("events").is_dir() {
            println!("skipping: {}/events is not readable (not root?)", fs);
            return;
        }
        println!("tracefs at {fs}");
        if !fs.has_event("syscalls", "sys_enter_wait4") {
            println!("skipping: no syscall tracepoints (CONFIG_FTRACE_SYSCALLS)");
            return;
        }
        let f = fs.event_format("syscalls", "sys_enter_wait4").unwrap();
        assert!(f.field_offset("upid").unwrap() >= 8);
        assert!(f.field("stat_addr").is_some());
        assert!(!fs.has_event("syscalls", "no_such_event"));
    }
}
