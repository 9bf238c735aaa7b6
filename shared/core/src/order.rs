//! Orders: the request a customer sends, server-side pricing, the status machine, and the events
//! that record every change. An order is the fold of its events; [`Order::decide`] turns a
//! command into the events it causes, or an error, without touching any state.

use serde::{Deserialize, Serialize};

use crate::kitchen::{Kitchen, Part};
use crate::menu::Menu;
use crate::{Cents, DomainError, Role};

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 20;
pub const MAX_NOTE_CHARS: usize = 280;
pub const MAX_MODIFIERS_PER_LINE: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Preparing,
    Ready,
    Completed,
    Cancelled,
    Refunded,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 7] = [
        OrderStatus::Pending,
        OrderStatus::Confirmed,
        OrderStatus::Preparing,
        OrderStatus::Ready,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
        OrderStatus::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Preparing => "preparing",
            OrderStatus::Ready => "ready",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Statuses in which the kitchen has the order on its board.
    pub fn in_kitchen(self) -> bool {
        matches!(self, OrderStatus::Confirmed | OrderStatus::Preparing)
    }
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Paid at the counter on pickup: the order is confirmed without a payment step.
    #[default]
    PayAtCounter,
    /// Paid on-chain before the kitchen sees the order:
    /// `{"crypto": {"chain": "polygon", "asset": "USDC"}}`. Which chains and assets are taken is
    /// deployment configuration (`payment_chains`).
    Crypto(CryptoMethod),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CryptoMethod {
    /// A configured chain's name (`ethereum`, `polygon`, `bsc`, `arbitrum`).
    pub chain: String,
    /// An asset allow-listed on it (`USDC`, `ETH`).
    pub asset: String,
}

impl PaymentMethod {
    pub fn crypto(&self) -> Option<&CryptoMethod> {
        match self {
            PaymentMethod::Crypto(c) => Some(c),
            PaymentMethod::PayAtCounter => None,
        }
    }

    fn check(&self) -> Result<(), DomainError> {
        let Some(c) = self.crypto() else { return Ok(()) };
        let ident = |s: &str, max: usize| !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ident(&c.chain, 32) || !ident(&c.asset, 16) {
            return Err(DomainError::validation("invalid_payment_method", "a crypto payment names a chain (up to 32 letters) and an asset (up to 16)"));
        }
        Ok(())
    }
}

/// One line of an order as the client sends it. Prices are never taken from the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub item_id: String,
    #[serde(default)]
    pub size: Option<String>,
    #[serde(default)]
    pub modifiers: Vec<String>,
    pub quantity: u32,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    pub lines: Vec<OrderLine>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub payment_method: PaymentMethod,
}

/// A line after the server priced it from the menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub item_id: String,
    pub name: String,
    pub size: String,
    pub modifiers: Vec<String>,
    pub quantity: u32,
    pub unit_price_cents: Cents,
    pub line_total_cents: Cents,
}

/// What an order is once placed: priced lines, total, note, payment method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedOrder {
    pub lines: Vec<PricedLine>,
    pub total_cents: Cents,
    pub note: Option<String>,
    pub payment_method: PaymentMethod,
}

impl OrderRequest {
    /// Checks the limits and prices every line from `menu`.
    pub fn price(&self, menu: &Menu) -> Result<PricedOrder, DomainError> {
        if self.lines.is_empty() {
            return Err(DomainError::validation("empty_order", "an order needs at least one line"));
        }
        if self.lines.len() > MAX_LINES {
            return Err(DomainError::validation("too_many_lines", format!("an order has at most {MAX_LINES} lines")));
        }
        let note = match self.note.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(n) if n.chars().count() > MAX_NOTE_CHARS => {
                return Err(DomainError::validation("note_too_long", format!("the note is at most {MAX_NOTE_CHARS} characters")));
            }
            Some(n) if n.chars().any(|c| c.is_control() && c != '\n') => {
                return Err(DomainError::validation("invalid_note", "the note may not contain control characters"));
            }
            Some(n) => Some(n.to_owned()),
        };
        let mut lines = Vec::with_capacity(self.lines.len());
        let mut total = Cents::ZERO;
        for (index, line) in self.lines.iter().enumerate() {
            let priced = price_line(menu, line).map_err(|e| at_line(index, e))?;
            total = total.checked_add(priced.line_total_cents)?;
            lines.push(priced);
        }
        self.payment_method.check()?;
        Ok(PricedOrder { lines, total_cents: total, note, payment_method: self.payment_method.clone() })
    }
}

fn at_line(index: usize, e: DomainError) -> DomainError {
    match e {
        DomainError::Validation { code, message } => DomainError::Validation { code, message: format!("line {}: {message}", index + 1) },
        other => other,
    }
}

