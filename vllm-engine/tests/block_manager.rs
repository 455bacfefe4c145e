//! Block manager behaviour: prefix-cache hits reuse blocks, LRU eviction, frees on drop,
//! all-or-nothing allocation, growth, fork and copy-on-write, slot mapping.

use vllm_engine::kv_cache::{BlockManager, CopyOnWrite, KvCacheError};

fn tokens(start: u32, n: usize) -> Vec<u32> {
    (start..start + n as u32).collect()
}

#[test]
fn fresh_prompt_takes_ceil_blocks_and_frees_on_drop() {
    let m = BlockManager::new(10, 16, true).unwrap();
    let a = m.allocate(&tokens(0, 40)).unwrap();
    assert_eq!(a.table.blocks().len(), 3);
    assert_eq!((a.hit_blocks, a.cached_tokens), (0, 0));
    assert_eq!(m.num_used_blocks(), 3);
    drop(a);
    assert_eq!(m.num_used_blocks(), 0);
    assert_eq!(m.num_available_blocks(), 10);
}

#[test]
fn shared_prefix_reuses_full_blocks_only() {
    let m = BlockManager::new(10, 16, true).unwrap();
    let prompt = tokens(100, 40);
    let mut a = m.allocate(&prompt).unwrap();
    let early = m.allocate(&prompt).unwrap();
    assert_eq!(
        early.hit_blocks, 0,
        "blocks whose K/V are not computed yet are never hit"
    );
    drop(early);
    m.commit(&mut a.table, &prompt, prompt.len());
    let b = m.allocate(&prompt).unwrap();
    assert_eq!(b.hit_blocks, 2, "the two full blocks are shared");
    assert_eq!(b.cached_tokens, 32);
    assert_eq!(&a.table.blocks()[..2], &b.table.blocks()[..2]);
    assert_ne!(
        a.table.blocks()[2],
        b.table.blocks()[2],
        "partial blocks are never shared"
    );
    assert_eq!(m.num_used_blocks(), 4, "3 + 1 new partial block");

    // A prompt that is exactly two cached blocks: the last token is recomputed for logits.
    let c = m.allocate(&prompt[..32]).unwrap();
    assert_eq!((c.hit_blocks, c.cached_tokens), (2, 31));
    assert_eq!(m.num_used_blocks(), 4);

    // A different second block breaks the chain from there on.
    let mut other = prompt.clone();
    other[20] = 9999;
    let d = m.allocate(&other).unwrap();
    assert_eq!(d.hit_blocks, 1);
    let s = m.stats();
    assert_eq!((s.hit_blocks, s.miss_blocks), (5, 2 + 2 + 1));
}

#[test]
fn freed_cached_blocks_hit_again_until_evicted_oldest_first() {
    let m = BlockManager::new(4, 4, true).unwrap();
    let p1 = tokens(0, 8);
    let p2 = tokens(50, 8);
    for p in [&p1, &p2] {
        let mut a = m.allocate(p).unwrap();
        m.commit(&mut a.table, p, p.len());
    }
    assert_eq!(
        m.num_available_blocks(),
        4,
        "cached free blocks still count as available"
    );
    // Both prefixes are still cached.
    let again = m.allocate(&p1).unwrap();
    assert_eq!(again.hit_blocks, 2);
    drop(again);
    // p1 was used last, so a 2-block prompt needing fresh blocks evicts p2's blocks, not p1's.
    let fresh = m.allocate(&tokens(200, 8)).unwrap();
    assert_eq!(m.stats().evicted_blocks, 2);
    assert_eq!(
        m.allocate(&p2).map(|a| a.hit_blocks).unwrap_or(99),
        0,
        "p2 was evicted"
    );
    drop(fresh);
}

