//! Stencils: bytes at fixed distances that every match of a pattern must show.
//!
//! The trigram index cannot narrow a pattern such as `[A-Z]{4}_[A-Z]{4}_[A-Z]{4}`: its
//! classes are too large to enumerate and its literals shorter than a trigram, so the
//! search reads every file in path order until its answer is certain. A stencil makes
//! that reading cheap. From the pattern it takes a stretch of fixed width (here all 14
//! bytes: `_` at offsets 4 and 9, an upper-case letter at the others) and probes a few
//! of its offsets, the ones least likely to hold by chance. No match can lie on a line
//! without a position where every probed byte is in its set: the search skips a file
//! with no such position, and in the others runs the regex only on lines holding one.
//!
//! The probes run 32 positions at a time where the processor has AVX2, 16 with SSE2
//! (which every x86-64 processor has), one at a time elsewhere. When the rarest probe
//! is one rare byte (under `RARE_LEAD` of source text), `memchr` finds where it holds
//! and the other probes are checked there, until that byte turns out to be common in
//! the text (more than one in `DENSE` bytes).
//!
//! No stencil is made when no stretch would rule out much (`MAX_CHANCE`), or when a
//! stretch holds two literal bytes in a row: the regex engine finds such a pair itself
//! at least as fast. A class with members outside ASCII (`\d`, `\w`, `.`, a letter class
//! searched case-insensitively) is counted as its ASCII members, one byte wide; the
//! stencil then holds only for text that is all ASCII ([`Stencil::applies_to`]).
//!
//! A stencil is only ever a necessary condition: it may pass a file with no match,
//! never rule out one with a match. Files that `grep-searcher` transcodes before
//! searching (those starting with a UTF-16 byte-order mark) are always passed.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Longest fixed-width stretch kept; a longer one is cut into stretches of this length,
/// each of which every match still holds.
const MAX_STRETCH: usize = 64;
/// Most offsets probed. Each costs a load and a comparison or two per byte searched.
const MAX_PROBES: usize = 4;
/// Most byte ranges a probed set may be made of (`[A-Za-z_]` is three).
const MAX_RANGES: usize = 3;
/// A stencil whose probes hold together by chance at more than this share of positions
/// is not used: it would pass nearly every file.
const MAX_CHANCE: f64 = 1e-3;

/// Past this many bytes per occurrence of the rarest probe's byte, and after [`DENSE_AFTER`]
/// of them, finding each with `memchr` costs more than probing every position.
const DENSE: usize = 32;
const DENSE_AFTER: usize = 64;

/// The most common a one-byte first probe may be for `memchr` to find it: past this
/// share of bytes, probing every position a vector at a time is faster.
const RARE_LEAD: f64 = 0.004;

/// A set of bytes.
type ByteSet = [bool; 256];

/// Bytes at fixed offsets from a position, each in its set, that every match of a
/// pattern shows: see the module documentation.
#[derive(Clone, Debug)]
pub struct Stencil {
    probes: Vec<Probe>,
    /// The first probe's offset and byte, when it is one byte rare enough for `memchr`.
    lead: Option<(usize, u8)>,
    /// The largest probed offset.
    reach: usize,
    /// Whether the stencil holds only for text that is all ASCII: some class of the
    /// pattern has members outside ASCII (`\d`, `\w`, `.`, a letter class searched
    /// case-insensitively), which the stencil counts as one byte wide and leaves out.
    /// Text with a byte outside ASCII may hold a match with no stencil position.
    ascii_only: bool,
}

/// One probed offset and the byte ranges (inclusive) its byte must fall in.
#[derive(Clone, Debug)]
struct Probe {
    offset: usize,
    ranges: Vec<(u8, u8)>,
}

impl Probe {
    fn holds(&self, b: u8) -> bool {
        self.ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&b))
    }
}

