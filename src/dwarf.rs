//! The executable's DWARF inline ranges, for the code map (`symbols`).
//!
//! With LTO (and, for `#[inline]` and generic items, without it) rustc
//! inlines `std` code into the program's own functions: under fat LTO
//! `println!`'s `Stdout::lock` and `_print` end up inside `main`'s symbol.
//! A code map built from symbol names alone then calls that code the
//! user's. DWARF records every inlined copy as a
//! `DW_TAG_inlined_subroutine` with the address ranges it occupies and a
//! reference to the function it is a copy of — even with
//! `debug = "line-tables-only"`. This module collects the ranges of
//! inlined copies of code that must not be preempted (std, the global
//! allocator, gort itself, anything it cannot name), so the code map can
//! mark those addresses unsafe inside otherwise preemptible functions.
//!
//! Read with `gimli`, the DWARF reader the Rust toolchain itself uses
//! (std's backtraces, addr2line): well kept, no unsafe parsing of our own.

use crate::symbols::Kind;
use gimli::{AttributeValue, DebugInfoOffset, EndianSlice, LittleEndian};
// The maps here are keyed by DWARF offsets and file indices, millions of
// inserts in a large build: rustc's own Fx hash instead of std's SipHash
// (whose DoS resistance buys nothing for our own executable's data).
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// A section's bytes by name: `Ok(None)` if missing, `Err` if present but
/// unreadable (compressed).
pub(crate) type SectionFn<'a> = &'a dyn Fn(&str) -> Result<Option<&'a [u8]>, ()>;

/// What the DWARF of the executable says.
pub(crate) enum Inline {
    /// No DWARF (`debug = 0`, stripped, or compressed sections).
    Absent,
    /// Address ranges (link-time addresses, half-open) of inlined copies of
    /// code that is not preemptible, with the kind of that code.
    Ranges(Vec<(usize, usize, Kind)>),
}

/// Reads the inline ranges. `section(name)` returns a section's bytes,
/// `None` if missing, `Err` if present but unreadable (compressed);
/// `classify` judges a symbol (linkage) name.
/// `wanted(lo, hi)` says whether link-time addresses `[lo, hi)` hold any
/// preemptible function: only compile units that do are read (inlined
/// copies inside std's or gort's own functions change nothing, and
/// reading every unit of a large debug build costs seconds).
pub(crate) fn inline_ranges(
    section: SectionFn<'_>,
    classify: &dyn Fn(&str) -> Kind,
    wanted: &dyn Fn(usize, usize) -> bool,
) -> Inline {
    let names = [
        ".debug_info",
        ".debug_abbrev",
        ".debug_str",
        ".debug_line",
        ".debug_line_str",
        ".debug_ranges",
        ".debug_rnglists",
        ".debug_addr",
        ".debug_str_offsets",
    ];
    let mut data: HashMap<&str, &[u8]> = HashMap::default();
    for n in names {
        match section(n) {
            Ok(Some(d)) => {
                data.insert(n, d);
            }
            Ok(None) => {}
            Err(()) => return Inline::Absent,
        }
    }
    if data.get(".debug_info").is_none_or(|d| d.is_empty()) {
        return Inline::Absent;
    }
    let load = |id: gimli::SectionId| -> Result<Slice<'_>, gimli::Error> {
        let d: &[u8] = data.get(id.name()).copied().unwrap_or(&[]);
        Ok(EndianSlice::new(d, LittleEndian))
    };
    let Ok(dwarf) = gimli::Dwarf::load(load) else {
        return Inline::Absent;
    };
    match collect(&dwarf, classify, wanted) {
        Ok(r) => Inline::Ranges(r),
        // Unreadable DWARF: as if there were none (the caller is
        // conservative then).
        Err(_) => Inline::Absent,
    }
}

