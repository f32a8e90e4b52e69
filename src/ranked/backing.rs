//! Read-only arrays that live either on the heap or in a mapped stored file.
//!
//! The ranked index's large parts (postings, documents, the term table) are flat arrays
//! of little-endian integers. Built in memory they are owned vectors; loaded from the
//! stored file they are read in place from a shared read-only mapping, so that their
//! bytes are page cache (shared by every process mapping the file, and given back by
//! the kernel under pressure) rather than heap. Either way they are behind an `Arc`:
//! cloning an array, as taking a snapshot to store does, costs nothing.

use std::ops::Range;
use std::sync::Arc;

/// Plain old data: any bit pattern is a value, no padding, fixed little-endian encoding.
///
/// # Safety
/// An implementor must have no padding bytes and no invalid bit patterns, and
/// [`Plain::from_le`] must read exactly `size_of::<Self>()` bytes.
pub unsafe trait Plain: Copy + Send + Sync + 'static {
    /// The value encoded little-endian in `b` (`size_of::<Self>()` bytes).
    fn from_le(b: &[u8]) -> Self;
    /// Append the value's little-endian encoding to `out`.
    fn put_le(&self, out: &mut Vec<u8>);
}

// SAFETY: u8 and u32 have no padding and every bit pattern is a value.
unsafe impl Plain for u8 {
    fn from_le(b: &[u8]) -> Self {
        b[0]
    }
    fn put_le(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

// SAFETY: as above.
unsafe impl Plain for u32 {
    fn from_le(b: &[u8]) -> Self {
        u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
    }
    fn put_le(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

// A tuple's layout is not specified by the language; these checks make the build fail
// on a compiler that lays `(u32, u32)` out otherwise than as two packed `u32`s, the
// layout the stored file has.
const _: () = {
    assert!(size_of::<(u32, u32)>() == 8);
    assert!(align_of::<(u32, u32)>() == 4);
    assert!(std::mem::offset_of!((u32, u32), 0) == 0);
    assert!(std::mem::offset_of!((u32, u32), 1) == 4);
};

// SAFETY: two u32s at offsets 0 and 4 of 8 bytes (checked above): no padding, every bit
// pattern a value.
unsafe impl Plain for (u32, u32) {
    fn from_le(b: &[u8]) -> Self {
        (
            <u32 as Plain>::from_le(&b[..4]),
            <u32 as Plain>::from_le(&b[4..8]),
        )
    }
    fn put_le(&self, out: &mut Vec<u8>) {
        self.0.put_le(out);
        self.1.put_le(out);
    }
}

/// A stored file mapped read-only (see [`crate::mapped`]).
pub use crate::mapped::Mapping as Mapped;

/// Where an array's bytes are.
#[derive(Debug, Clone)]
enum Repr<T> {
    Owned(Arc<Vec<T>>),
    /// `len` values from byte `at` of the mapping; `at` is aligned for `T` (checked
    /// when made).
    Mapped {
        map: Arc<Mapped>,
        at: usize,
        len: usize,
    },
}

/// A read-only array of `T`: owned, or read in place from a mapped file.
#[derive(Debug, Clone)]
pub struct Backing<T: Plain> {
    repr: Repr<T>,
}

impl<T: Plain> Default for Backing<T> {
    fn default() -> Self {
        Self::owned(Vec::new())
    }
}

impl<T: Plain> From<Vec<T>> for Backing<T> {
    fn from(v: Vec<T>) -> Self {
        Self::owned(v)
    }
}

impl<T: Plain> Backing<T> {
    /// An array on the heap.
    pub fn owned(v: Vec<T>) -> Self {
        Self {
            repr: Repr::Owned(Arc::new(v)),
        }
    }

    /// The values stored little-endian in `bytes` of `map`: read in place when the
    /// target is little-endian and the bytes are aligned for `T`, else decoded onto the
    /// heap. `None` when the range is out of the mapping or not a whole number of
    /// values.
    pub fn in_map(map: &Arc<Mapped>, bytes: Range<usize>) -> Option<Self> {
        let all = map.bytes();
        let b = all.get(bytes.clone())?;
        let size = size_of::<T>();
        if !b.len().is_multiple_of(size) {
            return None;
        }
        let aligned = (b.as_ptr() as usize).is_multiple_of(align_of::<T>());
        if cfg!(target_endian = "little") && aligned {
            Some(Self {
                repr: Repr::Mapped {
                    map: map.clone(),
                    at: bytes.start,
                    len: b.len() / size,
                },
            })
        } else {
            Self::decode(b)
        }
    }

    /// The values stored little-endian in `b`, decoded onto the heap. `None` when `b`
    /// is not a whole number of values.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let size = size_of::<T>();
        if !b.len().is_multiple_of(size) {
            return None;
        }
        Some(Self::owned(b.chunks_exact(size).map(T::from_le).collect()))
    }

    /// Whether the values are read from a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.repr, Repr::Mapped { .. })
    }

    /// Let go of the mapped pages holding values `range` (see
    /// [`Mapped::release_range`]); nothing to do for values on the heap.
    pub fn release(&self, range: Range<usize>) {
        if let Repr::Mapped { map, at, .. } = &self.repr {
            let size = size_of::<T>();
            map.release_range(at + range.start * size..at + range.end * size);
        }
    }

    /// Bytes of heap the values take (none when mapped).
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Owned(v) => v.capacity() * size_of::<T>(),
            Repr::Mapped { .. } => 0,
        }
    }

