//! What this build of zombie-trace is: its version, the commit it was built
//! from and which eBPF object it embeds, as `zombie-trace --version` prints
//! them. build.rs computes the commit and the object's digest at build time.

/// The crate version, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short hash of the commit built, or `unknown` when the source was not
/// a git checkout (a source tarball).
pub const GIT_COMMIT: &str = env!("ZOMBIE_TRACE_GIT_COMMIT");

/// The SHA-256 of the embedded eBPF object ([`crate::kernel::tracer::EBPF_OBJECT`]),
/// hex, computed by build.rs from the file it hands to `include_bytes`.
pub const EBPF_SHA256: &str = env!("ZOMBIE_TRACE_EBPF_SHA256");

/// The eBPF object's build id: the first 16 hex digits of [`EBPF_SHA256`].
pub const EBPF_BUILD_ID: &str = env!("ZOMBIE_TRACE_EBPF_BUILD_ID");

/// What `--version` prints after the program name: the version, then one
/// line each for the commit and the eBPF object's build id.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("ZOMBIE_TRACE_GIT_COMMIT"),
    "\neBPF object: ",
    env!("ZOMBIE_TRACE_EBPF_BUILD_ID"),
    " (SHA-256 prefix of the embedded object)",
);

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest as _, Sha256};

    #[test]
    fn the_build_id_is_the_digest_of_the_embedded_object() {
        let digest: String = Sha256::digest(crate::kernel::tracer::EBPF_OBJECT)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        assert_eq!(EBPF_SHA256, digest);
        assert_eq!(EBPF_BUILD_ID, &digest[..16]);
    }

    #[test]
    fn the_commit_is_a_short_hash_or_unknown() {
        assert!(
            GIT_COMMIT == "unknown"
                || (GIT_COMMIT.len() >= 7 && GIT_COMMIT.bytes().all(|b| b.is_ascii_hexdigit())),
            "{GIT_COMMIT:?}"
        );
    }

    #[test]
    fn the_long_version_names_version_commit_and_object() {
        let lines: Vec<&str> = LONG_VERSION.lines().collect();
        assert_eq!(
            lines,
            [
                VERSION.to_owned(),
                format!("commit: {GIT_COMMIT}"),
                format!("eBPF object: {EBPF_BUILD_ID} (SHA-256 prefix of the embedded object)"),
            ]
        );
    }
}
