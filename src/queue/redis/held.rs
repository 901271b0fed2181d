//! What one consumer holds of the entries it read: which records it has
//! handed out, which are settled, and which wait in memory for a claim.
//!
//! An entry packs a request's events, but workers claim, acknowledge and
//! release single events. So a consumer reads whole entries, hands their
//! records out as claims ask, and removes an entry from the stream only once
//! every record in it is settled (acknowledged, or released and added again).

use std::collections::{HashMap, VecDeque};

use super::entry::{self, Entry};
use crate::queue::{Delivery, DeliveryTag};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In memory, waiting for a claim.
    Ready,
    /// Handed out to a worker.
    Out,
    Settled,
}

#[derive(Debug)]
struct HeldEntry {
    states: Vec<State>,
    settled: usize,
    attempts: u32,
}

/// An entry every record of which is settled: to be removed from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub base: u128,
    pub records: usize,
}

/// What to tell the stream after records were settled.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settlement {
    /// Entries now wholly settled: to be removed.
    pub done: Vec<Done>,
    /// Records settled in entries that are not: to be noted, so that a
    /// consumer taking the entry over does not hand them out again.
    pub partial: Vec<DeliveryTag>,
}

impl Settlement {
    pub fn is_empty(&self) -> bool {
        self.done.is_empty() && self.partial.is_empty()
    }
}

/// A consumer's entries, by tag base.
#[derive(Debug, Default)]
pub struct Held {
    entries: HashMap<u128, HeldEntry>,
    ready: VecDeque<Delivery>,
    /// Settled here, not yet told to the stream (telling it failed).
    unflushed: Settlement,
}

impl Held {
    /// Takes in entries just read. An entry already held (taken over again
    /// after it sat idle) hands out again the records that were out and never
    /// settled; records still waiting or settled are left as they are.
    pub fn take_in(&mut self, entries: Vec<Entry>) {
        for Entry { base, attempts, records, settled } in entries {
            let held = self.entries.entry(base).or_insert_with(|| HeldEntry {
                states: vec![State::Out; records.len()],
                settled: 0,
                attempts,
            });
            held.attempts = held.attempts.max(attempts);
            // Settled by whoever held the entry before.
            for index in settled {
                if let Some(state) = held.states.get_mut(index) {
                    if *state != State::Settled {
                        *state = State::Settled;
                        held.settled += 1;
                    }
                }
            }
            if held.settled == held.states.len() {
                self.unflushed.done.push(Done { base, records: held.states.len() });
                self.entries.remove(&base);
                continue;
            }
            for (index, envelope) in records.into_iter().enumerate() {
                let Some(state) = held.states.get_mut(index) else { continue };
                if *state == State::Out {
                    *state = State::Ready;
                    self.ready.push_back(Delivery { tag: entry::tag(base, index), attempts: held.attempts, envelope });
                }
            }
        }
    }

    /// Hands out up to `max` waiting records.
    pub fn hand_out(&mut self, max: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(d) = self.ready.pop_front() else { break };
            let (base, index) = entry::split(d.tag);
            let Some(state) = self.entries.get_mut(&base).and_then(|h| h.states.get_mut(index)) else { continue };
            if *state == State::Ready {
                *state = State::Out;
                out.push(d);
            }
        }
        out
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Settles records; returns what the stream must be told, including what
    /// could not be told before.
    pub fn settle(&mut self, tags: &[DeliveryTag]) -> Settlement {
        let mut out = std::mem::take(&mut self.unflushed);
        for &tag in tags {
            let (base, index) = entry::split(tag);
            let Some(held) = self.entries.get_mut(&base) else { continue };
            let Some(state) = held.states.get_mut(index) else { continue };
            if *state != State::Settled {
                *state = State::Settled;
                held.settled += 1;
                out.partial.push(tag);
                if held.settled == held.states.len() {
                    out.done.push(Done { base, records: held.states.len() });
                    self.entries.remove(&base);
                }
            }
        }
        // Removing an entry forgets its settled records too.
        let done: std::collections::HashSet<u128> = out.done.iter().map(|d| d.base).collect();
        out.partial.retain(|t| !done.contains(&entry::split(*t).0));
        out
    }

    /// Keeps what the stream could not be told, to tell it with the next settle.
    pub fn unflushed(&mut self, s: Settlement) {
        self.unflushed.done.extend(s.done);
        self.unflushed.partial.extend(s.partial);
    }