fn price_line(menu: &Menu, line: &OrderLine) -> Result<PricedLine, DomainError> {
    let item = menu.item(&line.item_id).ok_or_else(|| DomainError::UnknownItem(line.item_id.clone()))?;
    if !item.available {
        return Err(DomainError::ItemUnavailable(item.id.clone()));
    }
    if !(1..=MAX_QUANTITY).contains(&line.quantity) {
        return Err(DomainError::validation("invalid_quantity", format!("quantity must be 1 to {MAX_QUANTITY}")));
    }
    let size = match (&line.size, item.sizes.as_slice()) {
        (Some(size), _) => item.size(size).ok_or_else(|| {
            let known: Vec<&str> = item.sizes.iter().map(|s| s.size.as_str()).collect();
            DomainError::validation("unknown_size", format!("`{}` comes in {}, not `{size}`", item.id, known.join(", ")))
        })?,
        (None, [only]) => only,
        (None, _) => return Err(DomainError::validation("size_required", format!("choose a size for `{}`", item.id))),
    };
    if line.modifiers.len() > MAX_MODIFIERS_PER_LINE {
        return Err(DomainError::validation("too_many_modifiers", format!("a line takes at most {MAX_MODIFIERS_PER_LINE} modifiers")));
    }
    let mut unit = size.price_cents;
    let mut groups: Vec<&str> = Vec::new();
    for (i, id) in line.modifiers.iter().enumerate() {
        let m = item.modifier(id).ok_or_else(|| DomainError::validation("unknown_modifier", format!("`{}` has no modifier `{id}`", item.id)))?;
        if line.modifiers[..i].contains(id) {
            return Err(DomainError::validation("duplicate_modifier", format!("modifier `{id}` is listed twice")));
        }
        if let Some(group) = m.group.as_deref() {
            if groups.contains(&group) {
                return Err(DomainError::validation("conflicting_modifiers", format!("choose one {group} option")));
            }
            groups.push(group);
        }
        unit = unit.checked_add(m.price_cents)?;
    }
    Ok(PricedLine {
        item_id: item.id.clone(),
        name: item.name.clone(),
        size: size.size.clone(),
        modifiers: line.modifiers.clone(),
        quantity: line.quantity,
        unit_price_cents: unit,
        line_total_cents: unit.checked_mul(u64::from(line.quantity))?,
    })
}

/// Who is acting on an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// The platform itself (the order consumer, a saga step).
    System,
    User {
        id: String,
        role: Role,
    },
}

impl Actor {
    pub fn id(&self) -> &str {
        match self {
            Actor::System => "system",
            Actor::User { id, .. } => id,
        }
    }
}

/// What happened to an order. The serialized form is the wire format on the orders stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    OrderPlaced {
        customer_id: String,
        order: PricedOrder,
    },
    OrderConfirmed,
    PreparationStarted,
    OrderReady,
    OrderCompleted,
    OrderCancelled {
        reason: Option<String>,
    },
    OrderRefunded,
    /// The order consumer asked the payment service for this crypto order's payment intent.
    PaymentRequested {
        intent_id: String,
    },
    /// The payment service confirmed the payment: the order may now be confirmed.
    OrderPaid {
        intent_id: String,
    },
    /// On confirmation, the order's lines split by the station that prepares them.
    TicketRouted {
        parts: Vec<Part>,
    },
    /// A station began its part (the order's first also brings `PreparationStarted`).
    PartStarted {
        station: String,
    },
    /// A station finished its part (the order's last also brings `OrderReady`).
    PartReady {
        station: String,
    },
}

impl OrderEvent {
    /// The status an order has after this event. Payment requests and payments happen only while
    /// an order is pending ([`Order::decide_request_payment`], [`Order::decide_paid`]), so every
    /// event fixes the status on its own (what live status messages carry without a read).
    pub fn status_after(&self) -> OrderStatus {
        match self {
            OrderEvent::OrderPlaced { .. } | OrderEvent::PaymentRequested { .. } | OrderEvent::OrderPaid { .. } => OrderStatus::Pending,
            OrderEvent::OrderConfirmed | OrderEvent::TicketRouted { .. } => OrderStatus::Confirmed,
            OrderEvent::PreparationStarted | OrderEvent::PartStarted { .. } | OrderEvent::PartReady { .. } => OrderStatus::Preparing,
            OrderEvent::OrderReady => OrderStatus::Ready,
            OrderEvent::OrderCompleted => OrderStatus::Completed,
            OrderEvent::OrderCancelled { .. } => OrderStatus::Cancelled,
            OrderEvent::OrderRefunded => OrderStatus::Refunded,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            OrderEvent::OrderPlaced { .. } => "OrderPlaced",
            OrderEvent::OrderConfirmed => "OrderConfirmed",
            OrderEvent::PreparationStarted => "PreparationStarted",
            OrderEvent::OrderReady => "OrderReady",
            OrderEvent::OrderCompleted => "OrderCompleted",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
            OrderEvent::OrderRefunded => "OrderRefunded",
            OrderEvent::PaymentRequested { .. } => "PaymentRequested",
            OrderEvent::OrderPaid { .. } => "OrderPaid",
            OrderEvent::TicketRouted { .. } => "TicketRouted",
            OrderEvent::PartStarted { .. } => "PartStarted",
            OrderEvent::PartReady { .. } => "PartReady",
        }
    }
}

/// An event as stored in the order's log and published on the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: String,
    pub order_id: String,
    /// Position in the order's log, from 1.
    pub version: u64,
    pub occurred_at_ms: i64,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The W3C trace context (`traceparent`) of the work that made this event, so the trace
    /// follows the order across streams that carry no trace header of their own (the CloudEvents
    /// distributed-tracing attribute of the same name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    #[serde(flatten)]
    pub event: OrderEvent,
}

