//! A small, bounds-checked reader of the BPF Type Format (BTF).
//!
//! The eBPF programs read kernel structures through offsets that userspace
//! finds at start-up; this module reads them from the kernel's own type
//! information at `/sys/kernel/btf/vmlinux` (format described in the kernel's
//! `Documentation/bpf/btf.rst`).
//!
//! Only what zombie-trace needs is implemented: the header, the type section
//! and the string section; member offsets of structs and unions (descending
//! into anonymous members, with both bitfield encodings); type sizes; and the
//! parameter count of a tracepoint's function prototype. Every read is
//! bounds-checked: malformed input gives a [`BtfError`], never a panic.
//!
//! Parsing walks the type section once, recording where each type starts and
//! indexing struct, union and typedef names; members are decoded on demand.
//! BTF is read in the host's byte order, which is how the kernel exposes it.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use thiserror::Error;

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

const BTF_MAGIC: u16 = 0xEB9F;
const BTF_MAGIC_SWAPPED: u16 = 0x9FEB;
const BTF_VERSION: u8 = 1;
/// Length of `struct btf_header` as of BTF version 1.
const HEADER_LEN: usize = 24;
/// Length of `struct btf_type`.
const TYPE_LEN: usize = 12;
/// `BTF_MAX_TYPE`: type ids are at most 20 bits.
const MAX_TYPES: usize = 0x000f_ffff;
/// Longest chain of typedefs, qualifiers or nested anonymous members followed
/// before the input is declared malformed (real kernels need a handful).
const MAX_DEPTH: usize = 64;

/// A BTF type kind (`BTF_KIND_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            1 => Self::Int,
            2 => Self::Ptr,
            3 => Self::Array,
            4 => Self::Struct,
            5 => Self::Union,
            6 => Self::Enum,
            7 => Self::Fwd,
            8 => Self::Typedef,
            9 => Self::Volatile,
            10 => Self::Const,
            11 => Self::Restrict,
            12 => Self::Func,
            13 => Self::FuncProto,
            14 => Self::Var,
            15 => Self::Datasec,
            16 => Self::Float,
            17 => Self::DeclTag,
            18 => Self::TypeTag,
            19 => Self::Enum64,
            _ => return None,
        })
    }

    /// Bytes of kind-specific data that follow the 12-byte `btf_type`.
    fn trailing_len(self, vlen: usize) -> usize {
        match self {
            Self::Int | Self::Var | Self::DeclTag => 4,
            Self::Array => 12,
            Self::Struct | Self::Union | Self::Datasec | Self::Enum64 => 12 * vlen,
            Self::Enum | Self::FuncProto => 8 * vlen,
            Self::Ptr
            | Self::Fwd
            | Self::Typedef
            | Self::Volatile
            | Self::Const
            | Self::Restrict
            | Self::Func
            | Self::Float
            | Self::TypeTag => 0,
        }
    }

    /// Kinds whose names are indexed at parse time.
    fn is_indexed(self) -> bool {
        matches!(self, Self::Struct | Self::Union | Self::Typedef)
    }

    /// Kinds that only qualify or rename another type.
    fn is_alias(self) -> bool {
        matches!(
            self,
            Self::Typedef | Self::Volatile | Self::Const | Self::Restrict | Self::TypeTag
        )
    }

    /// The word C (or BTF) uses for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Ptr => "pointer",
            Self::Array => "array",
            Self::Struct => "struct",
            Self::Union => "union",
            Self::Enum => "enum",
            Self::Fwd => "forward declaration",
            Self::Typedef => "typedef",
            Self::Volatile => "volatile",
            Self::Const => "const",
            Self::Restrict => "restrict",
            Self::Func => "function",
            Self::FuncProto => "function prototype",
            Self::Var => "variable",
            Self::Datasec => "data section",
            Self::Float => "float",
            Self::DeclTag => "decl tag",
            Self::TypeTag => "type tag",
            Self::Enum64 => "enum64",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a struct or union member lives, relative to the start of the
/// outermost struct the lookup began from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// Offset of the member's first bit.
    pub bit_offset: u32,
    /// Width of a bitfield in bits; 0 when the member is not a bitfield.
    pub bitfield_size: u32,
    /// Size of the member's type in bytes, when BTF can tell (not for `void`,
    /// functions or forward declarations).
    pub size: Option<u32>,
    /// BTF id of the member's type.
    pub type_id: u32,
}

impl Member {
    /// Byte offset of a member that is not a bitfield and starts on a byte
    /// boundary; `None` otherwise.
    pub fn byte_offset(&self) -> Option<u32> {
        (self.bitfield_size == 0 && self.bit_offset.is_multiple_of(8))
            .then_some(self.bit_offset / 8)
    }

    /// Whether the member is a bitfield.
    pub fn is_bitfield(&self) -> bool {
        self.bitfield_size != 0
    }
}

