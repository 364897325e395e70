//! A rotating tracker's successive addresses, linked into one candidate.

use chrono::{DateTime, Duration, Utc};

use super::PathPoint;
use crate::domain::registry::TransmitterKey;

/// A rotating tracker's next address is heard within this long of its last one falling silent
/// (SmartTags change address every few minutes near their owner; phones scan every 10–30 s).
pub const LINK_GAP_SECONDS: i64 = 90;
/// At most this many addresses are linked into one chain.
const MAX_LINKED: usize = 500;

/// When one address of a tracker class was first and last heard.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressSpan {
    pub key: TransmitterKey,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// The addresses that continue `key`'s as one rotating tracker, earliest first (`key` itself
/// left out): each next address is first heard soon after the previous one was last heard,
/// never overlapping it — within [`LINK_GAP_SECONDS`], or with the capture device recording
/// nothing in between (`path`, its minutes: a phone that records only while walking hears a tag
/// that rotated between walks as the first new address of its class on the next walk). Where
/// two addresses could continue a chain it stops there: linking the wrong one would lend a
/// stranger's evidence.
pub fn linked(
    key: &TransmitterKey,
    spans: &[AddressSpan],
    path: &[PathPoint],
) -> Vec<TransmitterKey> {
    let Some(me) = spans.iter().find(|s| &s.key == key) else {
        return Vec::new();
    };
    let gap = Duration::seconds(LINK_GAP_SECONDS);
    // Whether the device recorded at most one minute strictly between two instants.
    let silent = |a: DateTime<Utc>, b: DateTime<Utc>| {
        let from = path.partition_point(|p| p.minute <= a);
        let to = path.partition_point(|p| p.minute < b);
        to.saturating_sub(from) <= 1
    };
    let follows = |earlier: &AddressSpan, later: &AddressSpan| {
        earlier.last < later.first
            && (later.first - earlier.last <= gap || silent(earlier.last, later.first))
    };
    let mut before: Vec<TransmitterKey> = Vec::new();
    let mut cur = me;
    while before.len() < MAX_LINKED {
        let mut prev = spans.iter().filter(|s| follows(s, cur));
        match (prev.next(), prev.next()) {
            (Some(p), None) if &p.key != key && !before.contains(&p.key) => {
                before.push(p.key.clone());
                cur = p;
            }
            _ => break,
        }
    }
    before.reverse();
    let mut after: Vec<TransmitterKey> = Vec::new();
    let mut cur = me;
    while before.len() + after.len() < MAX_LINKED {
        let mut next = spans.iter().filter(|s| follows(cur, s));
        match (next.next(), next.next()) {
            (Some(n), None)
                if &n.key != key && !after.contains(&n.key) && !before.contains(&n.key) =>
            {
                after.push(n.key.clone());
                cur = n;
            }
            _ => break,
        }
    }
    before.extend(after);
    before
}