/// The current state of an order: the fold of its events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: OrderStatus,
    pub lines: Vec<PricedLine>,
    pub total_cents: Cents,
    pub note: Option<String>,
    pub payment_method: PaymentMethod,
    /// The crypto payment's intent, once requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    /// The crypto payment was confirmed on-chain.
    #[serde(default)]
    pub paid: bool,
    /// Its share of each station's work, once routed (on confirmation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<OrderPart>,
    pub placed_at_ms: i64,
    pub updated_at_ms: i64,
    pub version: u64,
}

/// Something an actor asks to do to an existing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Confirm,
    StartPreparation,
    MarkReady,
    Collect,
    Cancel,
    Refund,
}

impl Command {
    fn verb(self) -> &'static str {
        match self {
            Command::Confirm => "confirm",
            Command::StartPreparation => "start preparing",
            Command::MarkReady => "mark ready",
            Command::Collect => "collect",
            Command::Cancel => "cancel",
            Command::Refund => "refund",
        }
    }
}

impl Order {
    /// A newly placed order: what `OrderPlaced` at version 1 makes.
    pub fn open(id: &str, customer_id: &str, placed: &PricedOrder, at_ms: i64) -> Order {
        Order {
            id: id.to_owned(),
            customer_id: customer_id.to_owned(),
            status: OrderStatus::Pending,
            lines: placed.lines.clone(),
            total_cents: placed.total_cents,
            note: placed.note.clone(),
            payment_method: placed.payment_method.clone(),
            payment_intent: None,
            paid: false,
            parts: vec![],
            placed_at_ms: at_ms,
            updated_at_ms: at_ms,
            version: 1,
        }
    }

    /// Starts an order from its first event; `None` unless that event is `OrderPlaced`.
    fn placed(first: &StoredEvent) -> Option<Order> {
        match &first.event {
            OrderEvent::OrderPlaced { customer_id, order } => {
                Some(Order { version: first.version, ..Order::open(&first.order_id, customer_id, order, first.occurred_at_ms) })
            }
            _ => None,
        }
    }

    /// Folds an order's log. `None` for an empty log or one that doesn't start with `OrderPlaced`.
    pub fn from_events(events: &[StoredEvent]) -> Option<Order> {
        let (first, rest) = events.split_first()?;
        let mut order = Order::placed(first)?;
        for e in rest {
            order.apply(e);
        }
        Some(order)
    }

    /// Applies one recorded event. Events are facts: they were checked by [`Order::decide`]
    /// before they were written, so this does not check again.
    pub fn apply(&mut self, e: &StoredEvent) {
        match &e.event {
            OrderEvent::PaymentRequested { intent_id } => self.payment_intent = Some(intent_id.clone()),
            OrderEvent::OrderPaid { .. } => self.paid = true,
            OrderEvent::TicketRouted { parts } => self.parts = parts.iter().cloned().map(OrderPart::from).collect(),
            OrderEvent::PartStarted { station } => {
                if let Some(part) = self.parts.iter_mut().find(|p| &p.station == station) {
                    part.started_at_ms = Some(e.occurred_at_ms);
                }
            }
            OrderEvent::PartReady { station } => {
                if let Some(part) = self.parts.iter_mut().find(|p| &p.station == station) {
                    part.started_at_ms.get_or_insert(e.occurred_at_ms);
                    part.ready_at_ms = Some(e.occurred_at_ms);
                }
            }
            _ => {}
        }
        self.status = e.event.status_after();
        self.version = e.version;
        self.updated_at_ms = e.occurred_at_ms;
    }

    /// The id of a crypto order's payment intent: one per order, so asking twice makes one.
    pub fn intent_id(&self) -> String {
        format!("pi_{}", self.id)
    }

    /// `PaymentRequested`, when this is a pending crypto order whose payment was not asked for yet.
    pub fn decide_request_payment(&self) -> Option<OrderEvent> {
        (self.status == OrderStatus::Pending && self.payment_method.crypto().is_some() && self.payment_intent.is_none())
            .then(|| OrderEvent::PaymentRequested { intent_id: self.intent_id() })
    }

    /// `OrderPaid`, when this order is still waiting for `intent_id`'s payment. A payment that
    /// arrives for a cancelled order is the payment service's refund to make, not a state here.
    pub fn decide_paid(&self, intent_id: &str) -> Option<OrderEvent> {
        (self.status == OrderStatus::Pending && !self.paid && self.payment_intent.as_deref() == Some(intent_id))
            .then(|| OrderEvent::OrderPaid { intent_id: intent_id.to_owned() })
    }

