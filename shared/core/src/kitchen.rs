//! The kitchen's own world: its stations and the menu items each prepares, the equipment at each
//! station with its status and maintenance log, and the staff on shift. One kitchen per
//! deployment, event-sourced like an order: [`Kitchen::decide`] turns a manager's command into
//! events (or refuses it), [`Kitchen::apply`] folds them. Routing an order's lines to stations,
//! a station's capacity, the items a broken station takes off the menu and the estimated ready
//! times are functions of that state, so every shell computes them alike.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::order::PricedLine;

/// Most entries a piece of equipment keeps in its maintenance log (the newest).
pub const MAX_LOG_ENTRIES: usize = 50;
pub const MAX_NOTE_CHARS: usize = 280;
pub const MAX_STATIONS: usize = 20;
pub const MAX_EQUIPMENT: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EquipmentStatus {
    Ok,
    Degraded,
    OutOfOrder,
}

impl EquipmentStatus {
    /// What the piece contributes to its station's capacity, of 2.
    fn weight(self) -> u32 {
        match self {
            EquipmentStatus::Ok => 2,
            EquipmentStatus::Degraded => 1,
            EquipmentStatus::OutOfOrder => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Station {
    pub id: String,
    pub name: String,
    /// The menu items it prepares; an item is on one station at most.
    pub items: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaintenanceEntry {
    pub at_ms: i64,
    /// Who wrote it (a user id).
    pub by: String,
    /// The status it set, when it was a status change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EquipmentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equipment {
    pub id: String,
    pub station: String,
    pub name: String,
    pub status: EquipmentStatus,
    /// Newest last, at most [`MAX_LOG_ENTRIES`].
    pub log: Vec<MaintenanceEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shift {
    pub user_id: String,
    pub station: String,
    pub since_ms: i64,
}

/// What happened in the kitchen. The serialized form is the wire format of the kitchen's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum KitchenEvent {
    StationOpened { station: String, name: String, items: Vec<String> },
    StationChanged { station: String, name: String, items: Vec<String> },
    StationClosed { station: String },
    EquipmentAdded { equipment: String, station: String, name: String },
    EquipmentRemoved { equipment: String },
    EquipmentStatusChanged { equipment: String, status: EquipmentStatus, note: Option<String> },
    MaintenanceLogged { equipment: String, note: String },
    ShiftStarted { user_id: String, station: String },
    ShiftEnded { user_id: String },
}

impl KitchenEvent {
    pub fn name(&self) -> &'static str {
        match self {
            KitchenEvent::StationOpened { .. } => "StationOpened",
            KitchenEvent::StationChanged { .. } => "StationChanged",
            KitchenEvent::StationClosed { .. } => "StationClosed",
            KitchenEvent::EquipmentAdded { .. } => "EquipmentAdded",
            KitchenEvent::EquipmentRemoved { .. } => "EquipmentRemoved",
            KitchenEvent::EquipmentStatusChanged { .. } => "EquipmentStatusChanged",
            KitchenEvent::MaintenanceLogged { .. } => "MaintenanceLogged",
            KitchenEvent::ShiftStarted { .. } => "ShiftStarted",
            KitchenEvent::ShiftEnded { .. } => "ShiftEnded",
        }
    }
}

/// A kitchen event as stored in the kitchen's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KitchenRecord {
    pub event_id: String,
    /// Position in the kitchen's log, from 1.
    pub version: u64,
    pub occurred_at_ms: i64,
    pub actor: String,
    #[serde(flatten)]
    pub event: KitchenEvent,
}

/// What a manager (or, for shifts, a barista about themself) asks of the kitchen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum KitchenCommand {
    OpenStation { station: String, name: String, items: Vec<String> },
    ChangeStation { station: String, name: Option<String>, items: Option<Vec<String>> },
    CloseStation { station: String },
    AddEquipment { equipment: String, station: String, name: String },
    RemoveEquipment { equipment: String },
    SetEquipmentStatus { equipment: String, status: EquipmentStatus, note: Option<String> },
    LogMaintenance { equipment: String, note: String },
    StartShift { user_id: String, station: String },
    EndShift { user_id: String },
}

/// The kitchen now: the fold of its log.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Kitchen {
    pub stations: Vec<Station>,
    pub equipment: Vec<Equipment>,
    pub shifts: Vec<Shift>,
    pub version: u64,
}