impl Stencil {
    /// The stencil of `pattern` (a regex when `regex`, else a literal), parsed as the
    /// line search parses it; `None` when the pattern has no stretch of fixed width that
    /// would rule out many files (or does not parse).
    pub fn of(pattern: &str, regex: bool, case_insensitive: bool) -> Option<Stencil> {
        Self::of_hir(&super::plan::parse(pattern, regex, case_insensitive)?)
    }

    /// [`Self::of`] a pattern already parsed (by [`super::plan::parse`]).
    pub fn of_hir(hir: &Hir) -> Option<Stencil> {
        let mut stretches = Stretches::default();
        walk(hir, &mut stretches);
        stretches.gap();
        // Two bytes in a row that every match holds are a literal the regex engine finds
        // itself, as fast as any probe (`memchr`'s pair search); then the stencil would
        // only add its own pass.
        let single = |set: &ByteSet| set.iter().filter(|&&b| b).count() == 1;
        if stretches
            .done
            .iter()
            .any(|st| st.windows(2).any(|w| single(&w[0]) && single(&w[1])))
        {
            return None;
        }
        stretches
            .done
            .iter()
            .filter_map(|s| choose(s, stretches.ascii_only))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .filter(|(chance, _)| *chance <= MAX_CHANCE)
            .map(|(_, stencil)| stencil)
    }

    /// Whether some position of `hay` shows every probed byte, so that the file may hold
    /// a match. `false` proves it holds none.
    pub fn may_match(&self, hay: &[u8]) -> bool {
        if hay.starts_with(b"\xFF\xFE") || hay.starts_with(b"\xFE\xFF") {
            return true;
        }
        self.first_position(hay).is_some() || !self.applies_to(hay)
    }

    /// Whether the stencil's positions are the only places a match of the pattern can be
    /// in `hay`: always, unless the stencil holds only for ASCII text and `hay` is not.
    pub fn applies_to(&self, hay: &[u8]) -> bool {
        !self.ascii_only || hay.is_ascii()
    }

    /// The first position of `hay` where every probed byte is in its set: where a
    /// stretch of a match may start. `None` proves `hay` holds no match, when the
    /// stencil [applies to](Self::applies_to) `hay`.
    pub fn first_position(&self, hay: &[u8]) -> Option<usize> {
        match self.lead {
            Some((offset, byte)) => self.first_position_led(hay, offset, byte),
            None => self.first_position_wide(hay, 0),
        }
    }

    /// [`Self::first_position`] when the rarest probe is the one byte `byte` at `offset`:
    /// each occurrence of it found with `memchr`, the other probes checked there, until
    /// the byte turns out to be common.
    fn first_position_led(&self, hay: &[u8], offset: usize, byte: u8) -> Option<usize> {
        let end = hay.len().checked_sub(self.reach)?;
        let mut at = offset;
        let mut seen = 0;
        while let Some(i) = memchr::memchr(byte, hay.get(at..)?) {
            let s = at + i - offset;
            if s >= end {
                return None;
            }
            if self.probes[1..].iter().all(|p| p.holds(hay[s + p.offset])) {
                return Some(s);
            }
            at += i + 1;
            seen += 1;
            if seen >= DENSE_AFTER && (at - offset) < seen * DENSE {
                // Every position before `at - offset` has been ruled out.
                return self.first_position_wide(hay, at - offset);
            }
        }
        None
    }

    /// The first position at or after `from` where every probed byte is in its set,
    /// 32 or 16 positions at a time where the processor allows.
    fn first_position_wide(&self, hay: &[u8], from: usize) -> Option<usize> {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the processor has AVX2, checked just above.
                unsafe { self.first_position_avx2(hay, from) }
            } else {
                // SAFETY: this build's target has SSE2 (every x86-64 processor does).
                unsafe { self.first_position_sse2(hay, from) }
            }
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            self.first_position_from(hay, from)
        }
    }

    /// The first position at or after `from` where every probed byte is in its set, one
    /// position at a time.
    fn first_position_from(&self, hay: &[u8], from: usize) -> Option<usize> {
        let end = hay.len().checked_sub(self.reach)?;
        (from..end).find(|&s| self.probes.iter().all(|p| p.holds(hay[s + p.offset])))
    }
}