/// The kind of code from a source file, by where the file lives: std's
/// sources (`.../library/std/...` of the toolchain) are `Std`, core's and
/// alloc's `User` (no per-thread state), gort's own sources `Runtime`,
/// everything else (the program, its dependencies) `User`. Only gort's
/// `src/` is gort's: a program built inside gort's directory
/// (tests/lto's, under `target/`) is the program's.
fn file_kind(path: &str) -> Kind {
    if path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .is_some_and(|rest| rest.starts_with("/src/"))
    {
        return Kind::Runtime;
    }
    if let Some(i) = path.find("/library/") {
        let rest = &path[i + "/library/".len()..];
        let krate = rest.split('/').next().unwrap_or("");
        return match krate {
            "core" | "alloc" => Kind::User,
            // std, std_detect, panic_unwind, ...
            _ => Kind::Std,
        };
    }
    Kind::User
}

/// One inlined copy.
struct Copy {
    origin: Option<DebugInfoOffset>,
    /// The kind of the copied function's body, from the file of the calls
    /// it contains (its inlined children's `DW_AT_call_file`), if any.
    body: Option<Kind>,
}

fn collect(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    classify: &dyn Fn(&str) -> Kind,
    wanted: &dyn Fn(usize, usize) -> bool,
) -> gimli::Result<Vec<(usize, usize, Kind)>> {
    let string = |unit: &gimli::Unit<Slice<'_>>, v: Option<AttributeValue<Slice<'_>>>| {
        v.and_then(|v| dwarf.attr_string(unit, v).ok())
            .and_then(|s| std::str::from_utf8(s.slice()).ok().map(str::to_owned))
    };
    // Pass 1: every inlined copy's ranges and the function it copies; the
    // kind of its body's source file; the line table's files by address.
    let mut copies: Vec<Copy> = Vec::new();
    let mut ranges: Vec<(usize, usize, usize)> = Vec::new(); // (lo, hi, copy)
    let mut rows: Vec<(usize, Option<Kind>)> = Vec::new(); // None: sequence end
    let mut origins: HashSet<DebugInfoOffset> = HashSet::default();
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        // Skip units without preemptible code (see `inline_ranges`).
        let mut root = unit.entries();
        let Some(cu) = root.next_dfs()? else { continue };
        let mut cu_ranges = dwarf.die_ranges(&unit, cu)?;
        let mut any = false;
        while let Some(r) = cu_ranges.next()? {
            if r.end > r.begin && wanted(r.begin as usize, r.end as usize) {
                any = true;
                break;
            }
        }
        if !any {
            continue;
        }
        // Kinds of the line program's files, by index.
        let mut files: HashMap<u64, Kind> = HashMap::default();
        let file_kind_of = |files: &mut HashMap<u64, Kind>,
                            lp: &gimli::LineProgramHeader<Slice<'_>>,
                            idx: u64|
         -> Option<Kind> {
            if let Some(k) = files.get(&idx) {
                return Some(*k);
            }
            let f = lp.file(idx)?;
            let name = string(&unit, Some(f.path_name()))?;
            let full = if name.starts_with('/') {
                name
            } else {
                let dir = string(&unit, f.directory(lp)).unwrap_or_default();
                format!("{dir}/{name}")
            };
            let k = file_kind(&full);
            files.insert(idx, k);
            Some(k)
        };
        if let Some(lp) = unit.line_program.clone() {
            let mut lr = lp.rows();
            // A row only matters where the kind changes: within a sequence
            // (rows in address order) one with the same kind as the last
            // kept row changes no lookup in `row_kind` below, and most
            // rows repeat their predecessor's file.
            let mut last: Option<(u64, Kind)> = None; // (file, kind) kept
            while let Some((h, row)) = lr.next_row()? {
                if row.end_sequence() {
                    rows.push((row.address() as usize, None));
                    last = None;
                    continue;
                }
                let file = row.file_index();
                let k = match last {
                    Some((f, k)) if f == file => k,
                    _ => file_kind_of(&mut files, h, file).unwrap_or(Kind::Foreign),
                };
                if last.is_none_or(|(_, lk)| lk != k) {
                    rows.push((row.address() as usize, Some(k)));
                }
                last = Some((file, k));
            }
        }
        let lp_header = unit.line_program.as_ref().map(|lp| lp.header().clone());
        // Open inlined copies enclosing the current entry: (depth, copy).
        // Read raw: only inlined subroutines' attributes are parsed (a
        // large debug build has millions of other entries).
        let mut open: Vec<(isize, usize)> = Vec::new();
        let mut raw = unit.entries_raw(None)?;
        while !raw.is_empty() {
            let depth = raw.next_depth();
            let Some(abbrev) = raw.read_abbreviation()? else {
                continue;
            };
            while open.last().is_some_and(|o| o.0 >= depth) {
                open.pop();
            }
            if abbrev.tag() != gimli::DW_TAG_inlined_subroutine {
                raw.skip_attributes(abbrev.attributes())?;
                continue;
            }
            let (mut low, mut high, mut size, mut ranges_at) = (None, None, None, None);
            let (mut origin, mut call_file) = (None, None);
            for spec in abbrev.attributes() {
                let attr = raw.read_attribute(*spec)?;
                match attr.name() {
                    gimli::DW_AT_low_pc => low = dwarf.attr_address(&unit, attr.value())?,
                    gimli::DW_AT_high_pc => match attr.value() {
                        AttributeValue::Addr(_) | AttributeValue::DebugAddrIndex(_) => {
                            high = dwarf.attr_address(&unit, attr.value())?
                        }
                        _ => size = attr.udata_value(),
                    },
                    gimli::DW_AT_ranges => {
                        ranges_at = dwarf.attr_ranges_offset(&unit, attr.value())?
                    }
                    gimli::DW_AT_abstract_origin => {
                        origin = match attr.value() {
                            AttributeValue::UnitRef(o) => o.to_debug_info_offset(&unit.header),
                            AttributeValue::DebugInfoRef(o) => Some(o),
                            _ => None,
                        }
                    }
                    gimli::DW_AT_call_file => {
                        if let AttributeValue::FileIndex(i) = attr.value() {
                            call_file = Some(i);
                        }
                    }
                    _ => {}
                }
            }
            // Where this call is, is the body of the copy enclosing it.
            if let (Some(&(_, parent)), Some(lp), Some(idx)) =
                (open.last(), lp_header.as_ref(), call_file)
            {
                let k = file_kind_of(&mut files, lp, idx).unwrap_or(Kind::Foreign);
                let body = &mut copies[parent].body;
                if body.is_none_or(|b| b.preemptible()) {
                    *body = Some(k);
                }
            }
            if let Some(o) = origin {
                origins.insert(o);
            }
            let id = copies.len();
            copies.push(Copy { origin, body: None });
            open.push((depth, id));
            if let (Some(lo), Some(hi)) =
                (low, high.or_else(|| size.and_then(|n| low.map(|l| l + n))))
            {
                if hi > lo {
                    ranges.push((lo as usize, hi as usize, id));
                }
            }
            if let Some(at) = ranges_at {
                let mut rs = dwarf.ranges(&unit, at)?;
                while let Some(r) = rs.next()? {
                    if r.end > r.begin {
                        ranges.push((r.begin as usize, r.end as usize, id));
                    }
                }
            }
        }
    }
    rows.sort_by_key(|r| r.0);
    // The kind of each copied function by name, read directly at its
    // offset: its linkage name (full debuginfo, closures included), or
    // one level of DW_AT_specification for a declaration's. With
    // `line-tables-only` there are only bare names (`lock`), which say
    // little: the file kinds above decide then.
    let mut starts: Vec<(usize, gimli::UnitHeader<Slice<'_>>)> = Vec::new();
    let mut hs = dwarf.units();
    while let Some(h) = hs.next()? {
        if let Some(o) = h.debug_info_offset() {
            starts.push((o.0, h));
        }
    }
    starts.sort_by_key(|u| u.0);
    let mut parsed: HashMap<usize, gimli::Unit<Slice<'_>>> = HashMap::default();
    let mut kinds: HashMap<DebugInfoOffset, Option<Kind>> =
        HashMap::with_capacity_and_hasher(origins.len(), Default::default());
    for off in origins {
        let kind = name_kind(dwarf, &starts, &mut parsed, off, 0, classify)?;
        kinds.insert(off, kind);
    }
    // A copy is unsafe if its name or its body's file says so; one with
    // neither (a leaf copy without a name) is judged by the line table
    // rows inside it.
    let row_kind = |lo: usize, hi: usize| -> Option<Kind> {
        let i = rows.partition_point(|r| r.0 <= lo);
        let mut kind = i.checked_sub(1).and_then(|j| rows[j].1);
        for r in rows[i..].iter().take_while(|r| r.0 < hi) {
            match r.1 {
                Some(k) if !k.preemptible() => return Some(k),
                Some(k) => kind = kind.or(Some(k)),
                None => {}
            }
        }
        kind
    };
    let mut out = Vec::new();
    for (lo, hi, id) in ranges {
        let c = &copies[id];
        let by_name = c.origin.and_then(|o| kinds.get(&o).copied().flatten());
        let by_file = c.body.or_else(|| row_kind(lo, hi));
        let kind = match (by_name, by_file) {
            (Some(Kind::Entry), _) => continue,
            (Some(a), _) if !a.preemptible() => a,
            (_, Some(b)) if !b.preemptible() => b,
            (None, None) => Kind::Foreign,
            _ => continue,
        };
        out.push((lo, hi, kind));
    }
    Ok(out)
}