fn check_id(what: &'static str, id: &str) -> Result<(), DomainError> {
    let ok = (1..=40).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(DomainError::validation("invalid_id", format!("a {what} id is 1 to 40 of a-z, 0-9 and -"))) }
}

fn check_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(DomainError::validation("invalid_name", "a name is 1 to 80 characters, no control characters"));
    }
    Ok(name.to_owned())
}

fn check_note(note: Option<&str>) -> Result<Option<String>, DomainError> {
    match note.map(str::trim) {
        None | Some("") => Ok(None),
        Some(n) if n.chars().count() > MAX_NOTE_CHARS || n.chars().any(|c| c.is_control() && c != '\n') => {
            Err(DomainError::validation("invalid_note", format!("a note is at most {MAX_NOTE_CHARS} characters, no control characters")))
        }
        Some(n) => Ok(Some(n.to_owned())),
    }
}

fn conflict(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::Conflict { code, message: message.into() }
}

impl Kitchen {
    /// A new deployment's kitchen: the two bars and the food counter for the default menu, with
    /// an espresso machine and a grinder at the espresso bar and an oven at the food counter.
    pub fn default_events() -> Vec<KitchenEvent> {
        let station = |id: &str, name: &str, items: &[&str]| KitchenEvent::StationOpened {
            station: id.into(),
            name: name.into(),
            items: items.iter().map(|i| i.to_string()).collect(),
        };
        let equipment = |id: &str, station: &str, name: &str| KitchenEvent::EquipmentAdded { equipment: id.into(), station: station.into(), name: name.into() };
        vec![
            station("espresso-bar", "Espresso bar", &["espresso", "americano", "cappuccino", "latte", "flat-white", "mocha", "macchiato", "cortado"]),
            station("brew-bar", "Brew bar", &["cold-brew", "chai-latte", "matcha-latte", "hot-chocolate"]),
            station("food", "Food counter", &["croissant", "blueberry-muffin", "avocado-toast", "banana-bread"]),
            equipment("espresso-machine", "espresso-bar", "Espresso machine"),
            equipment("grinder", "espresso-bar", "Grinder"),
            equipment("oven", "food", "Oven"),
        ]
    }

    /// A kitchen nobody has changed yet: the default one, at version 0 (its log starts with the
    /// first change a manager makes).
    pub fn initial() -> Kitchen {
        let mut kitchen = Kitchen::default();
        for event in Kitchen::default_events() {
            kitchen.apply(&KitchenRecord { event_id: String::new(), version: 0, occurred_at_ms: 0, actor: "system".into(), event });
        }
        kitchen
    }

    pub fn station(&self, id: &str) -> Option<&Station> {
        self.stations.iter().find(|s| s.id == id)
    }

    pub fn equipment(&self, id: &str) -> Option<&Equipment> {
        self.equipment.iter().find(|e| e.id == id)
    }

