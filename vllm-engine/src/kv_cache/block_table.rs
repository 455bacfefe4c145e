//! A sequence's block table: the blocks holding its tokens, freed on drop.

use super::block_pool::{BlockId, Shared};

/// The blocks of one sequence, in token order. Dropping it returns the blocks to the pool.
#[derive(Debug)]
pub struct BlockTable {
    pub(super) pool: Shared,
    pub(super) blocks: Vec<BlockId>,
    /// Chained hashes of the leading full blocks (one per full block, in order).
    pub(super) hashes: Vec<u64>,
    /// Tokens the table has slots for.
    pub(super) num_tokens: usize,
    pub(super) block_size: usize,
}

impl BlockTable {
    /// Block ids in token order: one row of the kernels' `block_tables`.
    pub fn blocks(&self) -> &[BlockId] {
        &self.blocks
    }

    /// Tokens the table holds slots for.
    pub fn num_tokens(&self) -> usize {
        self.num_tokens
    }

    /// The cache slot of token `pos` (`block * block_size + offset`), the kernels' slot_mapping.
    /// `None` past the end of the table.
    pub fn slot(&self, pos: usize) -> Option<i64> {
        if pos >= self.num_tokens {
            return None;
        }
        let block = *self.blocks.get(pos / self.block_size)?;
        Some(block as i64 * self.block_size as i64 + (pos % self.block_size) as i64)
    }
}

impl Drop for BlockTable {
    fn drop(&mut self) {
        let blocks = std::mem::take(&mut self.blocks);
        self.pool.lock().release(&blocks);
    }
}

/// A new prompt's table and how much of it came from the prefix cache.
#[derive(Debug)]
pub struct Allocation {
    pub table: BlockTable,
    /// Leading tokens whose K/V are already in the cache and need no prefill. Always less than
    /// the prompt length: the last prompt token is recomputed to produce logits.
    pub cached_tokens: usize,
    /// Full blocks found in the prefix cache.
    pub hit_blocks: usize,
}

/// A block that must be copied before a shared partial block is written (for `copy_blocks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyOnWrite {
    pub src: BlockId,
    pub dst: BlockId,
}
