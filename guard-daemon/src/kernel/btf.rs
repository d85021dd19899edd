//! Kernel structure offsets from the running kernel's BTF.
//!
//! aya-ebpf emits no CO-RE relocations, so the programs read fields at offsets we look up here
//! and pass in as a global. The fields are guard-common's table (`KERNEL_FIELDS`), each with the
//! size the programs read: a member whose BTF size differs is refused, as is a missing struct
//! or member. Guessing would make the kernel side read garbage, or half a field.

use btf_rs::{Btf, Type};
use guard_common::{KernelField, KernelOffsets};
use thiserror::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Links followed from a member to a type with a size; kernel BTF needs a handful.
const MAX_TYPE_CHAIN: usize = 32;

#[derive(Debug, Error)]
pub enum BtfError {
    #[error("reading kernel BTF from {path}: {source}")]
    Read { path: String, source: btf_rs::Error },
    #[error("kernel BTF has no struct {0}")]
    NoStruct(String),
    #[error("kernel BTF: struct {strukt} has no member {member}")]
    NoMember { strukt: String, member: String },
    #[error("kernel BTF: {strukt}.{member} is a bitfield")]
    Bitfield { strukt: String, member: String },
    #[error("kernel BTF: the type of {strukt}.{member} has no size ({kind})")]
    NoSize { strukt: String, member: String, kind: &'static str },
    #[error(
        "kernel BTF: {strukt}.{member} is {btf_size} bytes, guard reads {expected} (the `{slot}` entry of guard-common's kernel field table); this kernel is not supported as built"
    )]
    Size { strukt: String, member: String, slot: &'static str, btf_size: usize, expected: usize },
    #[error("kernel BTF lookup failed: {0}")]
    Lookup(#[from] btf_rs::Error),
}

/// Where a member sits in its struct and how many bytes it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemberLayout {
    pub offset: u32,
    pub size: usize,
}

/// `member` of `struct strukt`, looking through anonymous structs and unions.
pub fn member_layout(btf: &Btf, strukt: &str, member: &str) -> Result<MemberLayout, BtfError> {
    let ty = btf
        .resolve_types_by_name(strukt)
        .map_err(|_| BtfError::NoStruct(strukt.to_string()))?
        .into_iter()
        .find(|t| matches!(t, Type::Struct(s) if !s.members.is_empty()))
        .ok_or_else(|| BtfError::NoStruct(strukt.to_string()))?;
    let Type::Struct(st) = ty else { return Err(BtfError::NoStruct(strukt.to_string())) };
    let found = find_in(btf, &st, member, 0)?
        .ok_or_else(|| BtfError::NoMember { strukt: strukt.to_string(), member: member.to_string() })?;
    if found.bitfield || found.bits % 8 != 0 {
        return Err(BtfError::Bitfield { strukt: strukt.to_string(), member: member.to_string() });
    }
    let size = type_size(btf, btf.resolve_chained_type(&found.member)?).map_err(|kind| BtfError::NoSize {
        strukt: strukt.to_string(),
        member: member.to_string(),
        kind,
    })?;
    Ok(MemberLayout { offset: found.bits / 8, size })
}

struct Found {
    member: btf_rs::Member,
    bits: u32,
    bitfield: bool,
}

fn find_in(btf: &Btf, st: &btf_rs::Struct, member: &str, base_bits: u32) -> Result<Option<Found>, BtfError> {
    for m in &st.members {
        let name = btf.resolve_name(m).unwrap_or_default();
        let bits = base_bits + m.bit_offset();
        if name == member {
            let bitfield = m.bitfield_size().is_some_and(|s| s != 0);
            return Ok(Some(Found { member: m.clone(), bits, bitfield }));
        }
        if name.is_empty() {
            // Anonymous struct/union: its members belong to the enclosing struct.
            let mut inner = btf.resolve_chained_type(m)?;
            loop {
                match inner {
                    Type::Struct(ref s) | Type::Union(ref s) => {
                        if let Some(found) = find_in(btf, s, member, bits)? {
                            return Ok(Some(found));
                        }
                        break;
                    }
                    Type::Const(ref c) => inner = btf.resolve_chained_type(c)?,
                    Type::Volatile(ref v) => inner = btf.resolve_chained_type(v)?,
                    Type::Typedef(ref t) => inner = btf.resolve_chained_type(t)?,
                    _ => break,
                }
            }
        }
    }
    Ok(None)
}

