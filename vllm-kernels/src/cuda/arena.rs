//! One device buffer holding a step's small typed inputs (token ids, positions, slots, block
//! tables, lengths, sampling parameters), filled on the host and copied in one transfer.
//!
//! A layout assigns every section a fixed, 16-byte aligned byte offset from its capacity, so
//! the device address of a section never moves: CUDA graphs captured over the sections read
//! whatever the latest transfer put there. Sections hold plain numbers only ([`Pod`]).

use super::{CudaSlice, CudaStream};
use crate::error::{KernelError, Result};
use cudarc::driver::{CudaView, DeviceRepr};
use std::marker::PhantomData;
use std::sync::Arc;

/// Plain numbers any byte pattern of which is a valid value.
pub trait Pod: DeviceRepr + Copy + Default + 'static {
    fn write_le(self, out: &mut [u8]);
}
macro_rules! pod {
    ($($t:ty),*) => {$(
        impl Pod for $t {
            fn write_le(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
pod!(i32, i64, u64, f32);

/// A typed section: byte offset and capacity in elements.
#[derive(Debug)]
pub struct Section<T> {
    offset: usize,
    cap: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Section<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Section<T> {}

impl<T: Pod> Section<T> {
    /// Byte just past the first `len` elements (what a transfer must cover to include them).
    pub fn end_of(&self, len: usize) -> usize {
        self.offset + len * std::mem::size_of::<T>()
    }
}

/// Assigns sections; [`ArenaLayout::finish`] gives the total size.
#[derive(Debug, Default)]
pub struct ArenaLayout {
    bytes: usize,
}

impl ArenaLayout {
    pub fn section<T: Pod>(&mut self, cap: usize) -> Section<T> {
        let offset = self.bytes.next_multiple_of(16);
        self.bytes = offset + cap * std::mem::size_of::<T>();
        Section {
            offset,
            cap,
            _t: PhantomData,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes.next_multiple_of(16)
    }
}

/// The host staging bytes and their device twin.
#[derive(Debug)]
pub struct InputArena {
    host: Vec<u8>,
    device: CudaSlice<u8>,
    /// Bytes written since the last upload (the transfer covers `0..dirty`).
    dirty: usize,
}

impl InputArena {
    pub fn new(stream: &Arc<CudaStream>, layout: &ArenaLayout) -> Result<Self> {
        let n = layout.bytes().max(16);
        Ok(Self {
            host: vec![0; n],
            device: stream.alloc_zeros::<u8>(n)?,
            dirty: 0,
        })
    }

    /// Writes `values` at the start of `s` (host side); fails when they exceed its capacity.
    pub fn put<T: Pod>(&mut self, s: Section<T>, values: &[T]) -> Result<()> {
        if values.len() > s.cap {
            return Err(KernelError::BufferTooSmall {
                op: "input_arena",
                name: "section",
                len: s.cap,
                need: values.len(),
            });
        }
        let w = std::mem::size_of::<T>();
        for (i, &v) in values.iter().enumerate() {
            let at = s.offset + i * w;
            v.write_le(&mut self.host[at..at + w]);
        }
        self.dirty = self.dirty.max(s.end_of(values.len()));
        Ok(())
    }

    /// Copies the written bytes to the device in one transfer (stream-ordered).
    pub fn upload(&mut self, stream: &Arc<CudaStream>) -> Result<()> {
        if self.dirty == 0 {
            return Ok(());
        }
        let n = self.dirty;
        let mut dst = self.device.slice_mut(0..n);
        stream.memcpy_htod(&self.host[..n], &mut dst)?;
        self.dirty = 0;
        Ok(())
    }

    /// The device view of the first `len` elements of `s`.
    pub fn view<T: Pod>(&self, s: Section<T>, len: usize) -> Result<CudaView<'_, T>> {
        if len > s.cap {
            return Err(KernelError::BufferTooSmall {
                op: "input_arena",
                name: "section",
                len: s.cap,
                need: len,
            });
        }
        let bytes = self.device.slice(s.offset..s.end_of(s.cap));
        // SAFETY: the section lies inside the allocation (layout arithmetic), starts 16-byte
        // aligned in a 256-byte aligned allocation, and T is a Pod type for which every byte
        // pattern is a valid value; the view borrows `self.device`.
        let typed = unsafe { bytes.transmute::<T>(s.cap) };
        let typed = typed.ok_or_else(|| KernelError::invalid("input_arena", "section overflow"))?;
        Ok(typed.slice(0..len))
    }
}