    /// The events `command` causes, or why it can't be done. An empty list: nothing to change.
    pub fn decide(&self, command: &KitchenCommand) -> Result<Vec<KitchenEvent>, DomainError> {
        use KitchenCommand as C;
        use KitchenEvent as E;
        let station_exists = |id: &str| self.station(id).map(|_| ()).ok_or_else(|| DomainError::validation("unknown_station", format!("no station `{id}`")));
        let equipment_exists = |id: &str| self.equipment(id).ok_or_else(|| DomainError::validation("unknown_equipment", format!("no equipment `{id}`")));
        let items_free = |station: &str, items: &[String]| -> Result<Vec<String>, DomainError> {
            let mut unique: Vec<String> = Vec::new();
            for item in items {
                if let Some(other) = self.stations.iter().find(|s| s.id != station && s.items.contains(item)) {
                    return Err(conflict("item_on_another_station", format!("`{item}` is prepared at `{}`", other.id)));
                }
                if !unique.contains(item) {
                    unique.push(item.clone());
                }
            }
            Ok(unique)
        };
        Ok(match command {
            C::OpenStation { station, name, items } => {
                check_id("station", station)?;
                if self.station(station).is_some() {
                    return Err(conflict("station_exists", format!("there is a station `{station}` already")));
                }
                if self.stations.len() >= MAX_STATIONS {
                    return Err(DomainError::validation("too_many_stations", format!("a kitchen has at most {MAX_STATIONS} stations")));
                }
                vec![E::StationOpened { station: station.clone(), name: check_name(name)?, items: items_free(station, items)? }]
            }
            C::ChangeStation { station, name, items } => {
                station_exists(station)?;
                let current = self.station(station).expect("checked");
                let name = match name {
                    Some(n) => check_name(n)?,
                    None => current.name.clone(),
                };
                let items = match items {
                    Some(items) => items_free(station, items)?,
                    None => current.items.clone(),
                };
                if name == current.name && items == current.items {
                    return Ok(vec![]);
                }
                vec![E::StationChanged { station: station.clone(), name, items }]
            }
            C::CloseStation { station } => {
                station_exists(station)?;
                if self.stations.len() == 1 {
                    return Err(conflict("last_station", "a kitchen keeps at least one station"));
                }
                if self.equipment.iter().any(|e| &e.station == station) || self.shifts.iter().any(|s| &s.station == station) {
                    return Err(conflict("station_in_use", "move its equipment and staff first"));
                }
                vec![E::StationClosed { station: station.clone() }]
            }
            C::AddEquipment { equipment, station, name } => {
                check_id("equipment", equipment)?;
                station_exists(station)?;
                if self.equipment(equipment).is_some() {
                    return Err(conflict("equipment_exists", format!("there is equipment `{equipment}` already")));
                }
                if self.equipment.len() >= MAX_EQUIPMENT {
                    return Err(DomainError::validation("too_much_equipment", format!("a kitchen has at most {MAX_EQUIPMENT} pieces of equipment")));
                }
                vec![E::EquipmentAdded { equipment: equipment.clone(), station: station.clone(), name: check_name(name)? }]
            }
            C::RemoveEquipment { equipment } => {
                equipment_exists(equipment)?;
                vec![E::EquipmentRemoved { equipment: equipment.clone() }]
            }
            C::SetEquipmentStatus { equipment, status, note } => {
                let current = equipment_exists(equipment)?;
                let note = check_note(note.as_deref())?;
                if current.status == *status && note.is_none() {
                    return Ok(vec![]);
                }
                vec![E::EquipmentStatusChanged { equipment: equipment.clone(), status: *status, note }]
            }
            C::LogMaintenance { equipment, note } => {
                equipment_exists(equipment)?;
                let note = check_note(Some(note))?.ok_or_else(|| DomainError::validation("invalid_note", "a maintenance entry needs a note"))?;
                vec![E::MaintenanceLogged { equipment: equipment.clone(), note }]
            }
            C::StartShift { user_id, station } => {
                station_exists(station)?;
                if self.shifts.iter().any(|s| &s.user_id == user_id && &s.station == station) {
                    return Ok(vec![]);
                }
                vec![E::ShiftStarted { user_id: user_id.clone(), station: station.clone() }]
            }
            C::EndShift { user_id } => {
                if !self.shifts.iter().any(|s| &s.user_id == user_id) {
                    return Ok(vec![]);
                }
                vec![E::ShiftEnded { user_id: user_id.clone() }]
            }
        })
    }

    /// Applies one recorded event (checked by [`Kitchen::decide`] before it was written).
    pub fn apply(&mut self, r: &KitchenRecord) {
        use KitchenEvent as E;
        let entry = |status, note: &Option<String>| MaintenanceEntry { at_ms: r.occurred_at_ms, by: r.actor.clone(), status, note: note.clone() };
        match &r.event {
            E::StationOpened { station, name, items } => self.stations.push(Station { id: station.clone(), name: name.clone(), items: items.clone() }),
            E::StationChanged { station, name, items } => {
                if let Some(s) = self.stations.iter_mut().find(|s| &s.id == station) {
                    s.name = name.clone();
                    s.items = items.clone();
                }
            }
            E::StationClosed { station } => self.stations.retain(|s| &s.id != station),
            E::EquipmentAdded { equipment, station, name } => {
                self.equipment.push(Equipment { id: equipment.clone(), station: station.clone(), name: name.clone(), status: EquipmentStatus::Ok, log: vec![] })
            }
            E::EquipmentRemoved { equipment } => self.equipment.retain(|e| &e.id != equipment),
            E::EquipmentStatusChanged { equipment, status, note } => {
                if let Some(e) = self.equipment.iter_mut().find(|e| &e.id == equipment) {
                    e.status = *status;
                    e.log.push(entry(Some(*status), note));
                }
            }
            E::MaintenanceLogged { equipment, note } => {
                if let Some(e) = self.equipment.iter_mut().find(|e| &e.id == equipment) {
                    e.log.push(entry(None, &Some(note.clone())));
                }
            }
            E::ShiftStarted { user_id, station } => {
                self.shifts.retain(|s| &s.user_id != user_id);
                self.shifts.push(Shift { user_id: user_id.clone(), station: station.clone(), since_ms: r.occurred_at_ms });
            }
            E::ShiftEnded { user_id } => self.shifts.retain(|s| &s.user_id != user_id),
        }
        for e in &mut self.equipment {
            if e.log.len() > MAX_LOG_ENTRIES {
                e.log.drain(..e.log.len() - MAX_LOG_ENTRIES);
            }
        }
        self.version = r.version;
    }

