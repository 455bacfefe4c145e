//! The paged KV cache bookkeeping: which physical block holds which tokens of which sequence.
//!
//! [`BlockManager`] owns a pool of `num_blocks` fixed-size blocks (the GPU or CPU cache tensors
//! themselves live in the model runner; layout in `vllm_kernels::args::PagedKvLayout`). Each
//! sequence holds a [`BlockTable`]: its block ids in order, from which the runner builds the
//! kernels' `block_tables` and `slot_mapping`. A table returns its blocks to the pool when
//! dropped, so a finished, aborted or preempted sequence can never leak blocks.
//!
//! # Prefix caching
//! A full block is identified by a chained hash `h_i = H(h_{i-1}, tokens of block i)`, so equal
//! hashes mean equal whole prefixes (the tokens are compared too, so a hash collision costs a
//! miss, never a wrong hit). A block enters the cache when its K/V have been computed
//! ([`BlockManager::commit`]), never before, so no request can hit a block still being filled.
//! When a new prompt arrives, its leading full blocks are looked up by hash and shared
//! (reference counts) instead of recomputed. Blocks whose count drops to
//! zero keep their contents and hash and wait in an LRU list; they are reused on a later hit or
//! evicted, oldest first, when a fresh block is needed. Partial blocks are never shared through
//! the cache; a partial block shared by [`BlockManager::fork`] is copied on write.
//!
//! # Costs
//! Allocating a prompt of `n` tokens: O(n) hashing plus O(b log c) for `b` blocks (`c` cached
//! free blocks, in a `BTreeMap` keyed by last use). Growing by one token: O(1). Committing:
//! O(block size) hashing per newly full block. Freeing: O(b log c). No operation scans the pool.

mod block_pool;
mod block_table;

pub use block_pool::{BlockId, BlockManager, CacheStats, KvCacheError};
pub use block_table::{Allocation, BlockTable, CopyOnWrite};