#[test]
fn out_of_blocks_allocates_nothing() {
    let m = BlockManager::new(4, 16, true).unwrap();
    let keep = m.allocate(&tokens(0, 40)).unwrap(); // 3 blocks
    let before = m.num_available_blocks();
    let err = m.allocate(&tokens(500, 33)).unwrap_err();
    assert_eq!(
        err,
        KvCacheError::OutOfBlocks {
            need: 3,
            available: 1,
            total: 4
        }
    );
    assert!(
        err.to_string()
            .contains("3 free blocks needed, 1 available")
    );
    assert_eq!(m.num_available_blocks(), before);
    drop(keep);
}

#[test]
fn growth_allocates_at_block_boundaries_and_registers_full_blocks() {
    let m = BlockManager::new(8, 4, true).unwrap();
    let mut seq = tokens(0, 3);
    let mut a = m.allocate(&seq).unwrap().table;
    assert_eq!(a.blocks().len(), 1);
    for t in 3..9u32 {
        seq.push(1000 + t);
        assert!(m.can_grow(&a, seq.len()));
        assert_eq!(m.grow(&mut a, seq.len()).unwrap(), None);
        m.commit(&mut a, &seq, seq.len());
        assert_eq!(a.num_tokens(), seq.len());
    }
    assert_eq!(a.blocks().len(), 3, "9 tokens in blocks of 4");
    // The generated tokens filled two blocks: a prompt equal to them hits both.
    let b = m.allocate(&seq[..8]).unwrap();
    assert_eq!(b.hit_blocks, 2);
    // Slots follow block * block_size + offset.
    for pos in 0..seq.len() {
        let blk = a.blocks()[pos / 4] as i64;
        assert_eq!(a.slot(pos), Some(blk * 4 + (pos % 4) as i64));
    }
    assert_eq!(a.slot(seq.len()), None);
}

#[test]
fn growth_failure_leaves_table_unchanged() {
    let m = BlockManager::new(2, 4, false).unwrap();
    let mut a = m.allocate(&tokens(0, 4)).unwrap().table;
    let _b = m.allocate(&tokens(10, 4)).unwrap();
    assert!(!m.can_grow(&a, 5));
    let err = m.grow(&mut a, 5).unwrap_err();
    assert!(matches!(
        err,
        KvCacheError::OutOfBlocks {
            need: 1,
            available: 0,
            ..
        }
    ));
    assert_eq!((a.num_tokens(), a.blocks().len()), (4, 1));
}

#[test]
fn fork_shares_blocks_and_copies_the_partial_block_on_write() {
    let m = BlockManager::new(8, 4, true).unwrap();
    let prompt = tokens(0, 6);
    let parent = m.allocate(&prompt).unwrap().table;
    let mut child = m.fork(&parent);
    assert_eq!(parent.blocks(), child.blocks());
    assert_eq!(m.num_used_blocks(), 2);
    let cow = m.grow(&mut child, prompt.len() + 1).unwrap();
    let CopyOnWrite { src, dst } = cow.expect("shared partial block is copied");
    assert_eq!(src, parent.blocks()[1]);
    assert_eq!(dst, child.blocks()[1]);
    assert_eq!(
        parent.blocks()[0],
        child.blocks()[0],
        "the full block stays shared"
    );
    assert_eq!(m.num_used_blocks(), 3);
    drop(parent);
    drop(child);
    assert_eq!(m.num_used_blocks(), 0);
}

#[test]
fn without_prefix_caching_nothing_is_shared() {
    let m = BlockManager::new(8, 4, false).unwrap();
    let mut a = m.allocate(&tokens(0, 8)).unwrap();
    m.commit(&mut a.table, &tokens(0, 8), 8);
    let b = m.allocate(&tokens(0, 8)).unwrap();
    assert_eq!(b.hit_blocks, 0);
    assert!(
        a.table
            .blocks()
            .iter()
            .all(|x| !b.table.blocks().contains(x))
    );
}

#[test]
fn bad_config_is_an_error() {
    assert!(matches!(
        BlockManager::new(0, 16, true),
        Err(KvCacheError::BadConfig { .. })
    ));
    assert!(matches!(
        BlockManager::new(8, 0, true),
        Err(KvCacheError::BadConfig { .. })
    ));
}
