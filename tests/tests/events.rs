//! The sample stream messages in `events/stream/` are in the wire format the consumer reads.

use gocoffee_core::StoredEvent;
use gocoffee_tests::workspace;

#[test]
fn every_sample_stream_event_parses_and_round_trips() {
    let dir = workspace().join("events/stream");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("events/stream") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let event: StoredEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let original: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(serde_json::to_value(&event).expect("serialize"), original, "{} does not round-trip", path.display());
        seen += 1;
    }
    assert!(seen >= 2, "expected sample events in {}", dir.display());
}