/// [`Stencil::first_position_from`], as many positions at a time as a vector holds
/// bytes: the body of `first_position_sse2` and `first_position_avx2`, written once.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
macro_rules! wide_probe {
    ($name:ident, $feature:literal, $width:literal, $load:ident, $set1:ident,
     $sub:ident, $min:ident, $eq:ident, $mask:ident, $full:expr) => {
        impl Stencil {
            #[doc = concat!("[`Stencil::first_position_from`], ", stringify!($width), " positions at a time (", $feature, ").")]
            #[target_feature(enable = $feature)]
            fn $name(&self, hay: &[u8], from: usize) -> Option<usize> {
                use std::arch::x86_64::{$eq, $load, $mask, $min, $set1, $sub};
                // Per probe and range: the range's low byte and its width, in every lane.
                // A byte b is in lo..=lo+width when b - lo (wrapping) is at most width,
                // that is when min(b - lo, width) == b - lo.
                let zero = $set1(0);
                let mut lanes = [(0usize, 0usize, [(zero, zero); MAX_RANGES]); MAX_PROBES];
                for (lane, p) in lanes.iter_mut().zip(&self.probes) {
                    lane.0 = p.offset;
                    lane.1 = p.ranges.len();
                    for (r, &(lo, hi)) in lane.2.iter_mut().zip(&p.ranges) {
                        *r = ($set1(lo as i8), $set1((hi - lo) as i8));
                    }
                }
                let lanes = &lanes[..self.probes.len()];
                let mut s = from;
                while s + self.reach + $width <= hay.len() {
                    let mut all = $full;
                    for (offset, n, ranges) in lanes {
                        // SAFETY: s + offset + width <= s + reach + width <= hay.len(),
                        // so the bytes read are inside `hay`; the load needs no alignment.
                        let v = unsafe { $load(hay.as_ptr().add(s + offset).cast()) };
                        let mut inside = 0;
                        for &(lo, width) in &ranges[..*n] {
                            let x = $sub(v, lo);
                            inside |= $mask($eq($min(x, width), x));
                        }
                        all &= inside;
                        if all == 0 {
                            break;
                        }
                    }
                    if all != 0 {
                        return Some(s + all.trailing_zeros() as usize);
                    }
                    s += $width;
                }
                self.first_position_from(hay, s)
            }
        }
    };
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
wide_probe!(
    first_position_sse2,
    "sse2",
    16,
    _mm_loadu_si128,
    _mm_set1_epi8,
    _mm_sub_epi8,
    _mm_min_epu8,
    _mm_cmpeq_epi8,
    _mm_movemask_epi8,
    0xFFFF_i32
);
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
wide_probe!(
    first_position_avx2,
    "avx2",
    32,
    _mm256_loadu_si256,
    _mm256_set1_epi8,
    _mm256_sub_epi8,
    _mm256_min_epu8,
    _mm256_cmpeq_epi8,
    _mm256_movemask_epi8,
    -1_i32
);

/// The fixed-width stretches of a pattern, built while walking it: `current` grows while
/// each next part has a known width and is cut (`gap`) where a part of varying width
/// comes.
#[derive(Default)]
struct Stretches {
    current: Vec<ByteSet>,
    done: Vec<Vec<ByteSet>>,
    /// A class's members outside ASCII were left out somewhere in the pattern.
    ascii_only: bool,
}

impl Stretches {
    fn push(&mut self, sets: &[ByteSet]) {
        for set in sets {
            if self.current.len() == MAX_STRETCH {
                self.gap();
            }
            self.current.push(*set);
        }
    }

    fn gap(&mut self) {
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
    }
}

fn single(b: u8) -> ByteSet {
    let mut set = [false; 256];
    set[b as usize] = true;
    set
}

/// The bytes a class matches, when each of its members is one byte long. A Unicode
/// class's members outside ASCII are left out and `ascii_only` set: the set is then
/// right only for text without them, which is all ASCII (see [`Stencil::ascii_only`]).
fn class_set(class: &Class, ascii_only: &mut bool) -> ByteSet {
    let mut set = [false; 256];
    match class {
        Class::Bytes(c) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[b as usize] = true;
                }
            }
        }
        Class::Unicode(c) => {
            for r in c.ranges() {
                let (start, end) = (u32::from(r.start()), u32::from(r.end()));
                if end > 0x7F {
                    // Members of two or more bytes, which only text outside ASCII holds.
                    *ascii_only = true;
                }
                for b in start..=end.min(0x7F) {
                    set[b as usize] = true;
                }
            }
        }
    }
    set
}