/// Why BTF could not be read or did not contain what was asked for.
#[derive(Debug, Error)]
pub enum BtfError {
    #[error(
        "kernel BTF not found at {path}: this kernel was built without CONFIG_DEBUG_INFO_BTF; \
         zombie-trace needs a kernel with BTF (5.8+ distributions ship it)"
    )]
    NotFound { path: String },

    #[error("cannot read kernel BTF at {path}: {error}")]
    Read { path: String, error: std::io::Error },

    #[error(
        "malformed BTF: {what} at byte {offset} needs {needed} bytes but the data ends at byte \
         {len}; the BTF is truncated or corrupt"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: usize,
        len: usize,
    },

    #[error("not BTF data: magic is {found:#06x}, expected 0xeb9f")]
    BadMagic { found: u16 },

    #[error(
        "BTF data has the opposite byte order to this machine (magic reads 0x9feb); \
         cross-endian BTF is not supported"
    )]
    WrongEndian,

    #[error("unsupported BTF version {0}: zombie-trace reads version 1")]
    UnsupportedVersion(u8),

    #[error("malformed BTF header: {0}")]
    BadHeader(String),

    #[error(
        "BTF type {id} has unknown kind {kind}: this kernel's BTF is newer than zombie-trace \
         understands; please report it with your kernel version"
    )]
    UnknownKind { id: u32, kind: u32 },

    #[error("malformed BTF type section: {0}")]
    BadTypeSection(String),

    #[error("malformed BTF: string offset {offset} {reason}")]
    BadString { offset: u32, reason: &'static str },

    #[error("malformed BTF: type id {id} is referenced but only {count} types exist")]
    BadTypeId { id: u32, count: usize },

    #[error(
        "malformed BTF: following type {id} takes more than {MAX_DEPTH} steps (a loop or an \
         absurdly deep nesting)"
    )]
    TooDeep { id: u32 },

    #[error("malformed BTF: size of type {id} overflows 32 bits")]
    SizeOverflow { id: u32 },

    #[error("kernel BTF has no {kind} named `{name}`")]
    TypeNotFound { name: String, kind: String },

    #[error("kernel BTF has no member `{member}` in `{name}` (nor in its anonymous members)")]
    MemberNotFound { name: String, member: String },

    #[error(
        "`{name}`: `{member}` is a {found}, not a struct or union, so `{path}` cannot be resolved"
    )]
    NotComposite {
        name: String,
        member: String,
        found: String,
        path: String,
    },

    #[error("`{name}` has several definitions in kernel BTF that disagree on {what}")]
    Ambiguous { name: String, what: String },

    #[error("size of {kind} `{name}` cannot be determined from BTF")]
    NoSize { name: String, kind: Kind },

    #[error("typedef `{name}` is not a pointer to a function prototype (it leads to {found})")]
    NotFuncProtoPointer { name: String, found: String },
}

/// One entry of the type section, as found at parse time.
#[derive(Clone, Copy, Debug)]
struct RawType {
    name_off: u32,
    info: u32,
    /// `size` or `type`, depending on the kind.
    size_or_type: u32,
    kind: Kind,
    /// Absolute offset in `Btf::data` of the kind-specific trailing data.
    extra: usize,
}

impl RawType {
    fn vlen(&self) -> usize {
        (self.info & 0xffff) as usize
    }
    fn kind_flag(&self) -> bool {
        self.info >> 31 == 1
    }
}

/// Parsed BTF: the raw bytes plus an index of where each type starts.
pub struct Btf {
    data: Vec<u8>,
    str_start: usize,
    str_len: usize,
    /// `types[i]` has type id `i + 1`; id 0 is `void`.
    types: Vec<RawType>,
    /// Names of structs, unions and typedefs to their ids (in id order).
    names: HashMap<String, Vec<u32>>,
    pointer_size: u32,
}

impl fmt::Debug for Btf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Btf")
            .field("bytes", &self.data.len())
            .field("types", &self.types.len())
            .field("pointer_size", &self.pointer_size)
            .finish_non_exhaustive()
    }
}

fn read_bytes<const N: usize>(
    data: &[u8],
    offset: usize,
    what: &'static str,
) -> Result<[u8; N], BtfError> {
    offset
        .checked_add(N)
        .and_then(|end| data.get(offset..end))
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(BtfError::Truncated {
            what,
            offset,
            needed: N,
            len: data.len(),
        })
}

fn read_u32(data: &[u8], offset: usize, what: &'static str) -> Result<u32, BtfError> {
    read_bytes::<4>(data, offset, what).map(u32::from_ne_bytes)
}

fn to_usize(v: u32) -> usize {
    // u32 always fits: zombie-trace only builds for 32- and 64-bit targets.
    v as usize
}

