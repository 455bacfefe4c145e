//! The pool of KV blocks: reference counts, a free stack, the prefix-cache hash index and the
//! LRU of cached free blocks. Algorithm and costs: see the module doc of `kv_cache`.

use super::block_table::{Allocation, BlockTable, CopyOnWrite};
use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

/// Index of a physical block in the cache tensors.
pub type BlockId = u32;

/// Not enough free blocks: nothing was allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvCacheError {
    #[error("KV cache: {need} free blocks needed, {available} available (of {total})")]
    OutOfBlocks {
        need: usize,
        available: usize,
        total: usize,
    },
    #[error(
        "KV cache: block_size must be > 0 and num_blocks in 1..={max}, got block_size {block_size}, num_blocks {num_blocks}"
    )]
    BadConfig {
        block_size: usize,
        num_blocks: usize,
        max: usize,
    },
}

/// Prefix-cache counters since the manager was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Full prompt blocks found in the cache.
    pub hit_blocks: u64,
    /// Full prompt blocks looked up and not found.
    pub miss_blocks: u64,
    /// Cached free blocks evicted to make room.
    pub evicted_blocks: u64,
}

#[derive(Debug, Default)]
struct Block {
    ref_count: u32,
    /// Chained hash and tokens of a full block registered in the prefix cache.
    cached: Option<(u64, Vec<u32>)>,
    /// Position in the LRU (last-use tick) while free and cached.
    lru_tick: Option<u64>,
}

#[derive(Debug)]
pub(super) struct Pool {
    prefix_caching: bool,
    blocks: Vec<Block>,
    /// Free blocks with no cached contents.
    free: Vec<BlockId>,
    /// Free blocks with cached contents, oldest use first.
    lru: BTreeMap<u64, BlockId>,
    tick: u64,
    by_hash: HashMap<u64, BlockId>,
    stats: CacheStats,
}

/// The pool shared by the manager and every table (tables free their blocks on drop).
#[derive(Debug, Clone)]
pub(super) struct Shared(Arc<Mutex<Pool>>);

impl Shared {
    /// The pool, even if a thread panicked while holding it: the pool's invariants hold between
    /// any two of its methods, none of which panics midway.
    pub(super) fn lock(&self) -> MutexGuard<'_, Pool> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl Pool {
    fn available(&self) -> usize {
        self.free.len() + self.lru.len()
    }

    fn touch_out_of_lru(&mut self, id: BlockId) {
        if let Some(t) = self.blocks[id as usize].lru_tick.take() {
            self.lru.remove(&t);
        }
    }

    /// A block with no contents: from the free stack, else the least recently used cached one.
    fn take_fresh(&mut self) -> Option<BlockId> {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                let (_, id) = self.lru.pop_first()?;
                let b = &mut self.blocks[id as usize];
                b.lru_tick = None;
                if let Some((h, _)) = b.cached.take() {
                    self.by_hash.remove(&h);
                }
                self.stats.evicted_blocks += 1;
                id
            }
        };
        self.blocks[id as usize].ref_count = 1;
        Some(id)
    }

    /// The cached block holding exactly this full block after this prefix, if any.
    fn lookup(&self, hash: u64, tokens: &[u32]) -> Option<BlockId> {
        let &id = self.by_hash.get(&hash)?;
        match &self.blocks[id as usize].cached {
            Some((h, t)) if *h == hash && t == tokens => Some(id),
            _ => None,
        }
    }

    /// Registers a newly full block in the prefix cache (unless the same prefix already is).
    fn register(&mut self, id: BlockId, hash: u64, tokens: &[u32]) {
        if !self.prefix_caching || self.by_hash.contains_key(&hash) {
            return;
        }
        self.by_hash.insert(hash, id);
        self.blocks[id as usize].cached = Some((hash, tokens.to_vec()));
    }

    pub(super) fn release(&mut self, ids: &[BlockId]) {
        for &id in ids.iter().rev() {
            let b = &mut self.blocks[id as usize];
            b.ref_count = b.ref_count.saturating_sub(1);
            if b.ref_count > 0 {
                continue;
            }
            if b.cached.is_some() {
                self.tick += 1;
                b.lru_tick = Some(self.tick);
                self.lru.insert(self.tick, id);
            } else {
                self.free.push(id);
            }
        }
    }
}