/// Bytes a value of `ty` takes, through typedefs and modifiers (const, volatile, restrict, type
/// tags such as `__rcu`). Pointers are 8 bytes (guard runs on 64-bit kernels only). Err: the
/// BTF kind that has no size (void, a function, a forward declaration).
fn type_size(btf: &Btf, mut ty: Type) -> Result<usize, &'static str> {
    for _ in 0..MAX_TYPE_CHAIN {
        let next = match &ty {
            Type::Int(i) => return Ok(i.size()),
            Type::Ptr(_) => return Ok(8),
            Type::Struct(s) | Type::Union(s) => return Ok(s.size()),
            Type::Enum(e) => return Ok(e.size()),
            Type::Enum64(e) => return Ok(e.size()),
            Type::Float(f) => return Ok(f.size()),
            Type::Array(a) => {
                let element = btf.resolve_chained_type(a).map_err(|_| "array")?;
                return Ok(type_size(btf, element)? * a.len());
            }
            Type::Typedef(t) => btf.resolve_chained_type(t),
            Type::Const(c) | Type::Volatile(c) | Type::Restrict(c) => btf.resolve_chained_type(c),
            Type::TypeTag(t) => btf.resolve_chained_type(t),
            other => return Err(other.name()),
        };
        ty = next.map_err(|_| ty.name())?;
    }
    Err("type chain too long")
}

/// Every table field's offset, each member's size checked against the size the programs read.
/// `member` is the BTF lookup (a fake in tests).
pub fn offsets_from(member: impl Fn(&str, &str) -> Result<MemberLayout, BtfError>) -> Result<KernelOffsets, BtfError> {
    KernelOffsets::resolve(|field: &KernelField| {
        let layout = match member(field.strukt, field.member) {
            Ok(layout) => layout,
            // An optional member this kernel lacks: the programs that need it stay unloaded.
            Err(BtfError::NoMember { .. } | BtfError::NoStruct(_)) if !field.required => {
                return Ok(guard_common::OFFSET_ABSENT);
            }
            Err(err) => return Err(err),
        };
        if layout.size != field.size {
            return Err(BtfError::Size {
                strukt: field.strukt.to_string(),
                member: field.member.to_string(),
                slot: field.slot,
                btf_size: layout.size,
                expected: field.size,
            });
        }
        Ok(layout.offset)
    })
}

/// Every offset the programs need, from the BTF file at `path`.
pub fn kernel_offsets(path: &str) -> Result<KernelOffsets, BtfError> {
    let btf = Btf::from_file(path).map_err(|source| BtfError::Read { path: path.to_string(), source })?;
    offsets_from(|strukt, member| member_layout(&btf, strukt, member))
}

#[cfg(test)]
mod tests {
    use super::*;
    use guard_common::KERNEL_FIELDS;