    /// How much of the station's equipment works, in percent: each piece counts fully when ok,
    /// half when degraded, not at all when out of order. A station without equipment is at 100.
    pub fn capacity_percent(&self, station: &str) -> u32 {
        let pieces: Vec<&Equipment> = self.equipment.iter().filter(|e| e.station == station).collect();
        if pieces.is_empty() {
            return 100;
        }
        pieces.iter().map(|e| e.status.weight()).sum::<u32>() * 100 / (2 * pieces.len() as u32)
    }

    /// How many people are on shift at the station.
    pub fn staff_at(&self, station: &str) -> usize {
        self.shifts.iter().filter(|s| s.station == station).count()
    }

    /// The menu items no order can get now: those of stations whose equipment is all out of order.
    pub fn unavailable_items(&self) -> BTreeSet<&str> {
        self.stations.iter().filter(|s| self.capacity_percent(&s.id) == 0).flat_map(|s| s.items.iter().map(String::as_str)).collect()
    }

    /// Where an item is prepared: the station that lists it, else the first station (an item
    /// added to the menu before any station took it still gets made).
    pub fn station_for(&self, item: &str) -> Option<&Station> {
        self.stations.iter().find(|s| s.items.iter().any(|i| i == item)).or(self.stations.first())
    }

    /// An order's lines split by station, in the order the stations were opened: each part
    /// names its station and the indexes of its lines.
    pub fn route(&self, lines: &[PricedLine]) -> Vec<Part> {
        let mut parts: Vec<Part> = Vec::new();
        for (index, line) in lines.iter().enumerate() {
            let Some(station) = self.station_for(&line.item_id) else { continue };
            match parts.iter_mut().find(|p| p.station == station.id) {
                Some(part) => part.lines.push(index),
                None => parts.push(Part { station: station.id.clone(), lines: vec![index] }),
            }
        }
        let position = |id: &str| self.stations.iter().position(|s| s.id == id).unwrap_or(usize::MAX);
        parts.sort_by_key(|p| position(&p.station));
        parts
    }

    /// When each part of the board will be ready, in board order (oldest first): each station
    /// works through its parts with as many hands as it has staff on shift, each part taking its
    /// work time stretched by the station's lost capacity, a started part only what is left of
    /// it. `None` where that can't be said: nobody on shift at the station, or all its equipment
    /// out of order.
    pub fn estimate(&self, board: &[QueuedPart], now_ms: i64) -> Vec<Option<i64>> {
        let mut hands: Vec<(&str, Vec<i64>)> = Vec::new();
        board
            .iter()
            .map(|part| {
                let (staff, capacity) = (self.staff_at(&part.station), self.capacity_percent(&part.station));
                if staff == 0 || capacity == 0 {
                    return None;
                }
                let free = match hands.iter_mut().position(|(s, _)| *s == part.station) {
                    Some(i) => &mut hands[i].1,
                    None => {
                        hands.push((&part.station, vec![now_ms; staff]));
                        &mut hands.last_mut().expect("just pushed").1
                    }
                };
                let remaining = match part.started_at_ms {
                    Some(started) => (part.work_ms - (now_ms - started)).max(0),
                    None => part.work_ms,
                };
                let stretched = remaining * 100 / i64::from(capacity);
                let hand = free.iter_mut().min().expect("at least one hand");
                *hand = (*hand).max(now_ms) + stretched;
                Some(*hand)
            })
            .collect()
    }
}

/// One station's share of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub station: String,
    /// Indexes into the order's lines.
    pub lines: Vec<usize>,
}

