//! One device buffer holding a step's small typed inputs (token ids, positions, slots, block
//! tables, lengths, sampling parameters), filled on the host and copied in one transfer.
//!
//! A layout assigns every section a fixed, 16-byte aligned byte offset from its capacity, so
//! the device address of a section never moves: CUDA graphs captured over the sections read
//! whatever the latest transfer put there. Sections hold plain numbers only ([`Pod`]).
//!
//! The host staging is page-locked, so an upload is a true asynchronous copy that never waits
//! for the kernels queued before it (a copy from pageable memory may): the host can pack the
//! next step while the GPU runs this one. An event recorded after each upload guards the
//! staging: the first write after an upload waits for that copy to finish reading it.

use super::{CudaSlice, CudaStream};
use crate::error::{KernelError, Result};
use cudarc::driver::{
    CudaContext, CudaEvent, CudaView, DevicePtrMut, DeviceRepr, PinnedHostSlice, ValidAsZeroBits,
    result,
};
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

/// Assigns sections; [`ArenaLayout::bytes`] gives the total size.
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

/// Page-locked host memory of `len` zeroed elements (for asynchronous copies both ways).
pub fn pinned_zeroed<T: DeviceRepr + ValidAsZeroBits + Copy>(
    ctx: &Arc<CudaContext>,
    len: usize,
) -> Result<PinnedHostSlice<T>> {
    // SAFETY: flags 0 asks for plain page-locked memory (readable from the host, unlike
    // write-combined); it is uninitialised until zeroed below, before any reference to it.
    let mut p = unsafe { ctx.alloc_pinned_with_flags::<T>(len.max(1), 0)? };
    let n = p.len();
    // SAFETY: the pointer addresses the `n` elements just allocated (`as_mut_ptr` only waits
    // on the slice's never-recorded event); all-zero bytes are a valid `T` (ValidAsZeroBits).
    unsafe { std::ptr::write_bytes(p.as_mut_ptr()?, 0, n) };
    Ok(p)
}

/// The host staging bytes (page-locked) and their device twin.
#[derive(Debug)]
pub struct InputArena {
    host: PinnedHostSlice<u8>,
    device: CudaSlice<u8>,
    /// Bytes written since the last upload (the transfer covers `0..dirty`).
    dirty: usize,
    /// Recorded after each upload; `in_flight` until a write has waited for it.
    uploaded: CudaEvent,
    in_flight: bool,
}

impl InputArena {
    pub fn new(stream: &Arc<CudaStream>, layout: &ArenaLayout) -> Result<Self> {
        let n = layout.bytes().max(16);
        Ok(Self {
            host: pinned_zeroed::<u8>(stream.context(), n)?,
            device: stream.alloc_zeros::<u8>(n)?,
            dirty: 0,
            uploaded: stream.context().new_event(None)?,
            in_flight: false,
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
        if self.in_flight {
            // The previous upload may still be reading the staging bytes.
            self.uploaded.synchronize()?;
            self.in_flight = false;
        }
        let host = self.host.as_mut_slice()?;
        let w = std::mem::size_of::<T>();
        for (i, &v) in values.iter().enumerate() {
            let at = s.offset + i * w;
            v.write_le(&mut host[at..at + w]);
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
        let host = self.host.as_mut_slice()?;
        let (dst, _guard) = self.device.device_ptr_mut(stream);
        // SAFETY: `dst` is the device allocation of at least `n` bytes (`dirty` never exceeds
        // the layout), ordered on `stream` by the guard; the source is page-locked host memory
        // owned by `self`. The copy reads it after this call returns, so it is not rewritten or
        // freed before the copy completes: `put` and `Drop` wait on `uploaded` (recorded right
        // after the copy on the same stream) while `in_flight`, and if that record fails the
        // stream is synchronised here before returning.
        unsafe { result::memcpy_htod_async(dst, &host[..n], stream.cu_stream())? };
        self.dirty = 0;
        if let Err(e) = self.uploaded.record(stream) {
            let _ = stream.synchronize();
            return Err(e.into());
        }
        self.in_flight = true;
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

impl Drop for InputArena {
    fn drop(&mut self) {
        // The staging bytes must outlive the last copy reading them.
        if self.in_flight {
            let _ = self.uploaded.synchronize();
        }
    }
}
