//! The kitchen function: the board by station with its estimates, the baristas' status changes
//! (a whole order, or one station's part of it), and the managers' stations, equipment and
//! shifts, each change an event in the kitchen's log appended with an expected version.

use gocoffee_core::kitchen::{EquipmentStatus, Kitchen, KitchenCommand, KitchenRecord, QueuedPart};
use gocoffee_core::order::PartCommand;
use gocoffee_core::{Command, KitchenTicket, MenuItem, OrderPart, OrderStatus, PricedLine, Role};
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::http::{ApiError, Response, encode_cursor, json, no_content, page_cursor, page_limit, parse_json, query_param, rfc3339};
use crate::orders::{actor, change, part_view, view};
use crate::ports::StoreError;
use crate::{Caller, Ctx};

/// How often a kitchen change is retried when another manager changed the kitchen first.
const APPEND_ATTEMPTS: usize = 3;
/// Most tickets the board reads (oldest first); beyond them a kitchen has bigger problems.
pub const MAX_BOARD_TICKETS: usize = 500;
/// How long a line takes when its item has left the menu since it was ordered.
const UNKNOWN_ITEM_PREP_MS: i64 = 60_000;

// ---------------------------------------------------------------------------------------------
// The menu as the kitchen can make it now.

/// Items whose station can't make anything now (all its equipment out of order) marked
/// unavailable, until it is fixed.
pub(crate) fn mark_unavailable(kitchen: &Kitchen, items: &mut [MenuItem]) {
    let off = kitchen.unavailable_items();
    for item in items.iter_mut().filter(|i| off.contains(i.id.as_str())) {
        item.available = false;
    }
}

/// The kitchen, or `None` (logged) when it can't be read: the menu then shows what the managers
/// set, rather than failing for want of the kitchen's state.
pub(crate) async fn kitchen_or_none(ctx: &Ctx<'_>) -> Option<Kitchen> {
    match ctx.svc.kitchen.kitchen().await {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, error = %e, "the kitchen's state is out of reach; the menu shows stored availability");
            None
        }
    }
}

/// The menu with what the kitchen can't make now marked unavailable: what clients see and what
/// orders are priced against.
pub(crate) async fn menu_now(ctx: &Ctx<'_>) -> Result<Vec<MenuItem>, ApiError> {
    let mut items = ctx.svc.menu.menu().await?;
    if let Some(kitchen) = kitchen_or_none(ctx).await {
        mark_unavailable(&kitchen, &mut items);
    }
    Ok(items)
}

// ---------------------------------------------------------------------------------------------
// The board.

/// One station's part of a ticket on the board, with when it should be ready.
struct BoardPart {
    ticket: usize,
    part: OrderPart,
    estimate_ms: Option<i64>,
}

/// The orders in the kitchen, split by station, with the estimates.
struct Board {
    kitchen: Kitchen,
    tickets: Vec<KitchenTicket>,
    parts: Vec<BoardPart>,
    truncated: bool,
}

/// The tickets on the board, oldest first, up to [`MAX_BOARD_TICKETS`].
async fn tickets(ctx: &Ctx<'_>) -> Result<(Vec<KitchenTicket>, bool), ApiError> {
    let mut tickets = Vec::new();
    let mut after = None;
    loop {
        let page = ctx.svc.orders.kitchen_queue(100, after).await?;
        tickets.extend(page.items);
        match page.next {
            Some(next) if tickets.len() < MAX_BOARD_TICKETS => after = Some(next),
            Some(_) => return Ok((tickets, true)),
            None => return Ok((tickets, false)),
        }
    }
}

/// The time a part's lines take to make: each item's preparation time times its quantity.
fn work_ms(lines: &[PricedLine], part: &OrderPart, menu: &[MenuItem]) -> i64 {
    part.lines
        .iter()
        .filter_map(|&i| lines.get(i))
        .map(|line| {
            let each = menu.iter().find(|m| m.id == line.item_id).map_or(UNKNOWN_ITEM_PREP_MS, MenuItem::prep_ms);
            each * i64::from(line.quantity)
        })
        .sum()
}

