//! What the benchmark programs share.

use chrono::{DateTime, Utc};
use the_eye::domain::{Timestamp, ValidEvent};
use the_eye::store::NewEvent;

/// A valid page view as the workers hand it to the store, received when it happened.
pub fn pageview(event_id: uuid::Uuid, session_id: String, path: String, at: DateTime<Utc>) -> NewEvent {
    let data = serde_json::json!({"host": "bench.example", "path": path});
    NewEvent {
        event: ValidEvent {
            event_id,
            session_id,
            category: "page interaction".into(),
            name: "pageview".into(),
            data: data.as_object().cloned().unwrap_or_default(),
            timestamp: Timestamp::from(at),
        },
        received_at: at,
        application: None,
    }
}

/// A session id as the tracker makes one (`crypto.randomUUID()`, a UUIDv4),
/// drawn from `seed` so that a run can be repeated: the same seed, the same id.
/// Random ids put each session's rows at a random place of the store's session
/// index, as real visitors' do; a few fixed names would keep it to a few pages.
pub fn session_id(seed: u64) -> String {
    let (a, b) = (mix(seed), mix(seed ^ 0x9e37_79b9_7f4a_7c15));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes());
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}

/// splitmix64's finaliser: a well-spread 64-bit hash of `x`.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn session_ids_are_uuidv4_and_repeatable() {
        let a = super::session_id(7);
        assert_eq!(a, super::session_id(7));
        assert_ne!(a, super::session_id(8));
        assert_eq!(uuid::Uuid::parse_str(&a).unwrap().get_version_num(), 4);
    }
}