    /// The status `command` leads to from `self.status` when `actor` gives it, or why not.
    ///
    /// Customers may cancel until preparation starts; staff until the order is ready. Only the
    /// system confirms; baristas and above run the kitchen; managers and above refund.
    pub fn decide(&self, command: Command, actor: &Actor, reason: Option<String>) -> Result<OrderEvent, DomainError> {
        use OrderStatus::*;
        let role = match actor {
            Actor::System => None,
            Actor::User { role, .. } => Some(*role),
        };
        let staff = role.is_none_or(Role::is_staff);
        let illegal = || DomainError::IllegalTransition { from: self.status, action: command.verb() };
        match command {
            Command::Confirm => {
                if role.is_some() {
                    return Err(DomainError::NotPermitted("only the platform confirms orders"));
                }
                if self.payment_method.crypto().is_some() && !self.paid {
                    return Err(DomainError::IllegalTransition { from: self.status, action: "confirm (the crypto payment is not confirmed)" });
                }
                (self.status == Pending).then_some(OrderEvent::OrderConfirmed).ok_or_else(illegal)
            }
            Command::StartPreparation | Command::MarkReady => {
                if !staff {
                    return Err(DomainError::NotPermitted("only kitchen staff can do this"));
                }
                match (command, self.status) {
                    (Command::StartPreparation, Confirmed) => Ok(OrderEvent::PreparationStarted),
                    (Command::MarkReady, Preparing) => Ok(OrderEvent::OrderReady),
                    _ => Err(illegal()),
                }
            }
            Command::Collect => (self.status == Ready).then_some(OrderEvent::OrderCompleted).ok_or_else(illegal),
            Command::Cancel => {
                let allowed = match self.status {
                    Pending | Confirmed => true,
                    Preparing => staff,
                    _ => false,
                };
                if allowed {
                    Ok(OrderEvent::OrderCancelled { reason })
                } else if self.status == Preparing {
                    Err(DomainError::IllegalTransition { from: self.status, action: "cancel (preparation has started; ask the staff)" })
                } else {
                    Err(illegal())
                }
            }
            Command::Refund => {
                if !role.is_none_or(|r| r.at_least(Role::Manager)) {
                    return Err(DomainError::NotPermitted("only a manager can refund"));
                }
                matches!(self.status, Completed | Cancelled).then_some(OrderEvent::OrderRefunded).ok_or_else(illegal)
            }
        }
    }
}

/// One station's share of an order, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPart {
    pub station: String,
    /// Indexes into the order's lines.
    pub lines: Vec<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at_ms: Option<i64>,
}

impl From<Part> for OrderPart {
    /// A part just routed: neither started nor ready.
    fn from(p: Part) -> OrderPart {
        OrderPart { station: p.station, lines: p.lines, started_at_ms: None, ready_at_ms: None }
    }
}

impl OrderPart {
    pub fn is_ready(&self) -> bool {
        self.ready_at_ms.is_some()
    }

    /// `queued`, `started` or `ready`.
    pub fn status(&self) -> &'static str {
        match (self.started_at_ms, self.ready_at_ms) {
            (_, Some(_)) => "ready",
            (Some(_), None) => "started",
            (None, None) => "queued",
        }
    }
}

/// What a station does with its part of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartCommand {
    Start,
    Ready,
}

impl Order {
    /// The order's parts: as routed, or (an order confirmed before routing existed) as `kitchen`
    /// would route it now, with the `TicketRouted` that records it.
    fn routed(&self, kitchen: &Kitchen) -> (Vec<OrderPart>, Option<OrderEvent>) {
        if !self.parts.is_empty() {
            return (self.parts.clone(), None);
        }
        let parts = kitchen.route(&self.lines);
        let own = parts.iter().cloned().map(OrderPart::from).collect();
        (own, Some(OrderEvent::TicketRouted { parts }))
    }

    /// The events a whole-order change brings with it, `event` included, in the order they are
    /// written: a confirmation routes the ticket to the stations; starting the order starts each
    /// part not started; readying it readies each part not ready, before `OrderReady`.
    pub fn with_parts(&self, event: OrderEvent, kitchen: &Kitchen) -> Vec<OrderEvent> {
        match event {
            OrderEvent::OrderConfirmed => vec![OrderEvent::OrderConfirmed, OrderEvent::TicketRouted { parts: kitchen.route(&self.lines) }],
            OrderEvent::PreparationStarted => {
                let (parts, routed) = self.routed(kitchen);
                let started = parts.iter().filter(|p| p.started_at_ms.is_none()).map(|p| OrderEvent::PartStarted { station: p.station.clone() });
                routed.into_iter().chain([OrderEvent::PreparationStarted]).chain(started).collect()
            }
            OrderEvent::OrderReady => {
                let (parts, routed) = self.routed(kitchen);
                let ready = parts.iter().filter(|p| !p.is_ready()).map(|p| OrderEvent::PartReady { station: p.station.clone() });
                routed.into_iter().chain(ready).chain([OrderEvent::OrderReady]).collect()
            }
            other => vec![other],
        }
    }