/// Add `hir` to the stretches: the parts of known width extend the current stretch,
/// the others cut it.
fn walk(hir: &Hir, out: &mut Stretches) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => {
            for &b in lit.0.iter() {
                out.push(&[single(b)]);
            }
        }
        HirKind::Class(c) => {
            let set = class_set(c, &mut out.ascii_only);
            out.push(&[set]);
        }
        HirKind::Capture(c) => walk(&c.sub, out),
        HirKind::Concat(parts) => {
            for part in parts {
                walk(part, out);
            }
        }
        HirKind::Repetition(r) => {
            if r.min == 0 {
                out.gap();
                return;
            }
            match fixed(&r.sub, &mut out.ascii_only) {
                Some(sets) if !sets.is_empty() => {
                    // The first `min` copies follow each other at known offsets.
                    let copies = (r.min as usize).min(MAX_STRETCH.div_ceil(sets.len()));
                    for _ in 0..copies {
                        out.push(&sets);
                    }
                    if r.max != Some(r.min) || copies < r.min as usize {
                        out.gap();
                    }
                }
                Some(_) => {}
                None => {
                    // The first copy starts here; where it ends is not known.
                    walk(&r.sub, out);
                    out.gap();
                }
            }
        }
        HirKind::Alternation(_) => match fixed(hir, &mut out.ascii_only) {
            Some(sets) => out.push(&sets),
            None => out.gap(),
        },
    }
}

/// The sets of `hir`, one per byte, when every match of it has the same length (at most
/// [`MAX_STRETCH`]).
fn fixed(hir: &Hir, ascii_only: &mut bool) -> Option<Vec<ByteSet>> {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Some(Vec::new()),
        HirKind::Literal(lit) => {
            (lit.0.len() <= MAX_STRETCH).then(|| lit.0.iter().map(|&b| single(b)).collect())
        }
        HirKind::Class(c) => Some(vec![class_set(c, ascii_only)]),
        HirKind::Capture(c) => fixed(&c.sub, ascii_only),
        HirKind::Concat(parts) => {
            let mut sets = Vec::new();
            for part in parts {
                sets.extend(fixed(part, ascii_only)?);
                if sets.len() > MAX_STRETCH {
                    return None;
                }
            }
            Some(sets)
        }
        HirKind::Repetition(r) => {
            if r.max != Some(r.min) {
                return None;
            }
            let sets = fixed(&r.sub, ascii_only)?;
            let len = sets.len().checked_mul(r.min as usize)?;
            (len <= MAX_STRETCH).then(|| sets.repeat(r.min as usize))
        }
        HirKind::Alternation(alternatives) => {
            let mut union: Option<Vec<ByteSet>> = None;
            for alternative in alternatives {
                let sets = fixed(alternative, ascii_only)?;
                match &mut union {
                    None => union = Some(sets),
                    Some(u) if u.len() == sets.len() => {
                        for (a, b) in u.iter_mut().zip(&sets) {
                            for (x, y) in a.iter_mut().zip(b) {
                                *x |= *y;
                            }
                        }
                    }
                    Some(_) => return None,
                }
            }
            union
        }
    }
}