async fn board(ctx: &Ctx<'_>) -> Result<Board, ApiError> {
    let kitchen = ctx.svc.kitchen.kitchen().await?;
    let (tickets, truncated) = tickets(ctx).await?;
    let menu = ctx.svc.menu.menu().await?;
    let mut parts: Vec<BoardPart> = Vec::new();
    for (i, ticket) in tickets.iter().enumerate() {
        // An order confirmed before routing existed is shown as the kitchen would route it now.
        let own: Vec<OrderPart> =
            if ticket.parts.is_empty() { kitchen.route(&ticket.lines).into_iter().map(OrderPart::from).collect() } else { ticket.parts.clone() };
        parts.extend(own.into_iter().map(|part| BoardPart { ticket: i, part, estimate_ms: None }));
    }
    let waiting: Vec<usize> = (0..parts.len()).filter(|&i| !parts[i].part.is_ready()).collect();
    let queued: Vec<QueuedPart> = waiting
        .iter()
        .map(|&i| {
            let p = &parts[i];
            QueuedPart { station: p.part.station.clone(), work_ms: work_ms(&tickets[p.ticket].lines, &p.part, &menu), started_at_ms: p.part.started_at_ms }
        })
        .collect();
    for (&i, estimate) in waiting.iter().zip(kitchen.estimate(&queued, ctx.now_ms)) {
        parts[i].estimate_ms = estimate;
    }
    Ok(Board { kitchen, tickets, parts, truncated })
}

/// When the order should be ready: its last part's estimate, when every part not ready has
/// one. `None` when it can't be said, or the board can't be read now (logged: the order is
/// still worth showing without it).
pub(crate) async fn estimate_for(ctx: &Ctx<'_>, order_id: &str) -> Option<i64> {
    let board = match board(ctx).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(request_id = %ctx.request_id, order_id, error = ?e, "no estimate: the board is out of reach");
            return None;
        }
    };
    let ticket = board.tickets.iter().position(|t| t.order_id == order_id)?;
    let waiting: Vec<&BoardPart> = board.parts.iter().filter(|p| p.ticket == ticket && !p.part.is_ready()).collect();
    if waiting.is_empty() {
        return None;
    }
    waiting.iter().map(|p| p.estimate_ms).collect::<Option<Vec<i64>>>()?.into_iter().max()
}

#[derive(Serialize)]
struct BoardItem<'a> {
    order_id: &'a str,
    order_status: OrderStatus,
    /// The order's lines this station makes.
    lines: Vec<&'a PricedLine>,
    note: Option<&'a str>,
    placed_at: String,
    station: &'a str,
    /// The part's progress: `queued`, `started` or `ready`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    estimated_ready_at: Option<String>,
}

#[derive(Serialize)]
struct BoardStation<'a> {
    id: &'a str,
    name: &'a str,
    /// Whether it can make anything now (not all its equipment out of order), and whether it is
    /// still one of the kitchen's stations (a closed one keeps its parts until they are done).
    available: bool,
    open: bool,
    capacity_percent: u32,
    staff: Vec<&'a str>,
    equipment: Vec<EquipmentSummary<'a>>,
    tickets: Vec<BoardItem<'a>>,
}

#[derive(Serialize)]
struct EquipmentSummary<'a> {
    id: &'a str,
    name: &'a str,
    status: EquipmentStatus,
}

pub async fn board_route(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    ctx.require(Role::Barista)?;
    let b = board(ctx).await?;
    let k = &b.kitchen;
    let mut ids: Vec<&str> = k.stations.iter().map(|s| s.id.as_str()).collect();
    for p in &b.parts {
        if !ids.contains(&p.part.station.as_str()) {
            ids.push(&p.part.station);
        }
    }
    let stations: Vec<BoardStation<'_>> = ids
        .into_iter()
        .map(|id| {
            let station = k.station(id);
            let capacity = if station.is_some() { k.capacity_percent(id) } else { 0 };
            BoardStation {
                id,
                name: station.map_or(id, |s| s.name.as_str()),
                available: capacity > 0,
                open: station.is_some(),
                capacity_percent: capacity,
                staff: k.shifts.iter().filter(|s| s.station == id).map(|s| s.user_id.as_str()).collect(),
                equipment: k.equipment.iter().filter(|e| e.station == id).map(|e| EquipmentSummary { id: &e.id, name: &e.name, status: e.status }).collect(),
                tickets: b
                    .parts
                    .iter()
                    .filter(|p| p.part.station == id)
                    .map(|p| {
                        let t = &b.tickets[p.ticket];
                        BoardItem {
                            order_id: &t.order_id,
                            order_status: t.status,
                            lines: p.part.lines.iter().filter_map(|&i| t.lines.get(i)).collect(),
                            note: t.note.as_deref(),
                            placed_at: rfc3339(t.placed_at_ms),
                            station: &p.part.station,
                            status: p.part.status(),
                            started_at: p.part.started_at_ms.map(rfc3339),
                            estimated_ready_at: p.estimate_ms.map(rfc3339),
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "as_of": rfc3339(ctx.now_ms),
            "kitchen_version": k.version,
            "stations": stations,
            "unavailable_items": k.unavailable_items(),
            "truncated": b.truncated,
        }),
    ))
}

#[derive(Serialize)]
struct TicketView<'a> {
    order_id: &'a str,
    status: OrderStatus,
    lines: &'a [PricedLine],
    note: Option<&'a str>,
    placed_at: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    parts: Vec<crate::orders::PartView<'a>>,
}

fn ticket_view(t: &KitchenTicket) -> TicketView<'_> {
    TicketView {
        order_id: &t.order_id,
        status: t.status,
        lines: &t.lines,
        note: t.note.as_deref(),
        placed_at: rfc3339(t.placed_at_ms),
        parts: t.parts.iter().map(part_view).collect(),
    }
}