    /// The events of `station` starting or readying its part, or why not: only staff, only while
    /// the order is on the board, a part is started once and readied once after it started. The
    /// order's first start brings `PreparationStarted`; its last ready brings `OrderReady`.
    pub fn decide_part(&self, command: PartCommand, station: &str, actor: &Actor, kitchen: &Kitchen) -> Result<Vec<OrderEvent>, DomainError> {
        if let Actor::User { role, .. } = actor
            && !role.is_staff()
        {
            return Err(DomainError::NotPermitted("only kitchen staff can do this"));
        }
        let verb = match command {
            PartCommand::Start => "start this part",
            PartCommand::Ready => "mark this part ready",
        };
        if !self.status.in_kitchen() {
            return Err(DomainError::IllegalTransition { from: self.status, action: verb });
        }
        let (parts, routed) = self.routed(kitchen);
        let part = parts
            .iter()
            .find(|p| p.station == station)
            .ok_or_else(|| DomainError::validation("no_part_at_station", format!("nothing in this order is made at `{station}`")))?;
        let mut events: Vec<OrderEvent> = routed.into_iter().collect();
        match command {
            PartCommand::Start if part.started_at_ms.is_none() => {
                if self.status == OrderStatus::Confirmed {
                    events.push(OrderEvent::PreparationStarted);
                }
                events.push(OrderEvent::PartStarted { station: station.to_owned() });
            }
            PartCommand::Ready if part.started_at_ms.is_some() && !part.is_ready() => {
                events.push(OrderEvent::PartReady { station: station.to_owned() });
                if parts.iter().all(|p| p.station == station || p.is_ready()) {
                    events.push(OrderEvent::OrderReady);
                }
            }
            PartCommand::Start => return Err(DomainError::IllegalTransition { from: self.status, action: "start this part (it was started)" }),
            PartCommand::Ready if part.is_ready() => return Err(DomainError::IllegalTransition { from: self.status, action: "mark this part ready (it is)" }),
            PartCommand::Ready => return Err(DomainError::IllegalTransition { from: self.status, action: "mark this part ready (it was not started)" }),
        }
        Ok(events)
    }
}

/// The kitchen's view of an order while it is on the board (confirmed or preparing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KitchenTicket {
    pub order_id: String,
    pub status: OrderStatus,
    pub lines: Vec<PricedLine>,
    pub note: Option<String>,
    pub placed_at_ms: i64,
    #[serde(default)]
    pub parts: Vec<OrderPart>,
}

