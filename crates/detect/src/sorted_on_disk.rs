//! Hash maps and sets that are written in key order, so a snapshot of the detector does not
//! depend on the order of hashing: for the look-up-only state read on every event (tokens,
//! mailboxes seen), where a B-tree's walk of string or number comparisons costs more than a
//! hash.
//!
//! Only state that is never iterated to make a decision is kept this way: the iteration order
//! of a hash map depends on its history, and a restored detector must decide as the one it
//! was saved from.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;

// Written with `#[serde(serialize_with = ...)]`; read back as any map or set is.

/// An [`FxHashSet`] as an array in ascending order.
pub fn set<T: Ord + Serialize, S: Serializer>(set: &FxHashSet<T>, s: S) -> Result<S::Ok, S::Error> {
    let mut v: Vec<&T> = set.iter().collect();
    v.sort_unstable();
    v.serialize(s)
}

/// An [`FxHashMap`] in ascending key order (the form a `BTreeMap` is written in).
pub fn map<K: Ord + Serialize, V: Serialize, S: Serializer>(
    map: &FxHashMap<K, V>,
    s: S,
) -> Result<S::Ok, S::Error> {
    map.iter().collect::<BTreeMap<&K, &V>>().serialize(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Held {
        #[serde(serialize_with = "set")]
        seen: FxHashSet<u64>,
        #[serde(serialize_with = "map")]
        tokens: FxHashMap<String, u32>,
    }

    fn held(order: &[u64]) -> Held {
        Held {
            seen: order.iter().copied().collect(),
            tokens: order.iter().map(|n| (format!("t{n}"), *n as u32)).collect(),
        }
    }

    #[test]
    fn written_the_same_whatever_the_insertion_order_and_read_back() {
        let ascending: Vec<u64> = (0..500).map(|n| n * 7919 % 1000).collect();
        let mut descending = ascending.clone();
        descending.reverse();
        let a = serde_json::to_string(&held(&ascending)).unwrap();
        let b = serde_json::to_string(&held(&descending)).unwrap();
        assert_eq!(a, b);
        let written: serde_json::Value = serde_json::from_str(&a).unwrap();
        let seen: Vec<u64> = serde_json::from_value(written["seen"].clone()).unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        assert_eq!(seen.len(), 500);
        let back: Held = serde_json::from_str(&a).unwrap();
        assert_eq!(back, held(&ascending));
    }
}
