//! The initramfs archive: the kernel unpacks an uncompressed cpio in the
//! "newc" format (Documentation/driver-api/early-userspace/buffer-format.rst)
//! into its first root file system. Written here so that the build host
//! needs no `cpio` program.

use std::io::{self, Write};

/// The newc magic number (no checksums).
const MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// Writes a newc archive entry by entry; [`Cpio::finish`] writes the
/// trailer. Entries are owned by root and dated at the epoch, so that the
/// same inputs give the same archive.
pub struct Cpio<W: Write> {
    out: W,
    written: u64,
    next_inode: u32,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_inode: 1,
        }
    }

    /// A directory; `path` is relative (no leading `/`), parents first.
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | mode, 2, &[])
    }

    /// A regular file with these contents.
    pub fn file(&mut self, path: &str, mode: u32, contents: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | mode, 1, contents)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, target.as_bytes())
    }

    /// Writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_inode = 0;
        self.entry(TRAILER, 0, 1, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) -> io::Result<()> {
        let too_big = |what| io::Error::new(io::ErrorKind::InvalidInput, what);
        let name_size = u32::try_from(name.len() + 1).map_err(|_| too_big("name too long"))?;
        let file_size = u32::try_from(data.len()).map_err(|_| too_big("file over 4 GiB"))?;
        let inode = self.next_inode;
        self.next_inode = self.next_inode.wrapping_add(1);
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
        // rdevmajor, rdevminor, namesize, check: eight hex digits each.
        let fields = [
            inode, mode, 0, 0, nlink, 0, file_size, 0, 0, 0, 0, name_size, 0,
        ];
        let mut header = Vec::with_capacity(110 + name.len() + 4);
        header.extend_from_slice(MAGIC);
        for field in fields {
            header.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        header.extend_from_slice(name.as_bytes());
        header.push(0);
        self.put(&header)?;
        self.pad()?;
        self.put(data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// The header+name and the data each end on a 4-byte boundary.
    fn pad(&mut self) -> io::Result<()> {
        let padding = (4 - self.written % 4) % 4;
        self.put(&[0; 3][..usize::try_from(padding).unwrap_or(0)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a newc archive back: (name, mode, data) per entry.
    fn entries(archive: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let field = |at: usize, index: usize| {
            let start = at + 6 + index * 8;
            let hex = std::str::from_utf8(&archive[start..start + 8]).expect("hex");
            usize::from_str_radix(hex, 16).expect("hex field")
        };
        let align = |n: usize| n.div_ceil(4) * 4;
        let mut at = 0;
        let mut out = Vec::new();
        loop {
            assert_eq!(&archive[at..at + 6], MAGIC, "magic at {at}");
            let mode = u32::try_from(field(at, 1)).expect("mode");
            let size = field(at, 6);
            let name_size = field(at, 11);
            let name = &archive[at + 110..at + 110 + name_size - 1];
            let name = String::from_utf8(name.to_vec()).expect("name");
            let data_at = align(at + 110 + name_size);
            let data = archive[data_at..data_at + size].to_vec();
            at = align(data_at + size);
            if name == TRAILER {
                assert_eq!(at, archive.len(), "nothing after the trailer");
                return out;
            }
            out.push((name, mode, data));
        }
    }

    #[test]
    fn entries_read_back_with_their_modes_and_contents() -> io::Result<()> {
        let mut cpio = Cpio::new(Vec::new());
        cpio.dir("bin", 0o755)?;
        cpio.file("bin/a", 0o755, b"abc")?;
        cpio.file("init", 0o700, b"#!/bin/sh\n")?;
        cpio.file("empty", 0o644, b"")?;
        cpio.symlink("sh", "bin/a")?;
        let archive = cpio.finish()?;
        assert_eq!(archive.len() % 4, 0);
        assert_eq!(
            entries(&archive),
            [
                ("bin".to_owned(), S_IFDIR | 0o755, vec![]),
                ("bin/a".to_owned(), S_IFREG | 0o755, b"abc".to_vec()),
                ("init".to_owned(), S_IFREG | 0o700, b"#!/bin/sh\n".to_vec()),
                ("empty".to_owned(), S_IFREG | 0o644, vec![]),
                ("sh".to_owned(), S_IFLNK | 0o777, b"bin/a".to_vec()),
            ]
        );
        Ok(())
    }
}
