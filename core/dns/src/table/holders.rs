//! Who holds what on one network of the name table: for each name, address and sandbox
//! id, its holders' slots, kept in the order they came.

use super::Slot;
use std::collections::HashMap;
use std::hash::Hash;

/// The entries holding a name, an address or a sandbox id on one network, in the order
/// they came. Most are held by one entry, which needs no room of its own.
#[derive(Debug)]
pub(super) enum Holders {
    One(Slot),
    Many(Vec<Slot>),
}

impl Holders {
    pub(super) fn as_slice(&self) -> &[Slot] {
        match self {
            Holders::One(s) => std::slice::from_ref(s),
            Holders::Many(v) => v,
        }
    }

    /// Add `slot` at the end, unless it is there already.
    fn push(&mut self, slot: Slot) {
        match self {
            Holders::One(s) if *s == slot => {}
            Holders::One(s) => *self = Holders::Many(vec![*s, slot]),
            Holders::Many(v) if v.contains(&slot) => {}
            Holders::Many(v) => {
                v.reserve_exact(1);
                v.push(slot);
            }
        }
    }

    /// Take `slot` out; whether none is left.
    fn remove(&mut self, slot: Slot) -> bool {
        match self {
            Holders::One(s) => *s == slot,
            Holders::Many(v) => {
                v.retain(|&s| s != slot);
                match v[..] {
                    [] => true,
                    [only] => {
                        *self = Holders::One(only);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Add `slot` to the holders of `key` in `index`.
pub(super) fn hold<K: Hash + Eq + std::borrow::Borrow<Q>, Q: Hash + Eq + ?Sized>(
    index: &mut HashMap<K, Holders>,
    key: &Q,
    owned: impl FnOnce() -> K,
    slot: Slot,
) {
    match index.get_mut(key) {
        Some(holders) => holders.push(slot),
        None => {
            index.insert(owned(), Holders::One(slot));
        }
    }
}

/// Take `slot` out of the holders of `key` in `index`, and the key when none is left.
pub(super) fn release<K: Hash + Eq + std::borrow::Borrow<Q>, Q: Hash + Eq + ?Sized>(
    index: &mut HashMap<K, Holders>,
    key: &Q,
    slot: Slot,
) {
    if index.get_mut(key).is_some_and(|holders| holders.remove(slot)) {
        index.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_keep_their_order_once_each_and_go_when_none_is_left() {
        let mut index: HashMap<Box<str>, Holders> = HashMap::new();
        for slot in [3, 1, 3, 2] {
            hold(&mut index, "web", || "web".into(), slot);
        }
        assert_eq!(index["web"].as_slice(), [3, 1, 2]);
        release(&mut index, "web", 1);
        release(&mut index, "web", 3);
        assert!(matches!(index["web"], Holders::One(2)), "one holder left needs no list");
        release(&mut index, "web", 7);
        release(&mut index, "web", 2);
        assert!(index.is_empty());
    }
}