/// A part on the board, for the estimates: its station, how long it takes to make (the sum of
/// its lines' preparation times) and when it was started, if it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPart {
    pub station: String,
    pub work_ms: i64,
    pub started_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(events: Vec<KitchenEvent>) -> Kitchen {
        let mut k = Kitchen::default();
        for (i, event) in events.into_iter().enumerate() {
            k.apply(&KitchenRecord { event_id: format!("k{i}"), version: i as u64 + 1, occurred_at_ms: 1_000 * i as i64, actor: "m".into(), event });
        }
        k
    }

    fn run(k: &mut Kitchen, command: KitchenCommand) -> Result<Vec<KitchenEvent>, DomainError> {
        let events = k.decide(&command)?;
        for event in events.clone() {
            let version = k.version + 1;
            k.apply(&KitchenRecord { event_id: format!("k{version}"), version, occurred_at_ms: 10_000 * version as i64, actor: "m".into(), event });
        }
        Ok(events)
    }

    fn default_kitchen() -> Kitchen {
        Kitchen::initial()
    }

    fn line(item: &str, quantity: u32) -> PricedLine {
        PricedLine {
            item_id: item.into(),
            name: item.into(),
            size: "regular".into(),
            modifiers: vec![],
            quantity,
            unit_price_cents: crate::Cents(100),
            line_total_cents: crate::Cents(100 * u64::from(quantity)),
        }
    }

    #[test]
    fn the_default_kitchen_covers_the_default_menu() {
        let k = default_kitchen();
        for item in crate::menu::default_menu() {
            assert!(k.stations.iter().any(|s| s.items.contains(&item.id)), "{} has no station", item.id);
        }
        assert_eq!(k.version, 0);
        assert_eq!(Kitchen { version: 6, ..k }, fold(Kitchen::default_events()));
    }

    #[test]
    fn an_order_splits_by_station_and_unlisted_items_go_to_the_first() {
        let k = default_kitchen();
        let parts = k.route(&[line("croissant", 1), line("latte", 2), line("banana-bread", 1), line("new-special", 1), line("chai-latte", 1)]);
        assert_eq!(
            parts,
            [
                Part { station: "espresso-bar".into(), lines: vec![1, 3] },
                Part { station: "brew-bar".into(), lines: vec![4] },
                Part { station: "food".into(), lines: vec![0, 2] },
            ]
        );
    }

    #[test]
    fn broken_equipment_lowers_capacity_and_all_of_it_broken_takes_the_items_off_the_menu() {
        let mut k = default_kitchen();
        let set = |status| KitchenCommand::SetEquipmentStatus { equipment: "espresso-machine".into(), status, note: None };
        assert_eq!(k.capacity_percent("espresso-bar"), 100);
        run(&mut k, set(EquipmentStatus::Degraded)).expect("degraded");
        assert_eq!(k.capacity_percent("espresso-bar"), 75);
        run(&mut k, set(EquipmentStatus::OutOfOrder)).expect("broken");
        assert_eq!(k.capacity_percent("espresso-bar"), 50);
        assert!(k.unavailable_items().is_empty(), "the grinder alone still works");
        run(&mut k, KitchenCommand::SetEquipmentStatus { equipment: "grinder".into(), status: EquipmentStatus::OutOfOrder, note: Some("burrs".into()) })
            .expect("broken");
        assert_eq!(k.capacity_percent("espresso-bar"), 0);
        assert!(k.unavailable_items().contains("latte") && !k.unavailable_items().contains("chai-latte"));
        assert_eq!(k.capacity_percent("brew-bar"), 100, "a station without equipment never breaks");
        run(&mut k, set(EquipmentStatus::Ok)).expect("fixed");
        assert!(k.unavailable_items().is_empty(), "back when fixed");
        let log = &k.equipment("espresso-machine").expect("there").log;
        assert_eq!(
            log.iter().map(|e| e.status).collect::<Vec<_>>(),
            [Some(EquipmentStatus::Degraded), Some(EquipmentStatus::OutOfOrder), Some(EquipmentStatus::Ok)]
        );
        assert_eq!(run(&mut k, set(EquipmentStatus::Ok)), Ok(vec![]), "setting the same status again changes nothing");
    }

    #[test]
    fn commands_keep_the_kitchen_consistent() {
        let mut k = default_kitchen();
        let open = |id: &str, items: &[&str]| KitchenCommand::OpenStation {
            station: id.into(),
            name: "Bar".into(),
            items: items.iter().map(|i| i.to_string()).collect(),
        };
        assert_eq!(run(&mut k, open("espresso-bar", &[])).map_err(|e| e.code()), Err("station_exists"));
        assert_eq!(run(&mut k, open("tea-bar", &["chai-latte"])).map_err(|e| e.code()), Err("item_on_another_station"));
        assert_eq!(run(&mut k, open("Tea Bar", &[])).map_err(|e| e.code()), Err("invalid_id"));
        run(&mut k, KitchenCommand::ChangeStation { station: "brew-bar".into(), name: None, items: Some(vec!["cold-brew".into(), "hot-chocolate".into()]) })
            .expect("moved the teas off");
        run(&mut k, open("tea-bar", &["chai-latte", "chai-latte", "matcha-latte"])).expect("opened");
        assert_eq!(k.station("tea-bar").expect("there").items, ["chai-latte", "matcha-latte"], "an item once");
        assert_eq!(run(&mut k, KitchenCommand::CloseStation { station: "espresso-bar".into() }).map_err(|e| e.code()), Err("station_in_use"));
        run(&mut k, KitchenCommand::CloseStation { station: "tea-bar".into() }).expect("closed");
        assert!(k.station("tea-bar").is_none());
        let add = KitchenCommand::AddEquipment { equipment: "kettle".into(), station: "nowhere".into(), name: "Kettle".into() };
        assert_eq!(run(&mut k, add).map_err(|e| e.code()), Err("unknown_station"));
        let note = KitchenCommand::LogMaintenance { equipment: "grinder".into(), note: " ".into() };
        assert_eq!(run(&mut k, note).map_err(|e| e.code()), Err("invalid_note"));
        for i in 0..MAX_LOG_ENTRIES + 5 {
            run(&mut k, KitchenCommand::LogMaintenance { equipment: "grinder".into(), note: format!("cleaned {i}") }).expect("logged");
        }
        let log = &k.equipment("grinder").expect("there").log;
        assert_eq!(log.len(), MAX_LOG_ENTRIES);
        assert_eq!(log.last().and_then(|e| e.note.as_deref()), Some("cleaned 54"), "the newest kept");
    }

    #[test]
    fn a_shift_is_at_one_station_at_a_time() {
        let mut k = default_kitchen();
        run(&mut k, KitchenCommand::StartShift { user_id: "ann".into(), station: "espresso-bar".into() }).expect("on");
        run(&mut k, KitchenCommand::StartShift { user_id: "ann".into(), station: "food".into() }).expect("moved");
        assert_eq!((k.staff_at("espresso-bar"), k.staff_at("food")), (0, 1));
        assert_eq!(run(&mut k, KitchenCommand::StartShift { user_id: "ann".into(), station: "food".into() }), Ok(vec![]));
        run(&mut k, KitchenCommand::EndShift { user_id: "ann".into() }).expect("off");
        assert_eq!(run(&mut k, KitchenCommand::EndShift { user_id: "ann".into() }), Ok(vec![]));
        assert_eq!(k.staff_at("food"), 0);
    }

    #[test]
    fn estimates_follow_the_queue_the_staff_and_the_equipment() {
        let mut k = default_kitchen();
        let part = |station: &str, work_ms, started_at_ms| QueuedPart { station: station.into(), work_ms, started_at_ms };
        let board =
            [part("espresso-bar", 60_000, Some(0)), part("espresso-bar", 90_000, None), part("brew-bar", 30_000, None), part("espresso-bar", 60_000, None)];
        assert_eq!(k.estimate(&board, 20_000), [None, None, None, None], "nobody on shift");
        run(&mut k, KitchenCommand::StartShift { user_id: "ann".into(), station: "espresso-bar".into() }).expect("on");
        run(&mut k, KitchenCommand::StartShift { user_id: "bob".into(), station: "brew-bar".into() }).expect("on");
        // One pair of hands at the bar: 40 s left of the started drink, then 90 s, then 60 s.
        assert_eq!(k.estimate(&board, 20_000), [Some(60_000), Some(150_000), Some(50_000), Some(210_000)]);
        run(&mut k, KitchenCommand::StartShift { user_id: "cy".into(), station: "espresso-bar".into() }).expect("on");
        // Two: the second drink starts at once, the third when the first is done.
        assert_eq!(k.estimate(&board, 20_000), [Some(60_000), Some(110_000), Some(50_000), Some(120_000)]);
        run(&mut k, KitchenCommand::SetEquipmentStatus { equipment: "espresso-machine".into(), status: EquipmentStatus::OutOfOrder, note: None })
            .expect("broken");
        // Half the bar's capacity: everything there takes twice as long.
        assert_eq!(k.estimate(&board, 20_000), [Some(100_000), Some(200_000), Some(50_000), Some(220_000)]);
    }
}