pub async fn queue(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    ctx.require(Role::Barista)?;
    let page = ctx.svc.orders.kitchen_queue(page_limit(ctx.req)?, page_cursor(ctx.req)?).await?;
    let items: Vec<TicketView<'_>> = page.items.iter().map(ticket_view).collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items, "next_cursor": page.next.as_ref().map(encode_cursor) })))
}

// ---------------------------------------------------------------------------------------------
// Orders and their parts.

/// A whole-order change by the kitchen, with what it means for the order's parts.
async fn whole_order(ctx: &Ctx<'_>, command: Command) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Barista)?;
    let kitchen = ctx.svc.kitchen.kitchen().await?;
    let next = change(ctx, &caller, |order| Ok(order.with_parts(order.decide(command, &actor(&caller), None)?, &kitchen))).await?;
    Ok(json(StatusCode::OK, &view(&next, None)))
}

pub async fn start(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    whole_order(ctx, Command::StartPreparation).await
}

pub async fn ready(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    whole_order(ctx, Command::MarkReady).await
}

/// One station's part: `POST /kitchen/orders/{id}/stations/{station}/start|ready`.
async fn part(ctx: &Ctx<'_>, command: PartCommand) -> Result<Response, ApiError> {
    let caller = ctx.require(Role::Barista)?;
    let kitchen = ctx.svc.kitchen.kitchen().await?;
    let station = ctx.param(1);
    let next = change(ctx, &caller, |order| order.decide_part(command, station, &actor(&caller), &kitchen))
        .await
        .map_err(|e| if e.code == "no_part_at_station" { ApiError::new(StatusCode::NOT_FOUND, e.code, e.message) } else { e })?;
    Ok(json(StatusCode::OK, &view(&next, None)))
}

pub async fn start_part(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    part(ctx, PartCommand::Start).await
}

pub async fn ready_part(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    part(ctx, PartCommand::Ready).await
}

// ---------------------------------------------------------------------------------------------
// Stations, equipment and shifts.

#[derive(Serialize)]
struct KitchenView<'a> {
    version: u64,
    stations: Vec<StationView<'a>>,
    equipment: Vec<EquipmentView<'a>>,
    shifts: Vec<ShiftView<'a>>,
    unavailable_items: std::collections::BTreeSet<&'a str>,
}

#[derive(Serialize)]
struct StationView<'a> {
    id: &'a str,
    name: &'a str,
    items: &'a [String],
    capacity_percent: u32,
    available: bool,
    staff: usize,
}

#[derive(Serialize)]
struct EquipmentView<'a> {
    id: &'a str,
    station: &'a str,
    name: &'a str,
    status: EquipmentStatus,
    log: Vec<LogView<'a>>,
}

#[derive(Serialize)]
struct LogView<'a> {
    at: String,
    by: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<EquipmentStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<&'a str>,
}

#[derive(Serialize)]
struct ShiftView<'a> {
    user_id: &'a str,
    station: &'a str,
    since: String,
}