/// The kind of the function whose DIE is at `off`, by its name (see
/// `collect`); `None` if the name does not tell.
fn name_kind<'a>(
    dwarf: &gimli::Dwarf<Slice<'a>>,
    starts: &[(usize, gimli::UnitHeader<Slice<'a>>)],
    parsed: &mut HashMap<usize, gimli::Unit<Slice<'a>>>,
    off: DebugInfoOffset,
    depth: u32,
    classify: &dyn Fn(&str) -> Kind,
) -> gimli::Result<Option<Kind>> {
    let i = starts.partition_point(|u| u.0 <= off.0);
    let Some((start, header)) = i.checked_sub(1).map(|j| &starts[j]) else {
        return Ok(None);
    };
    if !parsed.contains_key(start) {
        parsed.insert(*start, dwarf.unit(*header)?);
    }
    let unit = &parsed[start];
    let Some(uoff) = off.to_unit_offset(&unit.header) else {
        return Ok(None);
    };
    let entry = unit.entry(uoff)?;
    let string = |v: Option<AttributeValue<Slice<'a>>>| {
        v.and_then(|v| dwarf.attr_string(unit, v).ok())
            .and_then(|s| std::str::from_utf8(s.slice()).ok().map(str::to_owned))
    };
    if let Some(l) = string(entry.attr_value(gimli::DW_AT_linkage_name)) {
        return Ok(Some(classify(&l)));
    }
    let spec = match entry.attr_value(gimli::DW_AT_specification) {
        Some(AttributeValue::UnitRef(o)) => o.to_debug_info_offset(&unit.header),
        Some(AttributeValue::DebugInfoRef(o)) => Some(o),
        _ => None,
    };
    let name = string(entry.attr_value(gimli::DW_AT_name));
    if let (Some(spec), 0) = (spec, depth) {
        return name_kind(dwarf, starts, parsed, spec, 1, classify);
    }
    Ok(name.and_then(|n| {
        if n.starts_with("catch_unwind") || n.starts_with("do_call") {
            // std's `catch_unwind` and its `do_call`, which hold a
            // goroutine's closure (inlined into `Packet::run`), are entry
            // frames as in `symbols`.
            Some(Kind::Entry)
        } else {
            // Otherwise only the allocator shims' bare names are telling.
            Some(classify(&n)).filter(|&k| k == Kind::Alloc)
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_kinds_by_where_the_file_lives() {
        let gort = env!("CARGO_MANIFEST_DIR");
        assert_eq!(file_kind(&format!("{gort}/src/sched.rs")), Kind::Runtime);
        // tests/lto builds its program inside gort's directory: the
        // program's code is the program's (it was classified as gort's,
        // and so never preempted by signal).
        assert_eq!(
            file_kind(&format!("{gort}/target/lto-println/src/main.rs")),
            Kind::User
        );
        assert_eq!(
            file_kind(
                "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/io/stdio.rs"
            ),
            Kind::Std
        );
        assert_eq!(
            file_kind(
                "/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/num/mod.rs"
            ),
            Kind::User
        );
        assert_eq!(file_kind("/home/u/app/src/main.rs"), Kind::User);
    }
}
