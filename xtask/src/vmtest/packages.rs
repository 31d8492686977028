//! Debian packages the VMs are made of (kernels, busybox), fetched with
//! `apt-get download` and unpacked with `dpkg -x` under the target
//! directory, once: nothing is installed on the host.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::cmd::{capture, cmd, run};

/// A family of Debian packages of which the newest available one is used,
/// e.g. the 6.1 cloud kernels `linux-image-6.1.0-<abi>-cloud-amd64-unsigned`.
#[derive(Clone, Copy, Debug)]
pub struct Family {
    /// What the user names it by (`--kernel 6.1`).
    pub name: &'static str,
    /// Package names start with this...
    pub prefix: &'static str,
    /// ...and end with this; what lies between starts with the number that
    /// orders them (the ABI number or the upstream patch level).
    pub suffix: &'static str,
}

/// Among `names`, the family's package with the highest number, e.g.
/// `linux-image-6.12.113+deb12-cloud-amd64-unsigned` over `…6.12.107+deb12…`.
pub fn newest<'a>(family: &Family, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(|name| {
            let middle = name
                .strip_prefix(family.prefix)?
                .strip_suffix(family.suffix)?;
            // A family of one package (busybox-static) has nothing between.
            if middle.is_empty() {
                return Some((0, name));
            }
            let digits: String = middle.chars().take_while(char::is_ascii_digit).collect();
            Some((digits.parse::<u64>().ok()?, name))
        })
        .max()
        .map(|(_, name)| name)
}

/// An unpacked package.
pub struct Unpacked {
    pub package: String,
    /// The Debian version, e.g. `6.1.192-3`.
    pub version: String,
    /// The root of its unpacked files.
    pub root: PathBuf,
}

/// Fetches and unpacks packages under one cache directory; runs
/// `apt-get update` at most once, and only when a package is not known.
pub struct Apt {
    cache: PathBuf,
    updated: bool,
}

impl Apt {
    pub fn new(cache: PathBuf) -> Self {
        Self {
            cache,
            updated: false,
        }
    }

    /// The newest package of `family` that apt knows (after one
    /// `apt-get update` when it knows none), or the newest one unpacked
    /// before when apt cannot tell (offline).
    pub fn resolve(&mut self, family: &Family) -> Result<String> {
        loop {
            let known = capture(
                &mut cmd("apt-cache", ["pkgnames", family.prefix]),
                "apt-cache is needed to find the VM kernels (Debian or Ubuntu host)",
            )?;
            if let Some(name) = newest(family, known.lines()) {
                return Ok(name.to_owned());
            }
            if self.updated {
                break;
            }
            self.update()?;
        }
        let cached = std::fs::read_dir(&self.cache)
            .map(|dir| {
                dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                    .filter(|name| self.cache.join(name).join(UNPACKED_MARK).exists())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        match newest(family, cached.iter().map(String::as_str)) {
            Some(name) => Ok(name.to_owned()),
            None => bail!(
                "no package {}…{} ({}) is known to apt, even after `apt-get update`: the VMs \
                 need Debian bookworm's apt sources (main and security), which have it",
                family.prefix,
                family.suffix,
                family.name
            ),
        }
    }

    /// Downloads and unpacks `package` unless it is already unpacked.
    pub fn unpack(&mut self, package: &str) -> Result<Unpacked> {
        let root = self.cache.join(package);
        let mark = root.join(UNPACKED_MARK);
        if let Ok(version) = std::fs::read_to_string(&mark) {
            return Ok(Unpacked {
                package: package.to_owned(),
                version: version.trim().to_owned(),
                root,
            });
        }
        let debs = self.cache.join("debs");
        std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
        let deb = match find_deb(&debs, package)? {
            Some(deb) => deb,
            None => {
                self.download(&debs, package)?;
                find_deb(&debs, package)?.with_context(|| {
                    format!(
                        "`apt-get download {package}` left no {package}_*.deb in {}",
                        debs.display()
                    )
                })?
            }
        };
        let version = capture(
            cmd("dpkg-deb", ["--field"]).arg(&deb).arg("Version"),
            "dpkg-deb reads the package; is the download complete? delete it and retry",
        )?
        .trim()
        .to_owned();
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing a partial {}", root.display()))?;
        }
        run(
            cmd("dpkg", ["-x"]).arg(&deb).arg(&root),
            "dpkg -x could not unpack the package; delete it and retry",
        )?;
        std::fs::write(&mark, format!("{version}\n"))
            .with_context(|| format!("writing {}", mark.display()))?;
        Ok(Unpacked {
            package: package.to_owned(),
            version,
            root,
        })
    }

    fn download(&mut self, dir: &Path, package: &str) -> Result<()> {
        let mut download = cmd("apt-get", ["download", package]);
        download.current_dir(dir);
        if crate::cmd::status(&mut download)?.success() {
            return Ok(());
        }
        if self.updated {
            bail!("`apt-get download {package}` failed: see apt's error above");
        }
        // The package lists may be older than the archive.
        self.update()?;
        let mut download = cmd("apt-get", ["download", package]);
        download.current_dir(dir);
        run(
            &mut download,
            "see apt's error above (network? apt sources?)",
        )
    }

    fn update(&mut self) -> Result<()> {
        self.updated = true;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("apt's package lists lack the VM packages; run `sudo apt-get update`");
        }
        let mut update = cmd("apt-get", ["update"]);
        update.env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut update, "check the network and the apt sources")
    }
}