fn kitchen_view(k: &Kitchen) -> KitchenView<'_> {
    KitchenView {
        version: k.version,
        stations: k
            .stations
            .iter()
            .map(|s| {
                let capacity = k.capacity_percent(&s.id);
                StationView { id: &s.id, name: &s.name, items: &s.items, capacity_percent: capacity, available: capacity > 0, staff: k.staff_at(&s.id) }
            })
            .collect(),
        equipment: k
            .equipment
            .iter()
            .map(|e| EquipmentView {
                id: &e.id,
                station: &e.station,
                name: &e.name,
                status: e.status,
                log: e.log.iter().rev().map(|l| LogView { at: rfc3339(l.at_ms), by: &l.by, status: l.status, note: l.note.as_deref() }).collect(),
            })
            .collect(),
        shifts: k.shifts.iter().map(|s| ShiftView { user_id: &s.user_id, station: &s.station, since: rfc3339(s.since_ms) }).collect(),
        unavailable_items: k.unavailable_items(),
    }
}

pub async fn show(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    ctx.require(Role::Barista)?;
    let kitchen = ctx.svc.kitchen.kitchen().await?;
    Ok(json(StatusCode::OK, &kitchen_view(&kitchen)))
}

/// Applies `command` as `caller`: decide against the kitchen read, append with its version, and
/// on a lost race read again and decide again. A command that changes nothing writes nothing.
/// With `target`, the station or equipment the command is about came from the path: its absence
/// is 404, not 422.
async fn kitchen_change(ctx: &Ctx<'_>, caller: &Caller, command: &KitchenCommand, target: Target) -> Result<Kitchen, ApiError> {
    let svc = ctx.svc;
    for _ in 0..APPEND_ATTEMPTS {
        let kitchen = svc.kitchen.kitchen().await?;
        let events = kitchen.decide(command).map_err(|e| match (target, e.code()) {
            (Target::InPath, "unknown_station") => ApiError::not_found("station"),
            (Target::InPath, "unknown_equipment") => ApiError::not_found("equipment"),
            _ => e.into(),
        })?;
        if events.is_empty() {
            return Ok(kitchen);
        }
        let mut next = kitchen.clone();
        let records: Vec<KitchenRecord> = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let record = KitchenRecord {
                    event_id: svc.new_id(),
                    version: kitchen.version + 1 + i as u64,
                    occurred_at_ms: ctx.now_ms,
                    actor: caller.user_id.clone(),
                    event,
                };
                next.apply(&record);
                record
            })
            .collect();
        match svc.kitchen.append_kitchen(&next, &records, kitchen.version).await {
            Ok(()) => {
                for r in &records {
                    tracing::info!(request_id = %ctx.request_id, by = %caller.user_id, event = r.event.name(), version = r.version, "kitchen changed");
                }
                return Ok(next);
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Where the station or equipment a command names came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    InPath,
    InBody,
}

async fn manage(ctx: &Ctx<'_>, role: Role, status: StatusCode, command: KitchenCommand, target: Target) -> Result<Response, ApiError> {
    let caller = ctx.require(role)?;
    let kitchen = kitchen_change(ctx, &caller, &command, target).await?;
    Ok(json(status, &kitchen_view(&kitchen)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewStation {
    id: String,
    name: String,
    #[serde(default)]
    items: Vec<String>,
}

pub async fn open_station(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: NewStation = parse_json(ctx.req)?;
    manage(ctx, Role::Manager, StatusCode::CREATED, KitchenCommand::OpenStation { station: body.id, name: body.name, items: body.items }, Target::InBody).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StationPatch {
    name: Option<String>,
    items: Option<Vec<String>>,
}

pub async fn change_station(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: StationPatch = parse_json(ctx.req)?;
    manage(
        ctx,
        Role::Manager,
        StatusCode::OK,
        KitchenCommand::ChangeStation { station: ctx.param(0).to_owned(), name: body.name, items: body.items },
        Target::InPath,
    )
    .await
}

pub async fn close_station(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    manage(ctx, Role::Manager, StatusCode::OK, KitchenCommand::CloseStation { station: ctx.param(0).to_owned() }, Target::InPath).await.map(|_| no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEquipment {
    id: String,
    station: String,
    name: String,
}

pub async fn add_equipment(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: NewEquipment = parse_json(ctx.req)?;
    manage(ctx, Role::Manager, StatusCode::CREATED, KitchenCommand::AddEquipment { equipment: body.id, station: body.station, name: body.name }, Target::InBody)
        .await
}

pub async fn remove_equipment(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    manage(ctx, Role::Manager, StatusCode::OK, KitchenCommand::RemoveEquipment { equipment: ctx.param(0).to_owned() }, Target::InPath)
        .await
        .map(|_| no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChange {
    status: EquipmentStatus,
    #[serde(default)]
    note: Option<String>,
}

/// Baristas report what broke (and what works again): they are the ones standing at it.
pub async fn set_equipment_status(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: StatusChange = parse_json(ctx.req)?;
    manage(
        ctx,
        Role::Barista,
        StatusCode::OK,
        KitchenCommand::SetEquipmentStatus { equipment: ctx.param(0).to_owned(), status: body.status, note: body.note },
        Target::InPath,
    )
    .await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Maintenance {
    note: String,
}

pub async fn log_maintenance(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    let body: Maintenance = parse_json(ctx.req)?;
    manage(ctx, Role::Barista, StatusCode::CREATED, KitchenCommand::LogMaintenance { equipment: ctx.param(0).to_owned(), note: body.note }, Target::InPath)
        .await
}

/// Who a shift route is about: managers set anyone's; a barista only their own.
async fn shift_target(ctx: &Ctx<'_>) -> Result<Caller, ApiError> {
    let caller = ctx.require(Role::Barista)?;
    let user_id = ctx.param(0);
    if user_id != caller.user_id && !caller.role.at_least(Role::Manager) {
        return Err(ApiError::forbidden("a barista starts and ends their own shift; a manager anyone's"));
    }
    Ok(caller)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftBody {
    station: String,
}

/// Puts someone on shift at a station (or moves them there): someone on the staff.
pub async fn start_shift(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    shift_target(ctx).await?;
    let body: ShiftBody = parse_json(ctx.req)?;
    let user_id = ctx.param(0);
    let user = ctx.svc.users.user_by_id(user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    if !user.role.is_staff() {
        return Err(ApiError::unprocessable("not_staff", "only staff (barista and above) work shifts"));
    }
    manage(ctx, Role::Barista, StatusCode::OK, KitchenCommand::StartShift { user_id: user.id, station: body.station }, Target::InBody).await
}

pub async fn end_shift(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    shift_target(ctx).await?;
    manage(ctx, Role::Barista, StatusCode::OK, KitchenCommand::EndShift { user_id: ctx.param(0).to_owned() }, Target::InBody).await.map(|_| no_content())
}

/// The kitchen's log: `?after=<version>&limit=`, oldest first.
pub async fn events(ctx: &Ctx<'_>) -> Result<Response, ApiError> {
    ctx.require(Role::Manager)?;
    let after = match query_param(ctx.req, "after") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| ApiError::bad_request("invalid_after", "after is a version number from this log"))?,
    };
    let limit = page_limit(ctx.req)?;
    let records = ctx.svc.kitchen.kitchen_log(after, limit + 1).await?;
    let more = records.len() > limit;
    let items = &records[..records.len().min(limit)];
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items, "next_after": if more { items.last().map(|r| r.version) } else { None } })))
}

/// The kitchen function: the board, the baristas' status changes, and the kitchen's own world.
pub static FUNCTION: crate::Function = crate::Function {
    name: "kitchen",
    routes: &[
        crate::route!(GET "/api/v1/kitchen" => show),
        crate::route!(GET "/api/v1/kitchen/board" => board_route),
        crate::route!(GET "/api/v1/kitchen/queue" => queue),
        crate::route!(GET "/api/v1/kitchen/events" => events),
        crate::route!(POST "/api/v1/kitchen/orders/{id}/start" => start),
        crate::route!(POST "/api/v1/kitchen/orders/{id}/ready" => ready),
        crate::route!(POST "/api/v1/kitchen/orders/{id}/stations/{station}/start" => start_part),
        crate::route!(POST "/api/v1/kitchen/orders/{id}/stations/{station}/ready" => ready_part),
        crate::route!(POST "/api/v1/kitchen/stations" => open_station),
        crate::route!(PATCH "/api/v1/kitchen/stations/{station}" => change_station),
        crate::route!(DELETE "/api/v1/kitchen/stations/{station}" => close_station),
        crate::route!(POST "/api/v1/kitchen/equipment" => add_equipment),
        crate::route!(DELETE "/api/v1/kitchen/equipment/{equipment}" => remove_equipment),
        crate::route!(POST "/api/v1/kitchen/equipment/{equipment}/status" => set_equipment_status),
        crate::route!(POST "/api/v1/kitchen/equipment/{equipment}/log" => log_maintenance),
        crate::route!(PUT "/api/v1/kitchen/shifts/{user_id}" => start_shift),
        crate::route!(DELETE "/api/v1/kitchen/shifts/{user_id}" => end_shift),
    ],
    publishes: true,
    images: false,
};