    /// Bytes of the mapped file the values take (none when owned).
    pub fn mapped_bytes(&self) -> usize {
        match &self.repr {
            Repr::Owned(_) => 0,
            Repr::Mapped { len, .. } => len * size_of::<T>(),
        }
    }
}

impl<T: Plain> std::ops::Deref for Backing<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.repr {
            Repr::Owned(v) => v,
            Repr::Mapped { map, at, len } => {
                let b = &map.bytes()[*at..*at + len * size_of::<T>()];
                // SAFETY: `in_map` made this only for a little-endian target, with `b`
                // in the mapping, aligned for `T`, and `len` values long; `T: Plain`
                // has no padding and no invalid bit patterns, so the bytes are `len`
                // valid values of `T`, encoded as the stored file's little-endian
                // integers. The mapping is read-only and lives as long as `map`, which
                // `self` holds.
                unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<T>(), *len) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn mapped_and_decoded_arrays_read_the_same_values() {
        let mut bytes = Vec::new();
        for v in [(1u32, 2u32), (0xdead_beef, 7), (u32::MAX, 0)] {
            v.put_le(&mut bytes);
        }
        let mut f = tempfile::tempfile().unwrap();
        // One byte in front, so that the values can be read aligned and unaligned.
        f.write_all(&[0; 8]).unwrap();
        f.write_all(&bytes).unwrap();
        f.write_all(&[0]).unwrap();
        let map = Mapped::new(&f).unwrap();
        let aligned = Backing::<(u32, u32)>::in_map(&map, 8..8 + bytes.len()).unwrap();
        assert_eq!(aligned.is_mapped(), cfg!(target_endian = "little"));
        assert_eq!(&aligned[..], &[(1, 2), (0xdead_beef, 7), (u32::MAX, 0)]);
        assert_eq!(
            aligned.heap_bytes(),
            if aligned.is_mapped() { 0 } else { 24 }
        );
        // Misaligned by one byte: decoded onto the heap, same values.
        let mut g = tempfile::tempfile().unwrap();
        g.write_all(&[0; 9]).unwrap();
        g.write_all(&bytes).unwrap();
        let map = Mapped::new(&g).unwrap();
        let odd = Backing::<(u32, u32)>::in_map(&map, 9..9 + bytes.len()).unwrap();
        assert!(!odd.is_mapped());
        assert_eq!(&odd[..], &aligned[..]);
        assert!(Backing::<(u32, u32)>::in_map(&map, 9..9 + bytes.len() + 1).is_none());
        assert!(Backing::<u32>::in_map(&map, 9..15).is_none());
        assert_eq!(&Backing::<u32>::decode(&bytes[..8]).unwrap()[..], &[1, 2]);
    }
}