    /// Failed attempts of an entry, if it is held.
    pub fn attempts(&self, base: u128) -> Option<u32> {
        self.entries.get(&base).map(|h| h.attempts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Body, Envelope};
    use chrono::Utc;
    use uuid::Uuid;

    fn entry(id: &str, n: usize) -> Entry {
        let records = (0..n)
            .map(|i| Envelope {
                event_id: Uuid::new_v4(),
                received_at: Utc::now(),
                application: None,
                body: Body::Event(format!("{i}")),
            })
            .collect();
        Entry { base: entry::base_of(id).unwrap(), attempts: 0, records, settled: Vec::new() }
    }

    #[test]
    fn records_are_handed_out_once_in_order_and_an_entry_is_done_when_all_are_settled() {
        let mut held = Held::default();
        let e = entry("1-0", 3);
        let ids: Vec<Uuid> = e.records.iter().map(|r| r.event_id).collect();
        held.take_in(vec![e, entry("2-0", 1)]);
        let first = held.hand_out(2);
        assert_eq!(first.iter().map(|d| d.envelope.event_id).collect::<Vec<_>>(), ids[..2]);
        let rest = held.hand_out(10);
        assert_eq!(rest.len(), 2);
        assert!(held.hand_out(10).is_empty());

        let s = held.settle(&[first[0].tag, first[1].tag]);
        assert_eq!(s, Settlement { done: vec![], partial: vec![first[0].tag, first[1].tag] });
        // Settling twice counts once.
        assert!(held.settle(&[first[0].tag]).is_empty());
        let s = held.settle(&[rest[0].tag, rest[1].tag]);
        assert_eq!(
            s.done,
            vec![
                Done { base: entry::base_of("1-0").unwrap(), records: 3 },
                Done { base: entry::base_of("2-0").unwrap(), records: 1 }
            ]
        );
        assert!(s.partial.is_empty(), "records of removed entries need no note");
        // A settled entry is forgotten: a late tag of it changes nothing.
        assert!(held.settle(&[first[0].tag]).is_empty());
    }

    #[test]
    fn an_entry_taken_over_again_hands_out_only_what_was_out_and_unsettled() {
        let mut held = Held::default();
        held.take_in(vec![entry("1-0", 4)]);
        let out = held.hand_out(3); // records 0..3 out, 3 still waiting
        held.settle(&[out[0].tag]);
        let mut again = entry("1-0", 4);
        again.attempts = 1;
        held.take_in(vec![again]);
        let got: Vec<usize> = held.hand_out(10).iter().map(|d| entry::split(d.tag).1).collect();
        assert_eq!(got, vec![3, 1, 2], "record 3 once, 1 and 2 again, 0 (settled) never");
        assert_eq!(held.attempts(entry::split(out[1].tag).0), Some(1));
        assert!(held.hand_out(10).is_empty());
    }

    #[test]
    fn records_another_consumer_settled_are_not_handed_out() {
        let mut held = Held::default();
        let mut e = entry("1-0", 3);
        e.settled = vec![0, 2];
        held.take_in(vec![e]);
        let out = held.hand_out(10);
        assert_eq!(out.iter().map(|d| entry::split(d.tag).1).collect::<Vec<_>>(), vec![1]);
        let s = held.settle(&[out[0].tag]);
        assert_eq!(s.done, vec![Done { base: entry::base_of("1-0").unwrap(), records: 3 }]);
        // Wholly settled elsewhere but still in the stream: removed with the next settle.
        let mut e = entry("2-0", 2);
        e.settled = vec![0, 1];
        held.take_in(vec![e]);
        assert!(held.hand_out(10).is_empty());
        assert_eq!(held.settle(&[]).done, vec![Done { base: entry::base_of("2-0").unwrap(), records: 2 }]);
    }

    #[test]
    fn a_failed_removal_is_tried_again_with_the_next_settle() {
        let mut held = Held::default();
        held.take_in(vec![entry("1-0", 1)]);
        let out = held.hand_out(1);
        let s = held.settle(&[out[0].tag]);
        let again = Settlement { done: s.done.clone(), partial: s.partial.clone() };
        held.unflushed(s);
        assert_eq!(held.settle(&[]), again);
    }
}
