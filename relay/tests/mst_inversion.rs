//! Property test of the sync 1.1 inversion: for many random repositories and random
//! commits (creates, updates, deletes, including keys deep enough to add or remove levels
//! above the old root), undoing the commit's ops on the new tree reproduces the old root.
//!
//! This caught a real bug: a create that added a level above a non-empty root left a new
//! keyless node whose only link is the old root, and inversion stopped trimming there.

use std::collections::{BTreeMap, HashMap};

use atelier_relay::sync::cbor::{CidRef, DAG_CBOR, cid_bytes_for};
use atelier_relay::sync::mst::{self, Change, DagCid, NoBlocks, Op, Tree, key_depth};

/// xorshift64*, so every run checks the same cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A record key; with `deep`, one of MST depth 2 or more, which is what adds levels above
/// small trees.
fn key(rng: &mut Rng, deep: bool) -> String {
    let min_depth = if deep { 2 + rng.below(2) as u8 } else { 0 };
    loop {
        let k = format!("computer.aesthetic.painting/3k{:011x}", rng.next() >> 20);
        if key_depth(k.as_bytes()) >= min_depth {
            return k;
        }
    }
}

fn root_of(records: &BTreeMap<String, [u8; 36]>) -> (DagCid, Vec<(DagCid, Vec<u8>)>) {
    let mut tree = Tree::empty(NoBlocks);
    for (k, v) in records {
        tree.insert(k.as_bytes(), CidRef::from_bytes(v).expect("cid"))
            .expect("insert");
    }
    (tree.root_cid(), tree.node_blocks())
}

#[test]
fn undoing_random_commits_reproduces_the_previous_root() {
    let mut rng = Rng(0x05ee_da7e_11e5);
    let cases = 600;
    let mut ops_checked = 0;
    for case in 0..cases {
        // The repository before the commit: half the cases small (0 to 4 records, where a
        // deep key adds levels above the root), half up to 40 records.
        let mut before = BTreeMap::new();
        let size = if case % 2 == 0 {
            rng.below(5)
        } else {
            rng.below(41)
        };
        for i in 0..size {
            let value = cid_bytes_for(DAG_CBOR, format!("{case}/{i}").as_bytes());
            let deep = rng.below(40) == 0;
            before.insert(key(&mut rng, deep), value);
        }
        // The commit: 1 to 5 ops on distinct paths.
        let mut after = before.clone();
        let mut changes: Vec<(String, Change<'static>)> = Vec::new();
        let n_ops = 1 + rng.below(5);
        let mut planned: Vec<(String, u8, Option<[u8; 36]>)> = Vec::new();
        for j in 0..n_ops {
            let new_value = cid_bytes_for(DAG_CBOR, format!("{case}/new/{j}").as_bytes());
            let existing: Vec<String> = after.keys().cloned().collect();
            let pick = rng.below(3);
            if pick == 0 || existing.is_empty() {
                let deep = rng.below(3) == 0;
                let k = key(&mut rng, deep);
                if after.contains_key(&k) || planned.iter().any(|p| p.0 == k) {
                    continue;
                }
                after.insert(k.clone(), new_value);
                planned.push((k, 0, Some(new_value)));
            } else {
                let k = existing[rng.below(existing.len() as u64) as usize].clone();
                if planned.iter().any(|p| p.0 == k) || !before.contains_key(&k) {
                    continue;
                }
                if pick == 1 {
                    after.insert(k.clone(), new_value);
                    planned.push((k, 1, Some(new_value)));
                } else {
                    after.remove(&k);
                    planned.push((k, 2, None));
                }
            }
        }
        // Ops borrow their CIDs; the test keeps them alive for the whole run.
        let cid = |bytes: &[u8; 36]| -> CidRef<'static> {
            let kept: &'static [u8; 36] = Box::leak(Box::new(*bytes));
            CidRef::from_bytes(kept).expect("cid")
        };
        for (k, kind, new) in planned {
            let change = match kind {
                0 => Change::Create {
                    cid: cid(&new.expect("new")),
                },
                1 => Change::Update {
                    cid: cid(&new.expect("new")),
                    prev: cid(&before[&k]),
                },
                _ => Change::Delete {
                    prev: cid(&before[&k]),
                },
            };
            changes.push((k, change));
        }
        if changes.is_empty() {
            continue;
        }
        let (prev_root, _) = root_of(&before);
        let (new_root, blocks) = root_of(&after);
        let map: HashMap<DagCid, &[u8]> = blocks.iter().map(|(c, b)| (*c, b.as_slice())).collect();
        let ops: Vec<Op<'_>> = changes
            .iter()
            .map(|(k, change)| Op {
                path: k.as_str(),
                change: *change,
            })
            .collect();
        let inverted = mst::invert_ops(&map, new_root, &ops)
            .unwrap_or_else(|e| panic!("case {case}: inversion failed: {e}; ops {ops:?}"));
        assert_eq!(
            inverted,
            prev_root,
            "case {case}: {} records before, ops {ops:?}",
            before.len()
        );
        ops_checked += ops.len();
    }
    println!(
        "inversion property: {cases} random commits, {ops_checked} ops, all reproduce prevData"
    );
}
