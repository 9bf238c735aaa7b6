//! Real-time order status: the channels clients follow, the one envelope every transport carries
//! (Server-Sent Events on Spin and the local host, WebSocket on AWS and the local host), and who
//! may follow what. Delivery is at least once: a client keeps the highest `version` it has seen
//! per order and drops anything at or below it.

use serde::{Deserialize, Serialize};

use crate::order::{OrderEvent, OrderStatus, StoredEvent};
use crate::{DomainError, Role};

/// Most channels one connection or stream may follow.
pub const MAX_CHANNELS: usize = 10;

/// What a client follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// One order's status changes: its customer and staff may follow it.
    Order(String),
    /// The kitchen board: every order entering, moving on and leaving. Baristas and above.
    Kitchen,
}

impl Channel {
    /// `order:<id>` or `kitchen`.
    pub fn parse(s: &str) -> Result<Channel, DomainError> {
        match s.split_once(':') {
            None if s == "kitchen" => Ok(Channel::Kitchen),
            Some(("order", id)) if crate::ids::is_ulid(id) => Ok(Channel::Order(id.to_owned())),
            _ => Err(DomainError::validation("invalid_channel", "a channel is `kitchen` or `order:<order id>`")),
        }
    }

    /// Whether `role` may follow this channel, before ownership: the kitchen board is staff's;
    /// an order's channel is also its customer's (which the caller checks against the order).
    pub fn open_to(&self, role: Role) -> bool {
        match self {
            Channel::Kitchen => role.is_staff(),
            Channel::Order(_) => true,
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Order(id) => write!(f, "order:{id}"),
            Channel::Kitchen => f.write_str("kitchen"),
        }
    }
}

/// Parses a client's channel list (comma-separated, or repeated), without duplicates, in order.
pub fn parse_channels<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<Channel>, DomainError> {
    let mut channels: Vec<Channel> = Vec::new();
    for value in values.into_iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        let channel = Channel::parse(value)?;
        if !channels.contains(&channel) {
            channels.push(channel);
        }
    }
    if channels.is_empty() {
        return Err(DomainError::validation("invalid_channel", "name at least one channel: `kitchen` or `order:<order id>`"));
    }
    if channels.len() > MAX_CHANNELS {
        return Err(DomainError::validation("too_many_channels", format!("at most {MAX_CHANNELS} channels at once")));
    }
    Ok(channels)
}

/// One message on a channel: the same JSON on every transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The order event's id: the same on every redelivery.
    pub event_id: String,
    pub channel: String,
    /// The order event's type (`OrderConfirmed`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: String,
    /// The order's status after the event.
    pub status: OrderStatus,
    /// The order's version after the event: what clients de-duplicate and order by.
    pub version: u64,
    /// When the event happened (RFC 3339, UTC).
    pub time: String,
    /// The station, for a station's part starting or ready (`PartStarted`, `PartReady`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station: Option<String>,
}

impl OrderEvent {
    /// Whether the kitchen board hears of it: an order arriving on the board, moving on it, or
    /// leaving it. Payment steps of an order not yet confirmed are not the kitchen's.
    fn for_the_kitchen(&self) -> bool {
        !matches!(self, OrderEvent::OrderPlaced { .. } | OrderEvent::PaymentRequested { .. } | OrderEvent::OrderPaid { .. })
    }
}

/// The messages one order event makes: always on its order's channel, and on the kitchen's when
/// it concerns the board. `time` formats the event's time.
pub fn envelopes(event: &StoredEvent, time: impl Fn(i64) -> String) -> Vec<Envelope> {
    let mut channels = vec![Channel::Order(event.order_id.clone())];
    if event.event.for_the_kitchen() {
        channels.push(Channel::Kitchen);
    }
    let time = time(event.occurred_at_ms);
    let station = match &event.event {
        OrderEvent::PartStarted { station } | OrderEvent::PartReady { station } => Some(station.clone()),
        _ => None,
    };
    channels
        .into_iter()
        .map(|channel| Envelope {
            event_id: event.event_id.clone(),
            channel: channel.to_string(),
            kind: event.event.name().to_owned(),
            order_id: event.order_id.clone(),
            status: event.event.status_after(),
            version: event.version,
            time: time.clone(),
            station: station.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: u64, event: OrderEvent) -> StoredEvent {
        StoredEvent {
            event_id: format!("E{version}"),
            order_id: "01JABCDEFGHJKMNPQRSTVWXYZ0".into(),
            version,
            occurred_at_ms: 1_000,
            actor: "system".into(),
            correlation_id: None,
            traceparent: None,
            event,
        }
    }

    #[test]
    fn channels_parse_from_their_names_and_nothing_else() {
        assert_eq!(Channel::parse("kitchen").expect("valid"), Channel::Kitchen);
        let order = Channel::parse("order:01JABCDEFGHJKMNPQRSTVWXYZ0").expect("valid");
        assert_eq!(order.to_string(), "order:01JABCDEFGHJKMNPQRSTVWXYZ0");
        for bad in ["", "kitchens", "order:", "order:../x", "customer:1", "KITCHEN", "order:a b"] {
            assert!(Channel::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_channel_list_is_deduplicated_and_bounded() {
        let list = parse_channels(["kitchen, kitchen", "order:01JABCDEFGHJKMNPQRSTVWXYZ0"]).expect("valid");
        assert_eq!(list.len(), 2);
        assert!(parse_channels(["", " , "]).is_err());
        let many: Vec<String> = (0..=MAX_CHANNELS).map(|i| format!("order:01JABCDEFGHJKMNPQRSTVWX{i:02}")).collect();
        assert!(parse_channels(many.iter().map(String::as_str)).is_err());
    }

    #[test]
    fn only_staff_may_follow_the_kitchen_board() {
        assert!(!Channel::Kitchen.open_to(Role::Customer));
        assert!(Channel::Kitchen.open_to(Role::Barista));
        assert!(Channel::Order("x".into()).open_to(Role::Customer));
    }

    #[test]
    fn the_kitchen_hears_of_orders_from_their_confirmation_on() {
        let channels = |e: OrderEvent| envelopes(&event(2, e), |_| "t".into()).into_iter().map(|m| m.channel).collect::<Vec<_>>();
        let own = "order:01JABCDEFGHJKMNPQRSTVWXYZ0".to_owned();
        assert_eq!(channels(OrderEvent::PaymentRequested { intent_id: "pi".into() }), std::slice::from_ref(&own));
        assert_eq!(channels(OrderEvent::OrderConfirmed), [own.clone(), "kitchen".into()]);
        assert_eq!(channels(OrderEvent::OrderCancelled { reason: None }), [own.clone(), "kitchen".into()]);
        assert_eq!(channels(OrderEvent::PartReady { station: "food".into() }), [own, "kitchen".into()]);
    }

    #[test]
    fn the_envelope_is_the_documented_json() {
        let m = &envelopes(&event(3, OrderEvent::PreparationStarted), |ms| format!("at {ms}"))[1];
        let json = serde_json::to_value(m).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"event_id": "E3", "channel": "kitchen", "type": "PreparationStarted", "order_id": "01JABCDEFGHJKMNPQRSTVWXYZ0",
                "status": "preparing", "version": 3, "time": "at 1000"})
        );
        let m = &envelopes(&event(4, OrderEvent::PartStarted { station: "brew-bar".into() }), |ms| format!("at {ms}"))[0];
        assert_eq!(serde_json::to_value(m).expect("json")["station"], "brew-bar");
    }
}