    #[test]
    fn reads_offsets_from_running_kernel() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} not present on this kernel");
            return;
        }
        let off = kernel_offsets(VMLINUX_BTF).expect("offsets");
        assert!(off.is_valid());
        // qstr.name follows the 8-byte hash_len union on every 64-bit kernel.
        assert_eq!(off.qstr_name().offset(), 8);
        assert_ne!(off.task_tgid().offset(), 0);
        assert_ne!(off.mm_arg_end().offset(), off.mm_arg_start().offset());
    }

    #[test]
    fn names_missing_struct_and_member() {
        if !std::path::Path::new(VMLINUX_BTF).exists() {
            eprintln!("skipped: {VMLINUX_BTF} not present on this kernel");
            return;
        }
        let btf = Btf::from_file(VMLINUX_BTF).expect("btf");
        let err = member_layout(&btf, "task_struct", "no_such_field").unwrap_err();
        assert_eq!(err.to_string(), "kernel BTF: struct task_struct has no member no_such_field");
        assert!(matches!(member_layout(&btf, "no_such_struct_xyz", "a"), Err(BtfError::NoStruct(_))));
    }

    /// Every field where the table says and of the size it says, except `wrong` (struct,
    /// member), which is `size` bytes.
    fn fake(wrong: (&'static str, &'static str), size: usize) -> impl Fn(&str, &str) -> Result<MemberLayout, BtfError> {
        move |strukt, member| {
            let field = KERNEL_FIELDS
                .iter()
                .find(|f| f.strukt == strukt && f.member == member)
                .ok_or_else(|| BtfError::NoMember { strukt: strukt.into(), member: member.into() })?;
            let size = if (strukt, member) == wrong { size } else { field.size };
            Ok(MemberLayout { offset: 24, size })
        }
    }

    #[test]
    fn a_member_of_another_size_is_refused_by_name() {
        let err = offsets_from(fake(("super_block", "s_dev"), 8)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel BTF: super_block.s_dev is 8 bytes, guard reads 4 (the `sb_s_dev` entry of guard-common's \
             kernel field table); this kernel is not supported as built"
        );
        let err = offsets_from(fake(("inode", "i_ino"), 4)).unwrap_err();
        assert!(matches!(err, BtfError::Size { btf_size: 4, expected: 8, slot: "inode_i_ino", .. }), "{err}");
        let off = offsets_from(fake(("", ""), 0)).expect("every size as the table says");
        assert!(off.is_valid());
        assert_eq!(off.file_f_path().then(off.path_dentry()).offset(), 48);
    }

    #[test]
    fn an_optional_member_the_kernel_lacks_is_absent_a_required_one_is_an_error() {
        let without = |missing: &'static str| {
            let all = fake(("", ""), 0);
            move |strukt: &str, member: &str| {
                if member == missing {
                    return Err(BtfError::NoMember { strukt: strukt.into(), member: member.into() });
                }
                all(strukt, member)
            }
        };
        let off = offsets_from(without("uaddrlen")).expect("an older kernel without the unix hooks");
        assert!(off.is_valid() && !off.sock_addr_uaddrlen().present());
        assert!(off.sock_addr_uaddr().present());
        let err = offsets_from(without("uaddr")).unwrap_err();
        assert_eq!(err.to_string(), "kernel BTF: struct bpf_sock_addr_kern has no member uaddr");
    }

    /// A minimal BTF blob (see the kernel's Documentation/bpf/btf.rst), built by hand so the
    /// size resolution runs on real BTF without root or a vmlinux.
    struct BtfBuilder {
        types: Vec<u8>,
        strings: Vec<u8>,
        next_id: u32,
    }

    const INT: u32 = 1;
    const PTR: u32 = 2;
    const STRUCT: u32 = 4;
    const UNION: u32 = 5;
    const TYPEDEF: u32 = 8;
    const VOLATILE: u32 = 9;
    const CONST: u32 = 10;
    const TYPE_TAG: u32 = 18;

    impl BtfBuilder {
        fn new() -> Self {
            BtfBuilder { types: Vec::new(), strings: vec![0], next_id: 1 }
        }

        fn name(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }

        fn put(&mut self, words: &[u32]) -> u32 {
            for w in words {
                self.types.extend_from_slice(&w.to_le_bytes());
            }
            let id = self.next_id;
            self.next_id += 1;
            id
        }

        fn int(&mut self, name: &str, bytes: u32) -> u32 {
            let n = self.name(name);
            self.put(&[n, INT << 24, bytes, bytes * 8])
        }

        /// PTR, TYPEDEF, CONST, VOLATILE, TYPE_TAG: a name (or none) and the type they refer to.
        fn link(&mut self, kind: u32, name: &str, to: u32) -> u32 {
            let n = self.name(name);
            self.put(&[n, kind << 24, to])
        }

        /// A struct or union of `size` bytes; members are (name, type, byte offset).
        fn aggregate(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
            let n = self.name(name);
            let mut words = vec![n, kind << 24 | members.len() as u32, size];
            for (name, ty, offset) in members {
                let n = self.name(name);
                words.extend_from_slice(&[n, *ty, offset * 8]);
            }
            self.put(&words)
        }

        fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&0xeb9fu16.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for w in [24, 0, self.types.len() as u32, self.types.len() as u32, self.strings.len() as u32] {
                out.extend_from_slice(&w.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    #[test]
    fn member_sizes_resolve_typedefs_modifiers_and_pointers() {
        let mut b = BtfBuilder::new();
        let uint = b.int("unsigned int", 4);
        let ulong = b.int("long unsigned int", 8);
        let u32_t = b.link(TYPEDEF, "__u32", uint);
        let dev_t = b.link(TYPEDEF, "dev_t", u32_t);
        let const_ulong = b.link(CONST, "", ulong);
        let volatile_dev = b.link(VOLATILE, "", dev_t);
        let tagged = b.link(TYPE_TAG, "rcu", uint);
        let ptr = b.link(PTR, "", tagged);
        let inner = b.aggregate(STRUCT, "", 8, &[("in_anon", ulong, 0)]);
        let anon = b.aggregate(UNION, "", 8, &[("", inner, 0), ("other", uint, 0)]);
        let path = b.aggregate(STRUCT, "path", 16, &[("mnt", ptr, 0), ("dentry", ptr, 8)]);
        b.aggregate(
            STRUCT,
            "thing",
            48,
            &[
                ("dev", volatile_dev, 0),
                ("magic", const_ulong, 8),
                ("parent", ptr, 16),
                ("", anon, 24),
                ("where", path, 32),
            ],
        );
        let btf = Btf::from_bytes(&b.build()).expect("hand-built BTF parses");
        let layout = |m| member_layout(&btf, "thing", m).expect(m);
        assert_eq!(layout("dev"), MemberLayout { offset: 0, size: 4 });
        assert_eq!(layout("magic"), MemberLayout { offset: 8, size: 8 });
        assert_eq!(layout("parent"), MemberLayout { offset: 16, size: 8 });
        assert_eq!(layout("in_anon"), MemberLayout { offset: 24, size: 8 });
        assert_eq!(layout("other"), MemberLayout { offset: 24, size: 4 });
        assert_eq!(layout("where"), MemberLayout { offset: 32, size: 16 });
        assert_eq!(member_layout(&btf, "path", "dentry").expect("dentry"), MemberLayout { offset: 8, size: 8 });

        // The check on BTF: a kernel whose super_block.s_dev were 8 bytes is refused by name
        // (the other table fields come from the fake, sized as the table says).
        let mut b = BtfBuilder::new();
        let ulong = b.int("long unsigned int", 8);
        let dev_t = b.link(TYPEDEF, "dev_t", ulong);
        b.aggregate(STRUCT, "super_block", 16, &[("s_dev", dev_t, 0), ("s_magic", ulong, 8)]);
        let btf = Btf::from_bytes(&b.build()).expect("hand-built BTF parses");
        let others = fake(("", ""), 0);
        let err = offsets_from(|strukt, member| {
            if strukt == "super_block" { member_layout(&btf, strukt, member) } else { others(strukt, member) }
        })
        .unwrap_err();
        assert!(matches!(err, BtfError::Size { btf_size: 8, expected: 4, slot: "sb_s_dev", .. }), "{err}");
    }
}
