//! Every connector's state, by (tenant, connector).
//!
//! An event names its connector by two strings (a tenant id and an app id, often 36 characters
//! each). The detector finds them once per event and then reaches the connector's state by a
//! dense index: connectors are never dropped, so an index stays valid for the detector's life.
//!
//! On disk the table is the list the detector wrote before it had one (`[[tenant, connector],
//! state]` pairs in key order), read straight into the table, so snapshots written before still
//! load and the state written is the same.

use crate::connector_state::ConnectorState;
use crate::pair_keyed::{self, Pair};
use crate::tenant_mailboxes::TenantSlot;
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// A connector's place in the table.
pub(crate) type ConnectorId = u32;

/// Connectors by (tenant, connector), each at an index fixed when it is first seen.
#[derive(Debug, Default)]
pub(crate) struct ConnectorTable {
    ids: BTreeMap<(String, String), ConnectorId>,
    states: Vec<ConnectorState>,
    /// Per connector: how many of its open sessions come from networks it had not established
    /// when they opened (the detector keeps which, by name; this spares the look-up when there
    /// are none). Not written: the detector counts them again when it restores.
    unlearned_open: Vec<u32>,
    /// Per connector: its tenant's slot among the tenants whose mailboxes the detector
    /// follows, once looked up. Not written: looked up again after a restore.
    tenant_slots: Vec<Option<TenantSlot>>,
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
        self.push(
            (tenant.to_owned(), connector.to_owned()),
            Default::default(),
        )
    }

    fn push(&mut self, key: (String, String), state: ConnectorState) -> ConnectorId {
        let id = ConnectorId::try_from(self.states.len()).expect("fewer than 2^32 connectors");
        self.ids.insert(key, id);
        self.states.push(state);
        self.unlearned_open.push(0);
        self.tenant_slots.push(None);
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

    /// Open sessions of connector `id` from networks it had not established.
    pub fn unlearned_open(&self, id: ConnectorId) -> u32 {
        self.unlearned_open[id as usize]
    }

    /// Same, to count one in or out.
    pub fn unlearned_open_mut(&mut self, id: ConnectorId) -> &mut u32 {
        &mut self.unlearned_open[id as usize]
    }

    /// The tenant slot of connector `id`, when looked up before.
    pub fn tenant_slot(&self, id: ConnectorId) -> Option<TenantSlot> {
        self.tenant_slots[id as usize]
    }

    /// Keeps the tenant slot of connector `id`.
    pub fn set_tenant_slot(&mut self, id: ConnectorId, slot: TenantSlot) {
        self.tenant_slots[id as usize] = Some(slot);
    }

    /// Every connector, in (tenant, connector) order.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &ConnectorState)> {
        self.ids.iter().map(|(key, &id)| (key, self.at(id)))
    }
}

impl Serialize for ConnectorTable {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for pair in self.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for ConnectorTable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = ConnectorTable;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of [[tenant, connector], state] pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ConnectorTable, A::Error> {
                let mut table = ConnectorTable::default();
                while let Some((key, state)) =
                    seq.next_element::<((String, String), ConnectorState)>()?
                {
                    match table.id(key.parts().0, key.parts().1) {
                        Some(id) => *table.at_mut(id) = state,
                        None => {
                            table.push(key, state);
                        }
                    }
                }
                Ok(table)
            }
        }
        d.deserialize_seq(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_stay_put_and_the_disk_form_is_the_old_list() {
        let mut table = ConnectorTable::default();
        let b = table.id_or_insert("t2", "app");
        let a = table.id_or_insert("t1", "app");
        assert_eq!((b, a), (0, 1), "indexes in order of first sight");
        assert_eq!(table.id_or_insert("t2", "app"), b);
        assert_eq!(table.id("t1", "app"), Some(a));
        assert_eq!(table.id("t1", "other"), None);
        table.at_mut(a).quarantined = 3;
        *table.unlearned_open_mut(b) += 1;
        assert_eq!(table.get("t1", "app").map(|s| s.quarantined), Some(3));
        assert_eq!((table.unlearned_open(a), table.unlearned_open(b)), (0, 1));

        // Written in key order, as the B-tree it replaces was.
        let json = serde_json::to_value(&table).unwrap();
        assert_eq!(json[0][0], serde_json::json!(["t1", "app"]));
        assert_eq!(json[0][1]["quarantined"], 3);
        assert_eq!(json[1][0], serde_json::json!(["t2", "app"]));
        let old: BTreeMap<(String, String), ConnectorState> =
            table.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
        let mut old_form = Vec::new();
        pair_keyed::serialize(&old, &mut serde_json::Serializer::new(&mut old_form)).unwrap();
        assert_eq!(serde_json::to_vec(&table).unwrap(), old_form);

        // Read back in key order the indexes differ; the connectors and states are the same.
        let back: ConnectorTable = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        assert_eq!(back.id("t1", "app"), Some(0));
        assert_eq!(back.get("t1", "app").map(|s| s.quarantined), Some(3));
        assert_eq!(back.unlearned_open(back.id("t2", "app").unwrap()), 0);
    }
}
