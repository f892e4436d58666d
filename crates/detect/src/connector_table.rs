//! Every connector's state, by (tenant, connector).
//!
//! An event names its connector by two strings (a tenant id and an app id, often 36 characters
//! each). The detector finds them once per event and then reaches the connector's state, and
//! the open sessions it watches for concurrency, by a dense index: connectors are never
//! dropped, so an index stays valid for the detector's life.
//!
//! On disk the table is the two lists the detector wrote before it had one (`connectors`:
//! `[[tenant, connector], state]` pairs; `unlearned_open`: the non-empty session sets), both in
//! key order, so snapshots written before still load and the state written is the same.

use crate::connector_state::ConnectorState;
use crate::pair_keyed::{self, Pair};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};

/// A connector's place in the table.
pub(crate) type ConnectorId = u32;

/// Connectors by (tenant, connector), each at an index fixed when it is first seen.
#[derive(Debug, Default)]
pub(crate) struct ConnectorTable {
    ids: BTreeMap<(String, String), ConnectorId>,
    states: Vec<ConnectorState>,
    /// Per connector: its open sessions from networks it had not established when they
    /// opened (the candidates for concurrent use).
    unlearned_open: Vec<BTreeSet<u64>>,
}

impl ConnectorTable {
    /// Connectors known.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// The index of (`tenant`, `connector`), when known.
    pub fn id(&self, tenant: &str, connector: &str) -> Option<ConnectorId> {
        pair_keyed::get(&self.ids, tenant, connector).copied()
    }

    /// The index of (`tenant`, `connector`), a connector with a default state added first
    /// (the names are copied only when new).
    pub fn id_or_insert(&mut self, tenant: &str, connector: &str) -> ConnectorId {
        if let Some(id) = self.id(tenant, connector) {
            return id;
        }
        let id = ConnectorId::try_from(self.states.len()).expect("fewer than 2^32 connectors");
        self.ids
            .insert((tenant.to_owned(), connector.to_owned()), id);
        self.states.push(ConnectorState::default());
        self.unlearned_open.push(BTreeSet::new());
        id
    }

    /// The state at `id`.
    pub fn at(&self, id: ConnectorId) -> &ConnectorState {
        &self.states[id as usize]
    }

    /// The state at `id`, mutable.
    pub fn at_mut(&mut self, id: ConnectorId) -> &mut ConnectorState {
        &mut self.states[id as usize]
    }

    /// The state of (`tenant`, `connector`), when known.
    pub fn get(&self, tenant: &str, connector: &str) -> Option<&ConnectorState> {
        self.id(tenant, connector).map(|id| self.at(id))
    }

    /// The state of (`tenant`, `connector`), mutable, when known.
    pub fn get_mut(&mut self, tenant: &str, connector: &str) -> Option<&mut ConnectorState> {
        self.id(tenant, connector).map(|id| self.at_mut(id))
    }

    /// The state of (`tenant`, `connector`), a default one added first.
    pub fn entry(&mut self, tenant: &str, connector: &str) -> &mut ConnectorState {
        let id = self.id_or_insert(tenant, connector);
        self.at_mut(id)
    }

    /// The open sessions of connector `id` from networks it had not established.
    pub fn unlearned_open(&self, id: ConnectorId) -> &BTreeSet<u64> {
        &self.unlearned_open[id as usize]
    }

    /// Same, mutable.
    pub fn unlearned_open_mut(&mut self, id: ConnectorId) -> &mut BTreeSet<u64> {
        &mut self.unlearned_open[id as usize]
    }

    /// Every connector, in (tenant, connector) order.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &ConnectorState)> {
        self.ids.iter().map(|(key, &id)| (key, self.at(id)))
    }
}

/// The table as written: the lists a detector wrote before it had one.
#[derive(Serialize)]
struct TableOnDisk<'a> {
    connectors: Vec<(&'a (String, String), &'a ConnectorState)>,
    unlearned_open: Vec<(&'a (String, String), &'a BTreeSet<u64>)>,
}

#[derive(Deserialize)]
struct TableFromDisk {
    connectors: Vec<((String, String), ConnectorState)>,
    unlearned_open: Vec<((String, String), BTreeSet<u64>)>,
}

impl Serialize for ConnectorTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        TableOnDisk {
            connectors: self.iter().collect(),
            unlearned_open: self
                .ids
                .iter()
                .map(|(key, &id)| (key, self.unlearned_open(id)))
                .filter(|(_, set)| !set.is_empty())
                .collect(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ConnectorTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let disk = TableFromDisk::deserialize(d)?;
        let mut table = ConnectorTable::default();
        for ((tenant, connector), state) in disk.connectors {
            *table.entry(&tenant, &connector) = state;
        }
        for ((tenant, connector), sessions) in disk.unlearned_open {
            let id = table.id_or_insert(&tenant, &connector);
            table.unlearned_open_mut(id).extend(sessions);
        }
        Ok(table)
    }
}

impl PartialEq for ConnectorTable {
    /// Equal when the same connectors have equal states and sessions, whatever their indexes.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.ids.iter().all(|(key, &id)| {
                let (tenant, connector) = key.parts();
                other.id(tenant, connector).is_some_and(|o| {
                    self.at(id) == other.at(o) && self.unlearned_open(id) == other.unlearned_open(o)
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_stay_put_and_the_disk_form_is_the_old_lists() {
        let mut table = ConnectorTable::default();
        let b = table.id_or_insert("t2", "app");
        let a = table.id_or_insert("t1", "app");
        assert_eq!((b, a), (0, 1), "indexes in order of first sight");
        assert_eq!(table.id_or_insert("t2", "app"), b);
        assert_eq!(table.id("t1", "app"), Some(a));
        assert_eq!(table.id("t1", "other"), None);
        table.at_mut(a).quarantined = 3;
        table.unlearned_open_mut(b).insert(7);
        assert_eq!(table.get("t1", "app").map(|s| s.quarantined), Some(3));

        let json = serde_json::to_value(&table).unwrap();
        // Key order, and only the non-empty session sets, as the two maps were written.
        assert_eq!(json["connectors"][0][0], serde_json::json!(["t1", "app"]));
        assert_eq!(json["connectors"][1][0], serde_json::json!(["t2", "app"]));
        assert_eq!(
            json["unlearned_open"],
            serde_json::json!([[["t2", "app"], [7]]])
        );

        let back: ConnectorTable = serde_json::from_value(json.clone()).unwrap();
        assert!(back == table);
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        // Read back in key order, the indexes differ; the table is the same.
        assert_eq!(back.id("t1", "app"), Some(0));
        assert_eq!(back.unlearned_open(back.id("t2", "app").unwrap()).len(), 1);
    }
}