/// The block allocator of one KV cache. Cheap to clone (a shared handle).
#[derive(Debug, Clone)]
pub struct BlockManager {
    pool: Shared,
    block_size: usize,
    num_blocks: usize,
}

impl BlockManager {
    pub fn new(
        num_blocks: usize,
        block_size: usize,
        prefix_caching: bool,
    ) -> Result<Self, KvCacheError> {
        let max = BlockId::MAX as usize;
        if block_size == 0 || num_blocks == 0 || num_blocks > max {
            return Err(KvCacheError::BadConfig {
                block_size,
                num_blocks,
                max,
            });
        }
        let pool = Pool {
            prefix_caching,
            blocks: (0..num_blocks).map(|_| Block::default()).collect(),
            // Reversed so that blocks are handed out 0, 1, 2, ...
            free: (0..num_blocks as BlockId).rev().collect(),
            lru: BTreeMap::new(),
            tick: 0,
            by_hash: HashMap::new(),
            stats: CacheStats::default(),
        };
        Ok(Self {
            pool: Shared(Arc::new(Mutex::new(pool))),
            block_size,
            num_blocks,
        })
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.num_blocks
    }

    /// Blocks that can be handed out now (free, or cached and evictable).
    pub fn num_available_blocks(&self) -> usize {
        self.pool.lock().available()
    }

    /// Blocks referenced by live tables.
    pub fn num_used_blocks(&self) -> usize {
        self.num_blocks - self.num_available_blocks()
    }

    pub fn stats(&self) -> CacheStats {
        self.pool.lock().stats
    }

    /// Blocks needed to hold `num_tokens` tokens.
    pub fn blocks_for(&self, num_tokens: usize) -> usize {
        num_tokens.div_ceil(self.block_size)
    }

    /// A table for a new prompt, sharing its longest cached prefix of full blocks. On error
    /// nothing is allocated and the pool is unchanged.
    pub fn allocate(&self, prompt: &[u32]) -> Result<Allocation, KvCacheError> {
        self.allocate_with(prompt, true)
    }

    /// As [`Self::allocate`]; with `reuse_prefix` false no cached block is reused, so every
    /// token is computed (requests that want prompt logprobs).
    pub fn allocate_with(
        &self,
        prompt: &[u32],
        reuse_prefix: bool,
    ) -> Result<Allocation, KvCacheError> {
        let bs = self.block_size;
        let mut pool = self.pool.lock();
        // Pass 1, read-only: the cached prefix and the fresh blocks needed.
        let mut hashes = Vec::new();
        let mut hits = Vec::new();
        let mut parent = 0u64;
        for chunk in prompt.chunks_exact(bs) {
            parent = block_hash(parent, chunk);
            hashes.push(parent);
            // Only an unbroken run of hits from the start is a cached prefix.
            let extends_prefix =
                reuse_prefix && pool.prefix_caching && hits.len() + 1 == hashes.len();
            if extends_prefix && let Some(id) = pool.lookup(parent, chunk) {
                hits.push(id);
            }
        }
        let total = prompt.len().div_ceil(bs);
        let need = total - hits.len();
        let hits_in_lru = hits
            .iter()
            .filter(|&&id| pool.blocks[id as usize].ref_count == 0)
            .count();
        let available = pool.available() - hits_in_lru;
        if need > available {
            return Err(KvCacheError::OutOfBlocks {
                need,
                available,
                total: self.num_blocks,
            });
        }
        // Pass 2: take the hits, then fresh blocks. New full blocks enter the prefix cache only
        // once their K/V are computed ([`Self::commit`]).
        let mut blocks = Vec::with_capacity(total);
        for &id in &hits {
            pool.touch_out_of_lru(id);
            pool.blocks[id as usize].ref_count += 1;
            blocks.push(id);
        }
        for _ in 0..need {
            // Cannot fail: `need <= available` was checked under the same lock.
            blocks.extend(pool.take_fresh());
        }
        if pool.prefix_caching {
            pool.stats.hit_blocks += hits.len() as u64;
            pool.stats.miss_blocks += (hashes.len() - hits.len()) as u64;
        }
        drop(pool);
        let cached_tokens = (hits.len() * bs).min(prompt.len().saturating_sub(1));
        hashes.truncate(hits.len());
        Ok(Allocation {
            table: BlockTable {
                pool: self.pool.clone(),
                blocks,
                hashes,
                num_tokens: prompt.len(),
                block_size: bs,
            },
            cached_tokens,
            hit_blocks: hits.len(),
        })
    }

