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

/// Events a visitor's session sends, on average, in [`visitor_session`].
pub const SESSION_EVENTS: u64 = 10;

/// The session of the `k`th event of one stream of events (a load
/// generator's connection, a benchmark's run) spread over `live` visitors'
/// sessions at once: each event goes to one of them at random, and every
/// session is replaced by a new random id once the stream has sent
/// [`SESSION_EVENTS`] events a session, so a session gets about that many.
pub fn visitor_session(stream: u64, k: u64, live: u64) -> String {
    let slot = mix(stream << 40 ^ k) % live;
    let generation = k / (SESSION_EVENTS * live);
    session_id(mix(stream << 32 ^ slot) ^ generation)
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

    #[test]
    fn a_stream_spreads_over_its_live_sessions_and_replaces_them() {
        use std::collections::HashSet;
        let ids: Vec<String> = (0..2_000).map(|k| super::visitor_session(3, k, 100)).collect();
        // 100 live sessions, replaced after 1,000 events of the stream.
        let first: HashSet<&String> = ids[..1_000].iter().collect();
        let second: HashSet<&String> = ids[1_000..].iter().collect();
        assert!(first.len() > 1 && first.len() <= 100, "{}", first.len());
        assert!(second.len() > 1 && second.len() <= 100, "{}", second.len());
        assert!(first.is_disjoint(&second), "the second generation has new ids");
        assert_ne!(super::visitor_session(4, 0, 100), super::visitor_session(3, 0, 100), "streams differ");
    }
}