impl Btf {
    /// Reads and parses the running kernel's BTF from [`VMLINUX_BTF_PATH`].
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_path(Path::new(VMLINUX_BTF_PATH))
    }

    /// Reads and parses a raw BTF file (such as `/sys/kernel/btf/vmlinux`).
    pub fn from_path(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|error| {
            let path = path.display().to_string();
            if error.kind() == std::io::ErrorKind::NotFound {
                BtfError::NotFound { path }
            } else {
                BtfError::Read { path, error }
            }
        })?;
        Self::parse(data)
    }

    /// Parses raw BTF bytes (header, type section, string section).
    pub fn parse(data: impl Into<Vec<u8>>) -> Result<Self, BtfError> {
        let data = data.into();
        let magic = u16::from_ne_bytes(read_bytes::<2>(&data, 0, "BTF header")?);
        match magic {
            BTF_MAGIC => {}
            BTF_MAGIC_SWAPPED => return Err(BtfError::WrongEndian),
            found => return Err(BtfError::BadMagic { found }),
        }
        let [version] = read_bytes::<1>(&data, 2, "BTF header")?;
        if version != BTF_VERSION {
            return Err(BtfError::UnsupportedVersion(version));
        }
        let hdr_len = to_usize(read_u32(&data, 4, "BTF header")?);
        let type_off = to_usize(read_u32(&data, 8, "BTF header")?);
        let type_len = to_usize(read_u32(&data, 12, "BTF header")?);
        let str_off = to_usize(read_u32(&data, 16, "BTF header")?);
        let str_len = to_usize(read_u32(&data, 20, "BTF header")?);
        if hdr_len < HEADER_LEN {
            return Err(BtfError::BadHeader(format!(
                "hdr_len is {hdr_len}, shorter than the {HEADER_LEN}-byte version 1 header"
            )));
        }
        if hdr_len > data.len() {
            return Err(BtfError::Truncated {
                what: "BTF header",
                offset: 0,
                needed: hdr_len,
                len: data.len(),
            });
        }
        let body_len = data.len() - hdr_len;
        let section = |name: &str, off: usize, len: usize| -> Result<(usize, usize), BtfError> {
            match off.checked_add(len) {
                Some(end) if end <= body_len => Ok((hdr_len + off, hdr_len + end)),
                _ => Err(BtfError::BadHeader(format!(
                    "{name} section (offset {off}, length {len}) extends past the end of the \
                     data ({body_len} bytes after the header)"
                ))),
            }
        };
        let (type_start, type_end) = section("type", type_off, type_len)?;
        let (str_start, str_end) = section("string", str_off, str_len)?;
        if !type_off.is_multiple_of(4) {
            return Err(BtfError::BadHeader(format!(
                "type section offset {type_off} is not 4-byte aligned"
            )));
        }
        if type_len > 0 && type_start < str_end && str_start < type_end {
            return Err(BtfError::BadHeader(
                "type and string sections overlap".to_string(),
            ));
        }
        if str_len == 0 || data.get(str_start) != Some(&0) || data.get(str_end - 1) != Some(&0) {
            return Err(BtfError::BadHeader(
                "string section must start and end with a NUL byte".to_string(),
            ));
        }

        let mut btf = Btf {
            data,
            str_start,
            str_len,
            types: Vec::new(),
            names: HashMap::new(),
            pointer_size: 0,
        };
        btf.index_types(type_start, type_end)?;
        Ok(btf)
    }

    fn index_types(&mut self, start: usize, end: usize) -> Result<(), BtfError> {
        let section = self.data.get(..end).ok_or(BtfError::Truncated {
            what: "type section",
            offset: start,
            needed: end.saturating_sub(start),
            len: self.data.len(),
        })?;
        let mut types = Vec::with_capacity((end - start) / 24);
        // Roughly one named struct, union or typedef per ten types.
        let mut names: HashMap<String, Vec<u32>> = HashMap::with_capacity(types.capacity() / 8);
        let mut long_size = None;
        let mut pos = start;
        while pos < end {
            let id = u32::try_from(types.len() + 1).unwrap_or(u32::MAX);
            if types.len() >= MAX_TYPES {
                return Err(BtfError::BadTypeSection(format!(
                    "more than {MAX_TYPES} types"
                )));
            }
            let name_off = read_u32(section, pos, "type header")?;
            let info = read_u32(section, pos + 4, "type header")?;
            let size_or_type = read_u32(section, pos + 8, "type header")?;
            let raw_kind = (info >> 24) & 0x1f;
            let kind =
                Kind::from_raw(raw_kind).ok_or(BtfError::UnknownKind { id, kind: raw_kind })?;
            let extra = pos + TYPE_LEN;
            let trailing = kind.trailing_len(to_usize(info & 0xffff));
            let next = extra + trailing;
            if next > end {
                return Err(BtfError::BadTypeSection(format!(
                    "type {id} ({kind}) needs {trailing} bytes of member data past byte {extra} \
                     but the type section ends at byte {end}"
                )));
            }
            let ty = RawType {
                name_off,
                info,
                size_or_type,
                kind,
                extra,
            };
            if name_off != 0 && (kind.is_indexed() || kind == Kind::Int) {
                let name = self.str_at(name_off)?;
                if kind.is_indexed() {
                    names.entry(name.to_string()).or_default().push(id);
                } else if long_size.is_none() && (name == "long int" || name == "long unsigned int")
                {
                    long_size = Some(size_or_type);
                }
            }
            types.push(ty);
            pos = next;
        }
        self.types = types;
        self.names = names;
        // BTF does not record the pointer size; like libbpf, take it from `long`.
        self.pointer_size = long_size
            .filter(|s| matches!(s, 4 | 8))
            .unwrap_or(std::mem::size_of::<usize>() as u32);
        Ok(())
    }

    /// Number of types, not counting `void` (id 0).
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// Size of a pointer in the described kernel (the size of `long`).
    pub fn pointer_size(&self) -> u32 {
        self.pointer_size
    }

    /// The NUL-terminated string at `offset` in the string section.
    fn str_at(&self, offset: u32) -> Result<&str, BtfError> {
        let off = to_usize(offset);
        if off >= self.str_len {
            return Err(BtfError::BadString {
                offset,
                reason: "is past the end of the string section",
            });
        }
        let tail = self
            .data
            .get(self.str_start + off..self.str_start + self.str_len)
            .ok_or(BtfError::BadString {
                offset,
                reason: "is past the end of the data",
            })?;
        // The section is known to end with a NUL, so one is always found.
        let len = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        std::str::from_utf8(&tail[..len]).map_err(|_| BtfError::BadString {
            offset,
            reason: "is not valid UTF-8",
        })
    }

    fn raw(&self, id: u32) -> Result<&RawType, BtfError> {
        to_usize(id)
            .checked_sub(1)
            .and_then(|i| self.types.get(i))
            .ok_or(BtfError::BadTypeId {
                id,
                count: self.types.len(),
            })
    }

    fn u32_at(&self, offset: usize) -> Result<u32, BtfError> {
        read_u32(&self.data, offset, "type data")
    }

    /// The kind and name of type `id` (`None` for `void`, id 0).
    pub fn kind_and_name(&self, id: u32) -> Result<Option<(Kind, &str)>, BtfError> {
        if id == 0 {
            return Ok(None);
        }
        let t = self.raw(id)?;
        Ok(Some((t.kind, self.str_at(t.name_off)?)))
    }

    /// Ids of the types of `kind` named `name`, in id order.
    pub fn type_ids_by_name(&self, name: &str, kind: Kind) -> Result<Vec<u32>, BtfError> {
        if kind.is_indexed() {
            let ids = self.names.get(name).map(Vec::as_slice).unwrap_or(&[]);
            return Ok(ids
                .iter()
                .copied()
                .filter(|&id| self.raw(id).is_ok_and(|t| t.kind == kind))
                .collect());
        }
        let mut ids = Vec::new();
        for (i, t) in self.types.iter().enumerate() {
            if t.kind == kind && t.name_off != 0 && self.str_at(t.name_off)? == name {
                ids.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
            }
        }
        Ok(ids)
    }

    /// Follows typedefs and qualifiers (const, volatile, restrict, type tags)
    /// from `id`; `None` means `void`.
    fn skip_aliases(&self, mut id: u32) -> Result<Option<(u32, &RawType)>, BtfError> {
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(None);
            }
            let t = self.raw(id)?;
            if !t.kind.is_alias() {
                return Ok(Some((id, t)));
            }
            id = t.size_or_type;
        }
        Err(BtfError::TooDeep { id })
    }

    /// Size in bytes of type `id`, or `None` when BTF cannot tell (`void`,
    /// functions, forward declarations).
    pub fn resolve_size(&self, id: u32) -> Result<Option<u32>, BtfError> {
        let mut id = id;
        let mut multiplier: u32 = 1;
        for _ in 0..MAX_DEPTH {
            if id == 0 {
                return Ok(None);
            }
            let t = self.raw(id)?;
            let base = match t.kind {
                Kind::Int
                | Kind::Enum
                | Kind::Enum64
                | Kind::Struct
                | Kind::Union
                | Kind::Float
                | Kind::Datasec => t.size_or_type,
                Kind::Ptr => self.pointer_size,
                Kind::Typedef
                | Kind::Volatile
                | Kind::Const
                | Kind::Restrict
                | Kind::TypeTag
                | Kind::Var => {
                    id = t.size_or_type;
                    continue;
                }
                Kind::Array => {
                    let elem = self.u32_at(t.extra)?;
                    let nelems = self.u32_at(t.extra + 8)?;
                    multiplier = multiplier
                        .checked_mul(nelems)
                        .ok_or(BtfError::SizeOverflow { id })?;
                    id = elem;
                    continue;
                }
                Kind::Fwd | Kind::Func | Kind::FuncProto | Kind::DeclTag => return Ok(None),
            };
            return base
                .checked_mul(multiplier)
                .map(Some)
                .ok_or(BtfError::SizeOverflow { id });
        }
        Err(BtfError::TooDeep { id })
    }

    /// Looks for the member `name` in the struct or union `comp`, descending
    /// into anonymous struct and union members. Offsets are relative to `comp`.
    fn find_member(
        &self,
        comp: &RawType,
        name: &str,
        depth: usize,
    ) -> Result<Option<Member>, BtfError> {
        if depth > MAX_DEPTH {
            return Err(BtfError::TooDeep { id: 0 });
        }
        let kind_flag = comp.kind_flag();
        for i in 0..comp.vlen() {
            let at = comp.extra + i * 12;
            let m_name = self.u32_at(at)?;
            let m_type = self.u32_at(at + 4)?;
            let m_offset = self.u32_at(at + 8)?;
            // With kind_flag, the high 8 bits hold the bitfield size.
            let (bit_offset, bitfield_size) = if kind_flag {
                (m_offset & 0x00ff_ffff, m_offset >> 24)
            } else {
                (m_offset, 0)
            };
            let m_name = if m_name == 0 {
                ""
            } else {
                self.str_at(m_name)?
            };
            if m_name.is_empty() {
                let Some((_, inner)) = self.skip_aliases(m_type)? else {
                    continue;
                };
                if matches!(inner.kind, Kind::Struct | Kind::Union)
                    && let Some(mut found) = self.find_member(inner, name, depth + 1)?
                {
                    found.bit_offset = found
                        .bit_offset
                        .checked_add(bit_offset)
                        .ok_or(BtfError::SizeOverflow { id: m_type })?;
                    return Ok(Some(found));
                }
                continue;
            }
            if m_name != name {
                continue;
            }
            let mut member = Member {
                bit_offset,
                bitfield_size,
                size: self.resolve_size(m_type)?,
                type_id: m_type,
            };
            // Without kind_flag, a bitfield's width and extra offset are in
            // the encoding of its int type.
            if !kind_flag
                && let Some((_, int)) = self.skip_aliases(m_type)?
                && int.kind == Kind::Int
            {
                let encoding = self.u32_at(int.extra)?;
                let int_offset = (encoding >> 16) & 0xff;
                let nr_bits = encoding & 0xff;
                member.bit_offset = member
                    .bit_offset
                    .checked_add(int_offset)
                    .ok_or(BtfError::SizeOverflow { id: m_type })?;
                if int_offset != 0 || u64::from(nr_bits) != u64::from(int.size_or_type) * 8 {
                    member.bitfield_size = nr_bits;
                }
            }
            return Ok(Some(member));
        }
        Ok(None)
    }

    /// Resolves a dot-separated `path` ("live.counter") from the struct or
    /// union `id`; offsets add up along the path.
    fn member_in(&self, id: u32, type_name: &str, path: &str) -> Result<Member, BtfError> {
        let mut comp = self.raw(id)?;
        let mut total: Option<Member> = None;
        for (i, part) in path.split('.').enumerate() {
            if let Some(prev) = total {
                match self.skip_aliases(prev.type_id)? {
                    Some((_, t)) if matches!(t.kind, Kind::Struct | Kind::Union) => comp = t,
                    other => {
                        return Err(BtfError::NotComposite {
                            name: type_name.to_string(),
                            member: path.split('.').take(i).collect::<Vec<_>>().join("."),
                            found: other.map_or("void".to_string(), |(_, t)| t.kind.to_string()),
                            path: path.to_string(),
                        });
                    }
                }
            }
            let found =
                self.find_member(comp, part, 0)?
                    .ok_or_else(|| BtfError::MemberNotFound {
                        name: type_name.to_string(),
                        member: path.to_string(),
                    })?;
            total = Some(match total {
                None => found,
                Some(prev) => Member {
                    bit_offset: prev
                        .bit_offset
                        .checked_add(found.bit_offset)
                        .ok_or(BtfError::SizeOverflow { id })?,
                    ..found
                },
            });
        }
        total.ok_or_else(|| BtfError::MemberNotFound {
            name: type_name.to_string(),
            member: path.to_string(),
        })
    }

    /// Where `member_path` (a member name, or a dot-separated path such as
    /// `"sa.sa_handler"`) lies in the struct or union named `struct_name`.
    ///
    /// Members of anonymous structs and unions are found as if they were
    /// direct members, with the anonymous member's offset added. If the name
    /// has several definitions, they must agree.
    pub fn member_offset(&self, struct_name: &str, member_path: &str) -> Result<Member, BtfError> {
        let mut ids = self.type_ids_by_name(struct_name, Kind::Struct)?;
        ids.extend(self.type_ids_by_name(struct_name, Kind::Union)?);
        let mut first_error = None;
        let mut result: Option<Member> = None;
        for id in ids {
            match self.member_in(id, struct_name, member_path) {
                Ok(m) => match result {
                    Some(prev) if prev != m => {
                        return Err(BtfError::Ambiguous {
                            name: struct_name.to_string(),
                            what: format!("where `{member_path}` is"),
                        });
                    }
                    _ => result = Some(m),
                },
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (result, first_error) {
            (Some(m), _) => Ok(m),
            (None, Some(e)) => Err(e),
            (None, None) => Err(BtfError::TypeNotFound {
                name: struct_name.to_string(),
                kind: "struct or union".to_string(),
            }),
        }
    }

    /// Size in bytes of the type of `kind` named `name` (a typedef's size is
    /// that of the type it names).
    pub fn type_size(&self, name: &str, kind: Kind) -> Result<u32, BtfError> {
        let ids = self.type_ids_by_name(name, kind)?;
        if ids.is_empty() {
            return Err(BtfError::TypeNotFound {
                name: name.to_string(),
                kind: kind.to_string(),
            });
        }
        let mut size = None;
        for id in ids {
            let s = self.resolve_size(id)?.ok_or_else(|| BtfError::NoSize {
                name: name.to_string(),
                kind,
            })?;
            if size.is_some_and(|prev| prev != s) {
                return Err(BtfError::Ambiguous {
                    name: name.to_string(),
                    what: "its size".to_string(),
                });
            }
            size = Some(s);
        }
        size.ok_or_else(|| BtfError::NoSize {
            name: name.to_string(),
            kind,
        })
    }

    /// Number of parameters of the function prototype that the typedef
    /// `name` points to, such as `btf_trace_sched_process_exit`
    /// (`void (*)(void *__data, struct task_struct *p, bool group_dead)`).
    /// A trailing `...` is not counted.
    pub fn func_proto_param_count_of_typedef(&self, name: &str) -> Result<usize, BtfError> {
        let ids = self.type_ids_by_name(name, Kind::Typedef)?;
        if ids.is_empty() {
            return Err(BtfError::TypeNotFound {
                name: name.to_string(),
                kind: Kind::Typedef.to_string(),
            });
        }
        let mut count = None;
        for id in ids {
            let not_proto = |found: String| BtfError::NotFuncProtoPointer {
                name: name.to_string(),
                found,
            };
            let ptr = match self.skip_aliases(id)? {
                Some((_, t)) if t.kind == Kind::Ptr => t,
                Some((_, t)) => return Err(not_proto(t.kind.to_string())),
                None => return Err(not_proto("void".to_string())),
            };
            let proto = match self.skip_aliases(ptr.size_or_type)? {
                Some((_, t)) if t.kind == Kind::FuncProto => t,
                Some((_, t)) => return Err(not_proto(format!("a pointer to a {}", t.kind))),
                None => return Err(not_proto("a pointer to void".to_string())),
            };
            let mut n = proto.vlen();
            if n > 0 {
                // A variadic prototype ends with a parameter of no name and type 0.
                let last = proto.extra + (n - 1) * 8;
                if self.u32_at(last)? == 0 && self.u32_at(last + 4)? == 0 {
                    n -= 1;
                }
            }
            if count.is_some_and(|prev| prev != n) {
                return Err(BtfError::Ambiguous {
                    name: name.to_string(),
                    what: "its parameter count".to_string(),
                });
            }
            count = Some(n);
        }
        count.ok_or_else(|| BtfError::TypeNotFound {
            name: name.to_string(),
            kind: Kind::Typedef.to_string(),
        })
    }

    /// Whether the enum `enum_name` has the enumerator `value_name`: what a
    /// kernel supports where a feature is an enum constant, such as
    /// `io_uring_op`'s `IORING_OP_WAITID`, whatever the version number says
    /// (distributions backport). `TypeNotFound` when there is no such enum.
    pub fn enum_has_value(&self, enum_name: &str, value_name: &str) -> Result<bool, BtfError> {
        let mut ids = self.type_ids_by_name(enum_name, Kind::Enum)?;
        ids.extend(self.type_ids_by_name(enum_name, Kind::Enum64)?);
        if ids.is_empty() {
            return Err(BtfError::TypeNotFound {
                name: enum_name.to_string(),
                kind: Kind::Enum.to_string(),
            });
        }
        for id in ids {
            let t = self.raw(id)?;
            // Each enumerator starts with its name: 8 bytes in an enum,
            // 12 in an enum64.
            let stride = if t.kind == Kind::Enum { 8 } else { 12 };
            for i in 0..t.vlen() {
                let name_off = self.u32_at(t.extra + i * stride)?;
                if name_off != 0 && self.str_at(name_off)? == value_name {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    /// Builds BTF blobs by hand, in host byte order.
    pub(crate) struct Builder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    impl Builder {
        pub(crate) fn new() -> Self {
            Self {
                types: Vec::new(),
                strings: vec![0],
                next_id: 1,
            }
        }

        pub(crate) fn name(&mut self, s: &str) -> u32 {
            if s.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(s.as_bytes());
            self.strings.push(0);
            off
        }

        fn push_u32(&mut self, v: u32) {
            self.types.extend_from_slice(&v.to_ne_bytes());
        }

        pub(crate) fn ty(
            &mut self,
            name: &str,
            kind: u32,
            vlen: u32,
            kind_flag: bool,
            size_or_type: u32,
            trailing: &[u32],
        ) -> u32 {
            let name_off = self.name(name);
            self.push_u32(name_off);
            self.push_u32((u32::from(kind_flag) << 31) | (kind << 24) | vlen);
            self.push_u32(size_or_type);
            for &v in trailing {
                self.push_u32(v);
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        pub(crate) fn int(&mut self, name: &str, size: u32, bits: u32, offset: u32) -> u32 {
            self.ty(name, 1, 0, false, size, &[(offset << 16) | bits])
        }

        /// `members`: (name, type, raw offset field).
        pub(crate) fn composite(
            &mut self,
            kind: u32,
            name: &str,
            size: u32,
            kind_flag: bool,
            members: &[(&str, u32, u32)],
        ) -> u32 {
            let mut trailing = Vec::new();
            for &(m, t, off) in members {
                trailing.push(self.name(m));
                trailing.push(t);
                trailing.push(off);
            }
            self.ty(name, kind, members.len() as u32, kind_flag, size, &trailing)
        }

        pub(crate) fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
            out.push(BTF_VERSION);
            out.push(0);
            out.extend_from_slice(&(HEADER_LEN as u32).to_ne_bytes());
            out.extend_from_slice(&0u32.to_ne_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_ne_bytes());
            out.extend_from_slice(&(self.types.len() as u32).to_ne_bytes());
            out.extend_from_slice(&(self.strings.len() as u32).to_ne_bytes());
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    pub(crate) const PTR: u32 = 2;
    pub(crate) const ARRAY: u32 = 3;
    pub(crate) const STRUCT: u32 = 4;
    pub(crate) const UNION: u32 = 5;
    pub(crate) const TYPEDEF: u32 = 8;
    pub(crate) const FUNC_PROTO: u32 = 13;
    pub(crate) const ENUM: u32 = 6;
    pub(crate) const ENUM64: u32 = 19;

    #[test]
    fn enumerators_are_found_by_name_in_enums_and_enum64s() {
        let mut b = Builder::new();
        let (read, waitid) = (b.name("IORING_OP_READ"), b.name("IORING_OP_WAITID"));
        b.ty("io_uring_op", ENUM, 2, false, 4, &[read, 22, waitid, 50]);
        let big = b.name("BIG");
        b.ty("wide", ENUM64, 1, false, 8, &[big, 0, 1]);
        let btf = Btf::parse(b.build()).unwrap();
        assert!(
            btf.enum_has_value("io_uring_op", "IORING_OP_WAITID")
                .unwrap()
        );
        assert!(
            !btf.enum_has_value("io_uring_op", "IORING_OP_FUTEX_WAIT")
                .unwrap()
        );
        assert!(btf.enum_has_value("wide", "BIG").unwrap());
        assert!(matches!(
            btf.enum_has_value("missing", "X"),
            Err(BtfError::TypeNotFound { .. })
        ));
    }

    /// A synthetic blob exercising anonymous members, both bitfield
    /// encodings, arrays, nested paths and a tracepoint typedef.
    fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let int = b.int("int", 4, 32, 0); // 1
        let uint = b.int("unsigned int", 4, 32, 0); // 2
        let long = b.int("long int", 8, 64, 0); // 3
        let ptr = b.ty("", PTR, 0, false, int, &[]); // 4
        let arr = b.ty("", ARRAY, 0, false, 0, &[int, long, 4]); // 5: int[4]
        // 6: union { int a; long b; }
        let anon_union = b.composite(UNION, "", 8, false, &[("a", int, 0), ("b", long, 0)]);
        // 7: struct { int x; int y; }
        let anon_struct = b.composite(STRUCT, "", 8, false, &[("x", int, 0), ("y", int, 32)]);
        // 8: union holding the anonymous struct: union { struct {x, y}; long z; }
        let nested = b.composite(UNION, "", 8, false, &[("", anon_struct, 0), ("z", long, 0)]);
        // 9: struct inner { int counter; }
        let inner = b.composite(STRUCT, "inner", 4, false, &[("counter", int, 0)]);
        // 10: typedef struct inner inner_t;
        let inner_t = b.ty("inner_t", TYPEDEF, 0, false, inner, &[]);
        // 11: struct sample, with kind_flag: bitfield size in the high 8 bits.
        let sample = b.composite(
            STRUCT,
            "sample",
            48,
            true,
            &[
                ("first", int, 0),
                ("", anon_union, 64),
                ("flag_a", uint, (1 << 24) | 128),
                ("flag_b", uint, (1 << 24) | 129),
                ("wide", uint, (5 << 24) | 130),
                ("", nested, 192),
                ("arr", arr, 256),
                ("inner", inner_t, 384),
                ("p", ptr, 320),
            ],
        );
        // 12: a 3-bit int used as a bitfield without kind_flag.
        let bits3 = b.int("unsigned int", 4, 3, 0);
        // 13: struct old_style { int a; unsigned int f:3 @ bit 35 }
        b.composite(
            STRUCT,
            "old_style",
            8,
            false,
            &[("a", int, 0), ("f", bits3, 35)],
        );
        // 14: void (*)(void *, struct sample *, int)
        let void_ptr = b.ty("", PTR, 0, false, 0, &[]); // 14
        let sample_ptr = b.ty("", PTR, 0, false, sample, &[]); // 15
        let n1 = b.name("__data");
        let n2 = b.name("p");
        let n3 = b.name("group_dead");
        let proto = b.ty(
            "",
            FUNC_PROTO,
            3,
            false,
            0,
            &[n1, void_ptr, n2, sample_ptr, n3, int],
        );
        let proto_ptr = b.ty("", PTR, 0, false, proto, &[]);
        b.ty("btf_trace_sample", TYPEDEF, 0, false, proto_ptr, &[]);
        // A variadic prototype: (int, ...)
        let variadic = b.ty("", FUNC_PROTO, 2, false, int, &[0, int, 0, 0]);
        let variadic_ptr = b.ty("", PTR, 0, false, variadic, &[]);
        b.ty("variadic_fn", TYPEDEF, 0, false, variadic_ptr, &[]);
        b.build()
    }

    #[test]
    fn synthetic_members() {
        let btf = Btf::parse(sample()).unwrap();
        assert_eq!(btf.pointer_size(), 8);
        let m = |name: &str| btf.member_offset("sample", name).unwrap();

        assert_eq!(m("first").byte_offset(), Some(0));
        // Inside the anonymous union at byte 8.
        assert_eq!(m("a").bit_offset, 64);
        assert_eq!(m("b").bit_offset, 64);
        assert_eq!(m("b").size, Some(8));
        // kind_flag bitfields.
        let a = m("flag_a");
        assert_eq!((a.bit_offset, a.bitfield_size), (128, 1));
        assert_eq!(a.byte_offset(), None);
        assert!(a.is_bitfield());
        let b = m("flag_b");
        assert_eq!((b.bit_offset, b.bitfield_size), (129, 1));
        assert_eq!(m("wide").bitfield_size, 5);
        // Anonymous struct inside an anonymous union at byte 24.
        assert_eq!(m("x").byte_offset(), Some(24));
        assert_eq!(m("y").byte_offset(), Some(28));
        assert_eq!(m("z").byte_offset(), Some(24));
        // Arrays: size is the whole array.
        assert_eq!(m("arr").byte_offset(), Some(32));
        assert_eq!(m("arr").size, Some(16));
        assert_eq!(m("p").size, Some(8));
        // Nested path through a typedef.
        assert_eq!(m("inner.counter").byte_offset(), Some(48));
        assert_eq!(m("inner.counter").size, Some(4));

        assert!(matches!(
            btf.member_offset("sample", "missing"),
            Err(BtfError::MemberNotFound { .. })
        ));
        assert!(matches!(
            btf.member_offset("sample", "first.x"),
            Err(BtfError::NotComposite { .. })
        ));
        assert!(matches!(
            btf.member_offset("nope", "x"),
            Err(BtfError::TypeNotFound { .. })
        ));
    }

    #[test]
    fn synthetic_int_encoded_bitfield() {
        let btf = Btf::parse(sample()).unwrap();
        let f = btf.member_offset("old_style", "f").unwrap();
        assert_eq!((f.bit_offset, f.bitfield_size), (35, 3));
        let a = btf.member_offset("old_style", "a").unwrap();
        assert_eq!((a.bit_offset, a.bitfield_size), (0, 0));
    }

    #[test]
    fn synthetic_sizes_and_protos() {
        let btf = Btf::parse(sample()).unwrap();
        assert_eq!(btf.type_size("sample", Kind::Struct).unwrap(), 48);
        assert_eq!(btf.type_size("inner_t", Kind::Typedef).unwrap(), 4);
        assert_eq!(btf.type_size("int", Kind::Int).unwrap(), 4);
        assert!(matches!(
            btf.type_size("sample", Kind::Union),
            Err(BtfError::TypeNotFound { .. })
        ));
        assert_eq!(
            btf.func_proto_param_count_of_typedef("btf_trace_sample")
                .unwrap(),
            3
        );
        assert_eq!(
            btf.func_proto_param_count_of_typedef("variadic_fn")
                .unwrap(),
            1
        );
        assert!(matches!(
            btf.func_proto_param_count_of_typedef("inner_t"),
            Err(BtfError::NotFuncProtoPointer { .. })
        ));
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let good = sample();
        // Every truncation fails cleanly (the header lengths no longer fit).
        for len in 0..good.len() {
            assert!(Btf::parse(&good[..len]).is_err(), "prefix {len} parsed");
        }
        let mut bad = good.clone();
        bad[0..2].copy_from_slice(&0x1234u16.to_ne_bytes());
        assert!(matches!(
            Btf::parse(bad),
            Err(BtfError::BadMagic { found: 0x1234 })
        ));
        let mut swapped = good.clone();
        swapped[0..2].copy_from_slice(&BTF_MAGIC.to_be_bytes());
        if cfg!(target_endian = "little") {
            assert!(matches!(Btf::parse(swapped), Err(BtfError::WrongEndian)));
        }
        let mut version = good.clone();
        version[2] = 2;
        assert!(matches!(
            Btf::parse(version),
            Err(BtfError::UnsupportedVersion(2))
        ));
        let mut hdr = good.clone();
        hdr[4..8].copy_from_slice(&8u32.to_ne_bytes());
        assert!(matches!(Btf::parse(hdr), Err(BtfError::BadHeader(_))));
        // Unknown kind 31 in the first type.
        let mut kind = good.clone();
        let at = HEADER_LEN + 4;
        let info = u32::from_ne_bytes(kind[at..at + 4].try_into().unwrap());
        kind[at..at + 4].copy_from_slice(&((info & 0x00ff_ffff) | (31 << 24)).to_ne_bytes());
        assert!(matches!(
            Btf::parse(kind),
            Err(BtfError::UnknownKind { id: 1, kind: 31 })
        ));
        // A struct whose vlen runs past the type section.
        let mut b = Builder::new();
        b.ty("s", STRUCT, 100, false, 4, &[]);
        assert!(matches!(
            Btf::parse(b.build()),
            Err(BtfError::BadTypeSection(_))
        ));
    }

    #[test]
    fn bad_references_are_errors() {
        let mut b = Builder::new();
        // typedef loop: 1 -> 2 -> 1
        b.ty("loop_a", TYPEDEF, 0, false, 2, &[]);
        b.ty("loop_b", TYPEDEF, 0, false, 1, &[]);
        // struct with a member of a non-existent type and one with a bad name.
        b.composite(STRUCT, "dangling", 4, false, &[("m", 999, 0)]);
        let name = b.name("bad");
        b.ty("badname", STRUCT, 1, false, 4, &[name + 10_000, 1, 0]);
        let btf = Btf::parse(b.build()).unwrap();
        assert!(matches!(
            btf.type_size("loop_a", Kind::Typedef),
            Err(BtfError::TooDeep { .. })
        ));
        assert!(matches!(
            btf.member_offset("dangling", "m"),
            Err(BtfError::BadTypeId { id: 999, .. })
        ));
        assert!(matches!(
            btf.member_offset("badname", "x"),
            Err(BtfError::BadString { .. })
        ));
    }

    /// Flipping bytes anywhere must never panic, whatever is then asked.
    #[test]
    fn corrupted_bytes_never_panic() {
        let good = sample();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5000 {
            let mut blob = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() % blob.len() as u64) as usize;
                blob[i] = next() as u8;
            }
            if let Ok(btf) = Btf::parse(blob) {
                for path in ["first", "a", "x", "y", "flag_b", "inner.counter", "arr"] {
                    let _ = btf.member_offset("sample", path);
                }
                let _ = btf.member_offset("old_style", "f");
                let _ = btf.type_size("sample", Kind::Struct);
                let _ = btf.type_size("int", Kind::Int);
                let _ = btf.func_proto_param_count_of_typedef("btf_trace_sample");
                for id in 0..40 {
                    let _ = btf.resolve_size(id);
                    let _ = btf.kind_and_name(id);
                }
            }
        }
    }

    fn vmlinux() -> Option<Btf> {
        if !Path::new(VMLINUX_BTF_PATH).exists() {
            println!("skipping: {VMLINUX_BTF_PATH} not present (kernel without BTF)");
            return None;
        }
        let start = std::time::Instant::now();
        let bytes = std::fs::read(VMLINUX_BTF_PATH).unwrap();
        let read = start.elapsed();
        let btf = Btf::parse(bytes).unwrap();
        println!(
            "{VMLINUX_BTF_PATH}: read in {read:?}, {} types parsed in {:?}",
            btf.type_count(),
            start.elapsed() - read
        );
        Some(btf)
    }

    #[test]
    fn real_vmlinux() {
        let Some(btf) = vmlinux() else { return };
        let pid = btf.member_offset("task_struct", "pid").unwrap();
        let tgid = btf.member_offset("task_struct", "tgid").unwrap();
        assert_eq!(pid.size, Some(4));
        assert_eq!(tgid.bit_offset, pid.bit_offset + 32);
        let comm = btf.member_offset("task_struct", "comm").unwrap();
        assert_eq!(comm.size, Some(16));
        let live = btf.member_offset("signal_struct", "live.counter").unwrap();
        assert_eq!(live.size, Some(4));
        let sub = btf
            .member_offset("signal_struct", "is_child_subreaper")
            .unwrap();
        assert_eq!(sub.bitfield_size, 1);
        assert!(btf.type_size("task_struct", Kind::Struct).unwrap() > 1000);
        let params = btf
            .func_proto_param_count_of_typedef("btf_trace_sched_process_exit")
            .unwrap();
        assert!(params == 2 || params == 3, "{params} params");
        println!("btf_trace_sched_process_exit has {params} params");
    }
}