    /// Fresh blocks `table` needs to hold `num_tokens` tokens: new blocks, plus one when its
    /// shared partial last block must be copied before it is written.
    fn growth_need(&self, pool: &Pool, table: &BlockTable, num_tokens: usize) -> (usize, bool) {
        if num_tokens <= table.num_tokens {
            return (0, false);
        }
        let extra = self.blocks_for(num_tokens) - table.blocks.len();
        let cow = !table.num_tokens.is_multiple_of(self.block_size)
            && table
                .blocks
                .last()
                .is_some_and(|&id| pool.blocks[id as usize].ref_count > 1);
        (extra + usize::from(cow), cow)
    }

    /// Whether `table` can grow to `num_tokens` tokens now (for the scheduler's admission).
    pub fn can_grow(&self, table: &BlockTable, num_tokens: usize) -> bool {
        let pool = self.pool.lock();
        self.growth_need(&pool, table, num_tokens).0 <= pool.available()
    }

    /// Grows `table` to hold `num_tokens` tokens. If its partial last block is shared (after
    /// [`Self::fork`]) that block is copied first: the returned pair must be copied
    /// (`copy_blocks`) before new tokens are written. On error the table is unchanged.
    pub fn grow(
        &self,
        table: &mut BlockTable,
        num_tokens: usize,
    ) -> Result<Option<CopyOnWrite>, KvCacheError> {
        if num_tokens <= table.num_tokens {
            return Ok(None);
        }
        let mut pool = self.pool.lock();
        let (need, cow_needed) = self.growth_need(&pool, table, num_tokens);
        let available = pool.available();
        if need > available {
            return Err(KvCacheError::OutOfBlocks {
                need,
                available,
                total: self.num_blocks,
            });
        }
        let mut fresh = Vec::with_capacity(need);
        for _ in 0..need {
            // Cannot fail: `need <= available` was checked under the same lock.
            fresh.extend(pool.take_fresh());
        }
        let mut cow = None;
        if cow_needed && let Some(new) = fresh.pop() {
            let last = table.blocks.len() - 1;
            let old = table.blocks[last];
            pool.release(&[old]);
            table.blocks[last] = new;
            cow = Some(CopyOnWrite { src: old, dst: new });
        }
        table.blocks.extend(fresh);
        table.num_tokens = num_tokens;
        Ok(cow)
    }

    /// Enters the full blocks among the first `num_computed` of `tokens` (the sequence's tokens,
    /// prompt first) into the prefix cache: call once their K/V are written.
    pub fn commit(&self, table: &mut BlockTable, tokens: &[u32], num_computed: usize) {
        let bs = self.block_size;
        let full = self.full_blocks(table, tokens.len(), num_computed);
        if table.hashes.len() >= full {
            return;
        }
        let mut pool = self.pool.lock();
        while table.hashes.len() < full {
            let i = table.hashes.len();
            let parent = table.hashes.last().copied().unwrap_or(0);
            let chunk = &tokens[i * bs..(i + 1) * bs];
            let h = block_hash(parent, chunk);
            table.hashes.push(h);
            pool.register(table.blocks[i], h, chunk);
        }
    }

    /// Whether [`Self::commit`] would enter a block for a sequence of `len` tokens: lets a
    /// caller skip gathering the tokens on the steps (15 of 16 in decode) that fill no block.
    pub fn commit_due(&self, table: &BlockTable, len: usize, num_computed: usize) -> bool {
        table.hashes.len() < self.full_blocks(table, len, num_computed)
    }

    /// Blocks of `table` whose tokens are all computed.
    fn full_blocks(&self, table: &BlockTable, len: usize, num_computed: usize) -> usize {
        num_computed.min(len).min(table.num_tokens) / self.block_size
    }

    /// A second table sharing all of `table`'s blocks (parallel sampling, n > 1).
    pub fn fork(&self, table: &BlockTable) -> BlockTable {
        let mut pool = self.pool.lock();
        for &id in &table.blocks {
            pool.blocks[id as usize].ref_count += 1;
        }
        BlockTable {
            pool: self.pool.clone(),
            blocks: table.blocks.clone(),
            hashes: table.hashes.clone(),
            num_tokens: table.num_tokens,
            block_size: table.block_size,
        }
    }
}