/// A rough share of the bytes of source code that are `b`, for choosing the probes least
/// likely to hold by chance. Only the order of magnitude matters.
fn share(b: u8) -> f64 {
    match b {
        b' ' => 0.15,
        b'\n' | b'\t' => 0.03,
        b'a'..=b'z' => 0.02,
        b'A'..=b'Z' | b'0'..=b'9' => 0.004,
        b'_' => 0.015,
        b'(' | b')' | b'{' | b'}' | b';' | b',' | b'.' | b'=' | b'*' | b'/' | b'-' | b'"'
        | b'\'' | b':' | b'<' | b'>' | b'&' | b'+' | b'#' | b'[' | b']' => 0.008,
        0x21..=0x7E => 0.002,
        0x80..=0xFF => 0.0005,
        _ => 0.0001,
    }
}

/// The set's bytes as inclusive ranges, when there are at most [`MAX_RANGES`].
fn ranges(set: &ByteSet) -> Option<Vec<(u8, u8)>> {
    let mut out: Vec<(u8, u8)> = Vec::new();
    for b in 0..=255u8 {
        if !set[b as usize] {
            continue;
        }
        match out.last_mut() {
            Some((_, hi)) if *hi as usize + 1 == b as usize => *hi = b,
            _ => {
                if out.len() == MAX_RANGES {
                    return None;
                }
                out.push((b, b));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The best probes of one stretch and the share of positions at which they would all
/// hold by chance (`ascii_only`: see [`Stencil::ascii_only`]).
fn choose(stretch: &[ByteSet], ascii_only: bool) -> Option<(f64, Stencil)> {
    let mut candidates: Vec<(f64, Probe)> = stretch
        .iter()
        .enumerate()
        .filter_map(|(offset, set)| {
            let chance: f64 = (0..=255u8).filter(|&b| set[b as usize]).map(share).sum();
            let ranges = ranges(set)?;
            (chance < 0.5).then_some((chance, Probe { offset, ranges }))
        })
        .collect();
    candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.offset.cmp(&b.1.offset)));
    candidates.truncate(MAX_PROBES);
    if candidates.is_empty() {
        return None;
    }
    let chance = candidates.iter().map(|c| c.0).product();
    // Kept rarest first: the probing of a block stops at the first probe that holds
    // nowhere in it.
    let probes: Vec<Probe> = candidates.into_iter().map(|(_, probe)| probe).collect();
    let reach = probes.iter().map(|p| p.offset).max().unwrap_or(0);
    let lead = match probes[0].ranges[..] {
        [(lo, hi)] if lo == hi && share(lo) <= RARE_LEAD => Some((probes[0].offset, lo)),
        _ => None,
    };
    Some((
        chance,
        Stencil {
            probes,
            lead,
            reach,
            ascii_only,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so failures repeat.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick(&mut self, from: &[u8]) -> u8 {
            from[self.next() as usize % from.len()]
        }
    }

    fn offsets(s: &Stencil) -> Vec<usize> {
        let mut offsets: Vec<usize> = s.probes.iter().map(|p| p.offset).collect();
        offsets.sort();
        offsets
    }

    fn ranges_at(s: &Stencil, offset: usize) -> Vec<(u8, u8)> {
        let probe = s.probes.iter().find(|p| p.offset == offset);
        probe.expect("a probe there").ranges.clone()
    }

    #[test]
    fn a_fixed_width_pattern_probes_its_rarest_bytes() {
        let s = Stencil::of("[A-Z]{4}_[A-Z]{4}_[A-Z]{4}_[A-Z]{4}", true, false).expect("a stencil");
        // The three underscores and one upper-case letter.
        assert_eq!(offsets(&s), vec![0, 4, 9, 14]);
        assert_eq!(ranges_at(&s, 0), vec![(b'A', b'Z')]);
        assert_eq!(ranges_at(&s, 4), vec![(b'_', b'_')]);
        // Probed rarest first.
        assert_eq!(s.probes[0].offset, 4);
        assert!(s.may_match(b"x CONFIG_ACPI_PROC_EVENT y"));
        assert!(!s.may_match(b"lower_case_name_here and CONFIG_ACPI_X"));
        assert!(!s.ascii_only);
        // Case-insensitive, [A-J] is two ranges.
        let s = Stencil::of("[A-J]{4}_[A-J]{4}", true, true).expect("a stencil");
        assert_eq!(ranges_at(&s, 0), vec![(b'A', b'J'), (b'a', b'j')]);
        assert!(s.may_match(b"abcd_efgh"));
        assert!(!s.ascii_only);
        // [A-Z] case-insensitively also holds the Kelvin sign (three bytes) and the long
        // s (two): the stencil counts the class as one byte, so it holds for ASCII text
        // only, and text with a byte outside ASCII always passes.
        let s = Stencil::of("[A-Z]{4}_[A-Z]{4}_[A-Z]{4}", true, true).expect("a stencil");
        assert!(s.ascii_only);
        assert!(s.may_match(b"abcd_EFGH_ijkl"));
        assert!(!s.may_match(b"abcd_EFGH ijkl"));
        assert!(s.may_match("\u{212A}bcd_EFGH_ijkl".as_bytes()));
        assert!(s.may_match("caf\u{e9} and nothing else".as_bytes()));
        // `\d` holds digits of other scripts: the same.
        let s = Stencil::of(r"\d{4}-\d{2}-\d{2}", true, false).expect("a stencil");
        assert!(s.ascii_only);
        assert!(s.may_match(b"on 2024-01-31"));
        assert!(!s.may_match(b"on 2024/01/31"));
        assert!(
            s.may_match("on \u{664}\u{660}\u{662}\u{664}-\u{660}\u{661}-\u{663}\u{661}".as_bytes())
        );
    }

    #[test]
    fn parts_of_varying_width_cut_the_stretch() {
        // `+`, `*` and `?` vary in count, and alternatives of different lengths vary in
        // width: each cuts the stretch. The best stretch that remains is the one probed.
        let s = Stencil::of(r"\w+:\d*[(][a-z][)]x?\.", true, false).expect("a stencil");
        assert_eq!(offsets(&s), vec![0, 2]);
        assert_eq!(ranges_at(&s, 0), vec![(b'(', b'(')]);
        let s = Stencil::of(r"(a|bc)x(ab|cd);[0-9];", true, false).expect("a stencil");
        assert_eq!(offsets(&s), vec![0, 1, 3, 5]);
        assert!(s.may_match(b"zz xcb;5; yy"));
        assert!(!s.may_match(b"zz xcb;; ;yy"));
        // A stretch longer than the limit is cut, not lost.
        let long = "[A-Z]_".repeat(MAX_STRETCH);
        assert!(Stencil::of(&long, true, false).is_some());
    }

    #[test]
    fn patterns_that_would_pass_most_files_get_no_stencil() {
        for p in [r"\w+", "[a-z]{3}", ".", "a|bc", r"(?i)k", "^$", "[^x]{4}"] {
            assert!(Stencil::of(p, true, false).is_none(), "{p}");
        }
        assert!(Stencil::of("a(", true, false).is_none(), "does not parse");
    }

    #[test]
    fn a_pattern_with_two_literal_bytes_in_a_row_is_left_to_the_regex() {
        for p in [r"\)\?$", "[a-z]{2};;", r"0x[0-9a-f]{8}", "->[a-z]"] {
            assert!(Stencil::of(p, true, false).is_none(), "{p}");
        }
        assert!(Stencil::of("_(", false, false).is_none());
        // One literal byte between classes is not enough for the regex's own search.
        assert!(Stencil::of(r"[a-z]\?[;)]", true, false).is_some());
    }

    #[test]
    fn files_starting_with_a_utf16_mark_always_pass() {
        let s = Stencil::of("_[a-z]_[a-z]_", true, false).expect("a stencil");
        assert!(!s.may_match(b"nothing here"));
        assert!(s.may_match(b"\xFF\xFEn\0o\0"));
    }

    /// The sixteen-at-a-time probe finds the same first position as the one-at-a-time
    /// one, on texts where positions near every block boundary and the end hold.
    #[test]
    fn the_wide_probe_finds_what_the_narrow_one_finds() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let patterns = [
            "[A-Z]{4}_[A-Z]{4}_[A-Z]{4}",
            "_.;[;_]_",
            "(?i)a_x-[;-]",
            r"[\x00-\x03]_[;x]",
            "[a-c][x-z];",
            // A rare one-byte lead, found with `memchr`.
            "~[A-Z]_",
        ];
        // Weighted towards the probed bytes, so that positions hold often.
        let alphabet = b"AAAA____;;;--xx00aa~~~\x00\xFF";
        for p in patterns {
            let s = Stencil::of(p, true, false).unwrap_or_else(|| panic!("{p}"));
            let mut found = 0;
            // Long texts too, where the lead byte is common enough for the `memchr` path
            // to hand over to the wide probe part way.
            for len in (0..200).chain([1000, 3000, 6000]) {
                for _ in 0..20 {
                    let mut hay: Vec<u8> = (0..len).map(|_| rng.pick(alphabet)).collect();
                    if len > 200 {
                        // The probes hold only near the end, if at all.
                        for b in &mut hay[..len - 100] {
                            if !matches!(*b, b'_' | b';' | b'~') {
                                *b = b'x';
                            }
                        }
                    }
                    let first = s.first_position_from(&hay, 0);
                    found += usize::from(first.is_some());
                    assert_eq!(s.first_position(&hay), first, "{p} on {hay:?}");
                    assert_eq!(s.first_position_wide(&hay, 0), first, "{p} on {hay:?}");
                    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
                    {
                        // SAFETY: the target has SSE2.
                        let sse2 = unsafe { s.first_position_sse2(&hay, 0) };
                        assert_eq!(sse2, first, "SSE2: {p} on {hay:?}");
                        if std::arch::is_x86_feature_detected!("avx2") {
                            // SAFETY: the processor has AVX2, checked just above.
                            let avx2 = unsafe { s.first_position_avx2(&hay, 0) };
                            assert_eq!(avx2, first, "AVX2: {p} on {hay:?}");
                        }
                    }
                }
            }
            assert!(
                found > 20,
                "{p} held at only {found} texts: the check proved little"
            );
        }
    }

    /// A file a regex matches is never ruled out.
    #[test]
    fn every_file_with_a_match_passes() {
        let mut rng = Rng(7);
        let patterns = [
            "[A-Z]{2}_[A-Z]{2}",
            r"[ab]\.(b|c)_",
            "(?i)ab_cd",
            "x[0-9]{2}-",
            "((a_)|(b_)){2}[cd]",
            r"\b[A-Z]_[0-9]\b",
            "a?[bc]_[cd]",
            // Classes with members outside ASCII: the stencil holds for ASCII text only.
            r"\d_\d{2}",
            r"(?i)[a-c]_[a-c]{2}",
            r"\w-\w_.",
        ];
        // Letters and digits of two and three bytes too: `\d` holds `٣`, `(?i)k` holds
        // the Kelvin sign.
        let alphabet: Vec<String> = "aabbccddxyAABB___-.0119 \n٣٣\u{212A}é"
            .chars()
            .map(String::from)
            .collect();
        for p in patterns {
            let s = Stencil::of(p, true, false).unwrap_or_else(|| panic!("{p} has no stencil"));
            let re = regex::bytes::RegexBuilder::new(p)
                .multi_line(true)
                .build()
                .expect("compiles");
            let mut matched = 0;
            for _ in 0..30_000 {
                let len = rng.next() as usize % 120;
                let hay: Vec<u8> = (0..len)
                    .flat_map(|_| alphabet[rng.next() as usize % alphabet.len()].bytes())
                    .collect();
                if re.is_match(&hay) {
                    matched += 1;
                    assert!(s.may_match(&hay), "{p} matches {hay:?}");
                }
            }
            assert!(matched > 0, "{p} never matched: the check proved nothing");
        }
    }
}