/// Written into a package's directory once it is completely unpacked; holds
/// the package version.
const UNPACKED_MARK: &str = ".unpacked";

fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix) && name.ends_with(".deb"))
        }))
}

/// The upstream part of a Debian version: `6.1.192-3` → `6.1.192`,
/// `6.12.113-1~deb12u1` → `6.12.113`.
pub fn upstream_version(version: &str) -> &str {
    let without_epoch = version.split_once(':').map_or(version, |(_, rest)| rest);
    without_epoch
        .rsplit_once('-')
        .map_or(without_epoch, |(upstream, _)| upstream)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KERNEL_6_1: Family = Family {
        name: "6.1",
        prefix: "linux-image-6.1.0-",
        suffix: "-cloud-amd64-unsigned",
    };
    const KERNEL_6_12: Family = Family {
        name: "6.12",
        prefix: "linux-image-6.12.",
        suffix: "-cloud-amd64-unsigned",
    };

    #[test]
    fn the_highest_number_of_the_family_wins() {
        let names = [
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64",
            "linux-image-6.1.0-60-amd64-unsigned",
            "linux-image-6.12.113+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.107+deb12-cloud-amd64-unsigned",
            "linux-image-6.12.9+bpo-cloud-amd64-unsigned",
        ];
        assert_eq!(
            newest(&KERNEL_6_1, names),
            Some("linux-image-6.1.0-57-cloud-amd64-unsigned")
        );
        assert_eq!(
            newest(&KERNEL_6_12, names),
            Some("linux-image-6.12.113+deb12-cloud-amd64-unsigned")
        );
        assert_eq!(
            newest(&KERNEL_6_1, ["linux-image-6.1.0-x-cloud-amd64-unsigned"]),
            None
        );
        let busybox = Family {
            name: "busybox",
            prefix: "busybox-static",
            suffix: "",
        };
        assert_eq!(
            newest(&busybox, ["busybox", "busybox-static", "busybox-syslogd"]),
            Some("busybox-static")
        );
    }

    #[test]
    fn upstream_versions() {
        assert_eq!(upstream_version("6.1.192-3"), "6.1.192");
        assert_eq!(upstream_version("6.12.113-1~deb12u1"), "6.12.113");
        assert_eq!(upstream_version("1:1.35.0-4+deb12u1+b1"), "1.35.0");
        assert_eq!(upstream_version("2.0"), "2.0");
    }
}