impl KitchenTicket {
    /// The ticket for `order`, or `None` when the order is not in the kitchen.
    pub fn for_order(order: &Order) -> Option<KitchenTicket> {
        order.status.in_kitchen().then(|| KitchenTicket {
            order_id: order.id.clone(),
            status: order.status,
            lines: order.lines.clone(),
            note: order.note.clone(),
            placed_at_ms: order.placed_at_ms,
            parts: order.parts.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::menu::default_menu;
    use proptest::prelude::*;

    fn menu() -> Menu {
        Menu { items: default_menu() }
    }

    fn line(item: &str, size: Option<&str>, modifiers: &[&str], quantity: u32) -> OrderLine {
        OrderLine { item_id: item.into(), size: size.map(Into::into), modifiers: modifiers.iter().map(|m| m.to_string()).collect(), quantity }
    }

    fn request(lines: Vec<OrderLine>) -> OrderRequest {
        OrderRequest { lines, note: None, payment_method: PaymentMethod::PayAtCounter }
    }

    #[test]
    fn prices_come_from_the_menu_with_modifiers_times_quantity() {
        let priced =
            request(vec![line("latte", Some("large"), &["extra-shot", "oat-milk"], 2), line("croissant", None, &[], 1)]).price(&menu()).expect("valid");
        assert_eq!(priced.lines[0].unit_price_cents, Cents(500 + 90 + 70));
        assert_eq!(priced.lines[0].line_total_cents, Cents(2 * 660));
        assert_eq!(priced.lines[1].size, "regular");
        assert_eq!(priced.total_cents, Cents(1320 + 325));
    }

    #[test]
    fn invalid_lines_are_rejected_with_stable_codes() {
        let m = menu();
        let code = |lines: Vec<OrderLine>| request(lines).price(&m).map_err(|e| e.code());
        assert_eq!(code(vec![]), Err("empty_order"));
        assert_eq!(code(vec![line("latte", Some("large"), &[], 1); 51]), Err("too_many_lines"));
        assert_eq!(code(vec![line("latte", Some("large"), &[], 0)]), Err("invalid_quantity"));
        assert_eq!(code(vec![line("latte", Some("large"), &[], 21)]), Err("invalid_quantity"));
        assert_eq!(code(vec![line("unicorn-frappe", None, &[], 1)]), Err("unknown_item"));
        assert_eq!(code(vec![line("latte", Some("venti"), &[], 1)]), Err("unknown_size"));
        assert_eq!(code(vec![line("latte", None, &[], 1)]), Err("size_required"));
        assert_eq!(code(vec![line("latte", Some("small"), &["glitter"], 1)]), Err("unknown_modifier"));
        assert_eq!(code(vec![line("latte", Some("small"), &["oat-milk", "soy-milk"], 1)]), Err("conflicting_modifiers"));
        assert_eq!(code(vec![line("latte", Some("small"), &["extra-shot", "extra-shot"], 1)]), Err("duplicate_modifier"));
        assert_eq!(code(vec![line("latte", Some("large"), &[], 20); 50]).map(|_| ()), Ok(()));
    }

    #[test]
    fn an_unavailable_item_cannot_be_ordered() {
        let mut m = menu();
        m.items.iter_mut().filter(|i| i.id == "mocha").for_each(|i| i.available = false);
        let r = request(vec![line("mocha", Some("small"), &[], 1)]).price(&m);
        assert_eq!(r.map_err(|e| e.code()), Err("item_unavailable"));
    }

    #[test]
    fn long_notes_are_rejected_and_blank_notes_dropped() {
        let mut r = request(vec![line("espresso", Some("single"), &[], 1)]);
        r.note = Some("x".repeat(MAX_NOTE_CHARS + 1));
        assert_eq!(r.price(&menu()).map_err(|e| e.code()), Err("note_too_long"));
        r.note = Some("   ".into());
        assert_eq!(r.price(&menu()).map(|p| p.note), Ok(None));
    }

    fn placed_event() -> StoredEvent {
        let order = request(vec![line("espresso", Some("single"), &[], 1)]).price(&menu()).expect("valid");
        StoredEvent {
            event_id: "e1".into(),
            order_id: "o1".into(),
            version: 1,
            occurred_at_ms: 10,
            actor: "u1".into(),
            correlation_id: None,
            traceparent: None,
            event: OrderEvent::OrderPlaced { customer_id: "u1".into(), order },
        }
    }

    fn placed() -> Order {
        Order::from_events(&[placed_event()]).expect("placed")
    }

    fn in_status(status: OrderStatus) -> Order {
        Order { status, ..placed() }
    }

    fn user(role: Role) -> Actor {
        Actor::User { id: "someone".into(), role }
    }

    /// An order of a latte and a croissant: two stations' work in the default kitchen.
    fn two_station_order() -> Order {
        let order = request(vec![line("latte", Some("large"), &[], 1), line("croissant", None, &[], 2)]).price(&menu()).expect("valid");
        Order::open("o2", "u1", &order, 10)
    }

    /// Records `events` on `order` at `at_ms`, as the app does.
    fn record(order: &mut Order, events: Vec<OrderEvent>, at_ms: i64) {
        for event in events {
            let version = order.version + 1;
            order.apply(&StoredEvent {
                event_id: format!("e{version}"),
                order_id: order.id.clone(),
                version,
                occurred_at_ms: at_ms,
                actor: "x".into(),
                correlation_id: None,
                traceparent: None,
                event,
            });
        }
    }

    fn names(events: &[OrderEvent]) -> Vec<&'static str> {
        events.iter().map(OrderEvent::name).collect()
    }

    #[test]
    fn stations_start_and_ready_their_parts_and_the_last_ready_part_readies_the_order() {
        let kitchen = Kitchen::initial();
        let barista = user(Role::Barista);
        let mut order = two_station_order();
        let confirmed = order.with_parts(order.decide(Command::Confirm, &Actor::System, None).expect("confirm"), &kitchen);
        assert_eq!(names(&confirmed), ["OrderConfirmed", "TicketRouted"]);
        record(&mut order, confirmed, 20);
        assert_eq!(order.parts.iter().map(|p| (p.station.as_str(), p.lines.clone())).collect::<Vec<_>>(), [("espresso-bar", vec![0]), ("food", vec![1])]);
        let code = |r: Result<Vec<OrderEvent>, DomainError>| r.map_err(|e| e.code());
        assert_eq!(code(order.decide_part(PartCommand::Ready, "food", &barista, &kitchen)), Err("illegal_transition"), "not started");
        assert_eq!(code(order.decide_part(PartCommand::Start, "brew-bar", &barista, &kitchen)), Err("no_part_at_station"));
        assert_eq!(code(order.decide_part(PartCommand::Start, "food", &user(Role::Customer), &kitchen)), Err("forbidden"));

        let started = order.decide_part(PartCommand::Start, "food", &barista, &kitchen).expect("start");
        assert_eq!(names(&started), ["PreparationStarted", "PartStarted"], "the first part starts the order");
        record(&mut order, started, 30);
        assert_eq!(order.status, OrderStatus::Preparing);
        assert_eq!(code(order.decide_part(PartCommand::Start, "food", &barista, &kitchen)), Err("illegal_transition"), "once");
        assert_eq!(names(&order.decide_part(PartCommand::Start, "espresso-bar", &barista, &kitchen).expect("start")), ["PartStarted"]);

        let food_ready = order.decide_part(PartCommand::Ready, "food", &barista, &kitchen).expect("ready");
        assert_eq!(names(&food_ready), ["PartReady"], "the bar's part is still to come");
        record(&mut order, food_ready, 40);
        assert_eq!(order.status, OrderStatus::Preparing);
        record(&mut order, vec![OrderEvent::PartStarted { station: "espresso-bar".into() }], 45);
        let last = order.decide_part(PartCommand::Ready, "espresso-bar", &barista, &kitchen).expect("ready");
        assert_eq!(names(&last), ["PartReady", "OrderReady"]);
        record(&mut order, last, 50);
        assert_eq!(order.status, OrderStatus::Ready);
        assert!(order.parts.iter().all(OrderPart::is_ready));
        assert_eq!(code(order.decide_part(PartCommand::Ready, "food", &barista, &kitchen)), Err("illegal_transition"), "off the board");
    }

    #[test]
    fn whole_order_changes_move_every_part_and_an_unrouted_order_is_routed_first() {
        let kitchen = Kitchen::initial();
        let barista = user(Role::Barista);
        // Confirmed before routing existed: no parts in its log.
        let mut order = two_station_order();
        record(&mut order, vec![OrderEvent::OrderConfirmed], 20);
        assert!(order.parts.is_empty());
        let start = order.with_parts(order.decide(Command::StartPreparation, &barista, None).expect("start"), &kitchen);
        assert_eq!(names(&start), ["TicketRouted", "PreparationStarted", "PartStarted", "PartStarted"]);
        record(&mut order, start, 30);
        let food = order.decide_part(PartCommand::Ready, "food", &barista, &kitchen).expect("ready");
        record(&mut order, food, 40);
        let ready = order.with_parts(order.decide(Command::MarkReady, &barista, None).expect("ready"), &kitchen);
        assert_eq!(names(&ready), ["PartReady", "OrderReady"], "only the part not ready yet");
        record(&mut order, ready, 50);
        assert_eq!(order.status, OrderStatus::Ready);
        assert_eq!(order.parts.iter().map(|p| p.ready_at_ms).collect::<Vec<_>>(), [Some(50), Some(40)]);
        // Every event alone fixes the status the fold arrives at.
        let events =
            [OrderEvent::TicketRouted { parts: vec![] }, OrderEvent::PartStarted { station: "x".into() }, OrderEvent::PartReady { station: "x".into() }];
        assert_eq!(events.iter().map(OrderEvent::status_after).collect::<Vec<_>>(), [OrderStatus::Confirmed, OrderStatus::Preparing, OrderStatus::Preparing]);
    }

    /// The whole transition table: every status x command x actor, against the rules in the docs.
    #[test]
    fn the_status_machine_allows_exactly_the_documented_transitions() {
        use OrderStatus::*;
        let actors = [Actor::System, user(Role::Customer), user(Role::Barista), user(Role::Manager), user(Role::Admin)];
        let commands = [Command::Confirm, Command::StartPreparation, Command::MarkReady, Command::Collect, Command::Cancel, Command::Refund];
        for status in OrderStatus::ALL {
            for command in commands {
                for actor in &actors {
                    let role = match actor {
                        Actor::System => None,
                        Actor::User { role, .. } => Some(*role),
                    };
                    let staff = role.is_none_or(|r| r.is_staff());
                    let expected = match (command, status) {
                        (Command::Confirm, Pending) => role.is_none().then_some(Confirmed),
                        (Command::StartPreparation, Confirmed) => staff.then_some(Preparing),
                        (Command::MarkReady, Preparing) => staff.then_some(Ready),
                        (Command::Collect, Ready) => Some(Completed),
                        (Command::Cancel, Pending | Confirmed) => Some(Cancelled),
                        (Command::Cancel, Preparing) => staff.then_some(Cancelled),
                        (Command::Refund, Completed | Cancelled) => role.is_none_or(|r| r.at_least(Role::Manager)).then_some(Refunded),
                        _ => None,
                    };
                    let mut order = in_status(status);
                    let got = order.decide(command, actor, None).map(|event| {
                        order.apply(&StoredEvent {
                            event_id: "e".into(),
                            order_id: "o1".into(),
                            version: 2,
                            occurred_at_ms: 20,
                            actor: actor.id().into(),
                            correlation_id: None,
                            traceparent: None,
                            event,
                        });
                        order.status
                    });
                    assert_eq!(got.ok(), expected, "{command:?} from {status} by {actor:?}");
                }
            }
        }
    }

    #[test]
    fn cancelling_a_ready_order_is_rejected_as_a_conflict() {
        let e = in_status(OrderStatus::Ready).decide(Command::Cancel, &user(Role::Manager), None).expect_err("illegal");
        assert_eq!((e.code(), e.kind()), ("illegal_transition", crate::ErrorKind::Conflict));
    }

    #[test]
    fn a_customer_cannot_cancel_once_preparation_has_started() {
        let e = in_status(OrderStatus::Preparing).decide(Command::Cancel, &user(Role::Customer), None).expect_err("too late");
        assert_eq!(e.code(), "illegal_transition");
    }

    #[test]
    fn the_fold_of_events_follows_the_lifecycle() {
        let mut events = vec![placed_event()];
        let mut order = placed();
        let steps = [
            (Command::Confirm, Actor::System),
            (Command::StartPreparation, user(Role::Barista)),
            (Command::MarkReady, user(Role::Barista)),
            (Command::Collect, user(Role::Customer)),
        ];
        for (i, (command, actor)) in steps.iter().enumerate() {
            let event = order.decide(*command, actor, None).expect("legal");
            let stored = StoredEvent {
                event_id: format!("e{}", i + 2),
                order_id: "o1".into(),
                version: i as u64 + 2,
                occurred_at_ms: 20 + i as i64,
                actor: actor.id().into(),
                correlation_id: None,
                traceparent: None,
                event,
            };
            order.apply(&stored);
            events.push(stored);
        }
        let folded = Order::from_events(&events).expect("folds");
        assert_eq!(folded, order);
        assert_eq!((folded.status, folded.version, folded.updated_at_ms), (OrderStatus::Completed, 5, 23));
    }

    #[test]
    fn a_log_that_does_not_start_with_order_placed_is_no_order() {
        let e = StoredEvent {
            event_id: "e".into(),
            order_id: "o".into(),
            version: 1,
            occurred_at_ms: 0,
            actor: "system".into(),
            correlation_id: None,
            traceparent: None,
            event: OrderEvent::OrderConfirmed,
        };
        assert_eq!(Order::from_events(&[e]), None);
        assert_eq!(Order::from_events(&[]), None);
    }

    #[test]
    fn events_round_trip_through_their_wire_format() {
        let e = StoredEvent {
            event_id: "e".into(),
            order_id: "o".into(),
            version: 3,
            occurred_at_ms: 5,
            actor: "system".into(),
            correlation_id: Some("c".into()),
            traceparent: None,
            event: OrderEvent::OrderCancelled { reason: Some("changed mind".into()) },
        };
        let json = serde_json::to_value(&e).expect("serializes");
        assert_eq!(json["type"], "OrderCancelled");
        assert_eq!(json["data"]["reason"], "changed mind");
        assert_eq!(serde_json::from_value::<StoredEvent>(json).expect("parses"), e);
    }

    #[test]
    fn tickets_exist_only_while_the_kitchen_has_the_order() {
        for status in OrderStatus::ALL {
            assert_eq!(KitchenTicket::for_order(&in_status(status)).is_some(), status.in_kitchen());
        }
    }

    fn arb_line() -> impl Strategy<Value = OrderLine> {
        let items: Vec<(String, Vec<String>)> = default_menu().into_iter().map(|i| (i.id, i.sizes.into_iter().map(|s| s.size).collect())).collect();
        (prop::sample::select(items), 1u32..=MAX_QUANTITY, any::<prop::sample::Index>()).prop_map(|((item_id, sizes), quantity, idx)| OrderLine {
            size: Some(idx.get(&sizes).clone()),
            item_id,
            modifiers: vec![],
            quantity,
        })
    }

    proptest! {
        #[test]
        fn the_total_is_the_sum_of_unit_price_times_quantity(lines in prop::collection::vec(arb_line(), 1..=MAX_LINES)) {
            let m = menu();
            let priced = request(lines.clone()).price(&m).expect("valid lines");
            let expected: u64 = lines.iter().map(|l| {
                let item = m.item(&l.item_id).expect("item");
                item.size(l.size.as_deref().expect("size")).expect("size").price_cents.0 * u64::from(l.quantity)
            }).sum();
            prop_assert_eq!(priced.total_cents, Cents(expected));
            prop_assert_eq!(priced.lines.iter().map(|l| l.line_total_cents.0).sum::<u64>(), expected);
        }

        #[test]
        fn pricing_never_panics_on_arbitrary_lines(item in "[a-z-]{0,12}", size in proptest::option::of("[a-z]{0,8}"), quantity in any::<u32>(), modifiers in prop::collection::vec("[a-z-]{0,10}", 0..12)) {
            let _ = request(vec![OrderLine { item_id: item, size, modifiers, quantity }]).price(&menu());
        }
    }

    #[test]
    fn a_crypto_order_is_confirmed_only_after_its_payment() {
        let menu = menu();
        let mut request = request(vec![line("espresso", Some("single"), &[], 1)]);
        request.payment_method = PaymentMethod::Crypto(CryptoMethod { chain: "polygon".into(), asset: "USDC".into() });
        let priced = request.price(&menu).expect("priced");
        let mut order = Order::open("o1", "c1", &priced, 0);
        assert!(order.decide(Command::Confirm, &Actor::System, None).is_err(), "unpaid");
        let requested = order.decide_request_payment().expect("payment requested");
        assert_eq!(requested, OrderEvent::PaymentRequested { intent_id: "pi_o1".into() });
        let event = |version, event| StoredEvent {
            event_id: format!("e{version}"),
            order_id: "o1".into(),
            version,
            occurred_at_ms: 0,
            actor: "system".into(),
            correlation_id: None,
            traceparent: None,
            event,
        };
        order.apply(&event(2, requested));
        assert_eq!((order.status, order.decide_request_payment()), (OrderStatus::Pending, None), "asked once");
        assert_eq!(order.decide_paid("pi_other"), None);
        let paid = order.decide_paid("pi_o1").expect("paid");
        order.apply(&event(3, paid));
        assert!(order.paid && order.decide_paid("pi_o1").is_none());
        assert_eq!(order.decide(Command::Confirm, &Actor::System, None), Ok(OrderEvent::OrderConfirmed));
        request.payment_method = PaymentMethod::Crypto(CryptoMethod { chain: "Not A Chain!".into(), asset: "USDC".into() });
        assert!(request.price(&menu).is_err());
    }

    #[test]
    fn payment_methods_read_as_documented() {
        let m: PaymentMethod = serde_json::from_str(r#"{"crypto": {"chain": "polygon", "asset": "USDC"}}"#).expect("crypto");
        assert_eq!(m.crypto().map(|c| (c.chain.as_str(), c.asset.as_str())), Some(("polygon", "USDC")));
        assert_eq!(serde_json::from_str::<PaymentMethod>(r#""pay_at_counter""#).expect("counter"), PaymentMethod::PayAtCounter);
    }
}
