//! Trace context: one trace follows an order from the HTTP request that placed it, through the
//! streams, to the consumers and the kitchen. HTTP carries it in the W3C `traceparent` header
//! (or, behind API Gateway, X-Ray's `X-Amzn-Trace-Id`); events carry it in their `traceparent`
//! field, because Kinesis records, Redis messages and the host's log have no headers of their own.
//! Every piece of work is a span of its own: a child of the context it was handed, or the root of
//! a new trace when it was handed none.

use std::fmt;

/// A span's place in a trace, as `traceparent` spells it (version 00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl TraceContext {
    /// A `traceparent` value: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`. All-zero
    /// ids, upper-case hex and version ff are invalid (W3C Trace Context §3.2); a later version
    /// is read by its first four fields.
    pub fn parse(header: &str) -> Option<TraceContext> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let version = hex_array::<1>(version)?[0];
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let (trace_id, span_id, flags) = (hex_array::<16>(trace)?, hex_array::<8>(span)?, hex_array::<1>(flags)?[0]);
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// X-Ray's header (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1`)
    /// read as W3C context: the root's time and random parts are the trace id, as the X-Ray
    /// propagators of OpenTelemetry map them. Without a `Parent` there is no span to continue.
    pub fn from_xray(header: &str) -> Option<TraceContext> {
        let (mut root, mut parent, mut sampled) = (None, None, true);
        for field in header.split(';') {
            match field.trim().split_once('=') {
                Some(("Root", v)) => root = Some(v),
                Some(("Parent", v)) => parent = Some(v),
                Some(("Sampled", v)) => sampled = v != "0",
                _ => {}
            }
        }
        let mut root = root?.split('-');
        let (version, time, random) = (root.next()?, root.next()?, root.next()?);
        if version != "1" || time.len() != 8 || random.len() != 24 || root.next().is_some() {
            return None;
        }
        let trace_id = hex_array::<16>(&format!("{time}{random}"))?;
        let span_id = hex_array::<8>(parent?)?;
        (trace_id != [0; 16] && span_id != [0; 8]).then_some(TraceContext { trace_id, span_id, sampled })
    }

    /// The context a request arrives in, from its headers (`header` looks one up by its lower-case
    /// name): a valid `traceparent` first, else X-Ray's `x-amzn-trace-id` (API Gateway and
    /// Lambda's own), else none.
    pub fn incoming<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<TraceContext> {
        header("traceparent").and_then(TraceContext::parse).or_else(|| header("x-amzn-trace-id").and_then(TraceContext::from_xray))
    }

    /// The root of a new trace at `now_ms`, from 128 `random` bits. The trace id starts with the
    /// time in seconds, so X-Ray (which needs that) accepts it as well as any W3C tracer.
    pub fn root(now_ms: i64, random: u128) -> TraceContext {
        let mut trace_id = random.to_be_bytes();
        let seconds = (now_ms / 1000).clamp(0, i64::from(u32::MAX)) as u32;
        trace_id[..4].copy_from_slice(&seconds.to_be_bytes());
        TraceContext { trace_id, span_id: span_id(random as u64), sampled: true }
    }

    /// A new span in this trace, whose parent is this one, from 64 `random` bits.
    pub fn child(&self, random: u64) -> TraceContext {
        TraceContext { span_id: span_id(random), ..*self }
    }

    /// A child of `parent` when it is a valid `traceparent`, else the root of a new trace.
    pub fn continue_or_start(parent: Option<&str>, now_ms: i64, random: u128) -> TraceContext {
        match parent.and_then(TraceContext::parse) {
            Some(parent) => parent.child(random as u64),
            None => TraceContext::root(now_ms, random),
        }
    }

    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }

    /// As a `traceparent` value.
    pub fn header(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), u8::from(self.sampled))
    }
}

/// A span id from random bits; all zeros is invalid, so that one draw becomes 1.
fn span_id(random: u64) -> [u8; 8] {
    random.max(1).to_be_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `N` bytes from exactly `2N` lower-case hex digits.
fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_what_the_spec_rejects() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(header).expect("valid");
        assert_eq!(ctx.header(), header);
        assert_eq!(ctx.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(ctx.sampled);
        assert!(!TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid").sampled);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version is read by its first four fields.
        assert!(TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more").is_some());
    }

    #[test]
    fn xray_headers_map_to_the_same_trace() {
        let ctx = TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1").expect("valid");
        assert_eq!(ctx.header(), "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01");
        assert!(!TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0").expect("valid").sampled);
        assert_eq!(TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793"), None, "no parent span");
        assert_eq!(TraceContext::from_xray("Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8"), None);
        assert_eq!(TraceContext::from_xray("garbage"), None);
    }

    #[test]
    fn an_incoming_request_prefers_traceparent_and_falls_back_to_xray() {
        let xray = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let w3c = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let incoming = |pairs: &[(&str, &'static str)]| TraceContext::incoming(|name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v));
        assert_eq!(incoming(&[("traceparent", w3c), ("x-amzn-trace-id", xray)]).map(|c| c.header()).as_deref(), Some(w3c));
        let from_xray = incoming(&[("traceparent", "garbage"), ("x-amzn-trace-id", xray)]).expect("x-ray");
        assert_eq!(from_xray.trace_id_hex(), "5759e988bd862e3fe1be46a994272793", "an invalid traceparent is ignored");
        assert_eq!(incoming(&[]), None);
    }

    #[test]
    fn children_keep_the_trace_and_roots_start_with_the_time() {
        let root = TraceContext::root(1_700_000_000_123, 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        assert_eq!(&root.trace_id[..4], &1_700_000_000u32.to_be_bytes());
        assert_eq!(&root.trace_id[4..], &[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
        let child = root.child(42);
        assert_eq!((child.trace_id, child.span_id), (root.trace_id, 42u64.to_be_bytes()));
        assert_eq!(root.child(0).span_id, 1u64.to_be_bytes(), "never the invalid all-zero id");
        let continued = TraceContext::continue_or_start(Some(&root.header()), 0, 7);
        assert_eq!(continued.trace_id, root.trace_id);
        assert_ne!(TraceContext::continue_or_start(Some("nonsense"), 1_800_000_000_000, 7).trace_id, root.trace_id);
    }
}
