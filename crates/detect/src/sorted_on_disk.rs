//! Hash maps and sets that are written in key order, so a snapshot of the detector does not
//! depend on the order of hashing: for the look-up-only state read on every event (tokens,
//! mailboxes seen), where a B-tree's walk of string or number comparisons costs more than a
//! hash.
//!
//! Only state that is never iterated to make a decision is kept this way: the iteration order
//! of a hash map depends on its history, and a restored detector must decide as the one it
//! was saved from.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::hash::Hash;

/// `#[serde(with = "crate::sorted_on_disk::set")]` for an [`FxHashSet`]: a sorted array.
pub mod set {
    use super::*;

    /// Writes the set as an array in ascending order.
    pub fn serialize<T: Ord + Serialize, S: Serializer>(
        set: &FxHashSet<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut v: Vec<&T> = set.iter().collect();
        v.sort_unstable();
        v.serialize(s)
    }

    /// Reads an array (in any order).
    pub fn deserialize<'de, T, D>(d: D) -> Result<FxHashSet<T>, D::Error>
    where
        T: Deserialize<'de> + Eq + Hash,
        D: Deserializer<'de>,
    {
        Ok(Vec::<T>::deserialize(d)?.into_iter().collect())
    }
}

/// `#[serde(with = "crate::sorted_on_disk::map")]` for an [`FxHashMap`]: a map in key order
/// (the form a `BTreeMap` is written in).
pub mod map {
    use super::*;
    use std::collections::BTreeMap;

    /// Writes the map in ascending key order.
    pub fn serialize<K: Ord + Serialize, V: Serialize, S: Serializer>(
        map: &FxHashMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter().collect::<BTreeMap<&K, &V>>().serialize(s)
    }

    /// Reads a map.
    pub fn deserialize<'de, K, V, D>(d: D) -> Result<FxHashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(BTreeMap::<K, V>::deserialize(d)?.into_iter().collect())
    }
}

/// `#[serde(with = "crate::sorted_on_disk::map_of_maps")]` for string-keyed maps of
/// [`FxHashMap`]s, both levels in key order.
pub mod map_of_maps {
    use super::*;
    use std::collections::BTreeMap;

    /// Writes both levels in ascending key order.
    pub fn serialize<K: Ord + Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<String, FxHashMap<K, V>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter()
            .map(|(outer, inner)| (outer, inner.iter().collect::<BTreeMap<&K, &V>>()))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    /// Reads both levels.
    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<String, FxHashMap<K, V>>, D::Error>
    where
        K: Deserialize<'de> + Ord + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(BTreeMap::<String, BTreeMap<K, V>>::deserialize(d)?
            .into_iter()
            .map(|(outer, inner)| (outer, inner.into_iter().collect()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Held {
        #[serde(with = "set")]
        seen: FxHashSet<u64>,
        #[serde(with = "map")]
        tokens: FxHashMap<String, u32>,
        #[serde(with = "map_of_maps")]
        first: BTreeMap<String, FxHashMap<u64, i64>>,
    }

    fn held(order: &[u64]) -> Held {
        Held {
            seen: order.iter().copied().collect(),
            tokens: order.iter().map(|n| (format!("t{n}"), *n as u32)).collect(),
            first: BTreeMap::from([(
                "tenant".to_owned(),
                order.iter().map(|n| (*n, -(*n as i64))).collect(),
            )]),
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
