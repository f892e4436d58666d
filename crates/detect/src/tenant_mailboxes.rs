//! When each mailbox was first read by anyone, per tenant: read on every mailbox access to
//! tell a new target from a new mailbox.
//!
//! A tenant is found by name once and then by a dense index (each connector keeps its
//! tenant's, see [`crate::connector_table::ConnectorTable::tenant_slot`]), so an access does
//! not compare its 36-character tenant id along a B-tree. On disk it is the map of maps it
//! replaces, both levels in ascending key order.

use crate::baseline::Secs;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;

/// A tenant's place among the tenants seen.
pub(crate) type TenantSlot = u32;

/// Mailbox hashes and the time each was first read, by tenant.
#[derive(Debug, Default)]
pub(crate) struct TenantMailboxes {
    slots: BTreeMap<String, TenantSlot>,
    first_read: Vec<FxHashMap<u64, Secs>>,
}

impl TenantMailboxes {
    /// The slot of `tenant`, added when new.
    pub fn slot(&mut self, tenant: &str) -> TenantSlot {
        if let Some(&slot) = self.slots.get(tenant) {
            return slot;
        }
        let slot = TenantSlot::try_from(self.first_read.len()).expect("fewer than 2^32 tenants");
        self.slots.insert(tenant.to_owned(), slot);
        self.first_read.push(FxHashMap::default());
        slot
    }

    /// The mailboxes of the tenant at `slot`.
    pub fn at_mut(&mut self, slot: TenantSlot) -> &mut FxHashMap<u64, Secs> {
        &mut self.first_read[slot as usize]
    }
}

impl Serialize for TenantMailboxes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.slots.iter().map(|(tenant, &slot)| {
            let sorted: BTreeMap<&u64, &Secs> = self.first_read[slot as usize].iter().collect();
            (tenant, sorted)
        }))
    }
}

impl<'de> Deserialize<'de> for TenantMailboxes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let by_name = BTreeMap::<String, FxHashMap<u64, Secs>>::deserialize(d)?;
        let mut out = TenantMailboxes::default();
        for (tenant, first_read) in by_name {
            let slot = out.slot(&tenant);
            *out.at_mut(slot) = first_read;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stay_put_and_the_disk_form_is_the_sorted_map_of_maps() {
        let mut t = TenantMailboxes::default();
        let b = t.slot("tenant-b");
        let a = t.slot("tenant-a");
        assert_eq!((b, a, t.slot("tenant-b")), (0, 1, 0));
        for h in [9u64, 3, 7] {
            t.at_mut(a).insert(h, h as Secs * 10);
        }
        t.at_mut(b).insert(1, -5);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(
            json,
            r#"{"tenant-a":{"3":30,"7":70,"9":90},"tenant-b":{"1":-5}}"#
        );
        let mut back: TenantMailboxes = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        let a2 = back.slot("tenant-a");
        assert_eq!(back.at_mut(a2).get(&7), Some(&70));
    }
}
