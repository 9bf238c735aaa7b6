//! Go Coffee's domain: the menu and pricing, orders and their state machine, the events that
//! record every change, and the identity rules. Pure data and rules: no I/O, no async, no
//! platform types, so it compiles for native targets and `wasm32-wasip2` alike.

pub mod analytics;
pub mod calendar;
pub mod error;
pub mod identity;
pub mod ids;
pub mod kitchen;
pub mod live;
pub mod menu;
pub mod money;
pub mod order;
pub mod trace;

pub use error::{DomainError, ErrorKind};
pub use identity::{Email, Password, Role};
pub use menu::{Category, Menu, MenuItem, MenuItemPatch, ModifierOption, NewMenuItem, SizePrice};
pub use money::Cents;
pub use order::{
    Actor, Command, CryptoMethod, KitchenTicket, Order, OrderEvent, OrderLine, OrderPart, OrderRequest, OrderStatus, PaymentMethod, PricedLine, PricedOrder,
    StoredEvent,
};
