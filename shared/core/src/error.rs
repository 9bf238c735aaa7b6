//! The domain's one error type. Each variant has a stable machine-readable code; the app layer
//! maps the kind to an HTTP status in one place.

use crate::order::OrderStatus;

/// What sort of failure a [`DomainError`] is, independent of any transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The input is well-formed but breaks a business rule (HTTP 422).
    Invalid,
    /// The request conflicts with the current state (HTTP 409).
    Conflict,
    /// The caller may not do this (HTTP 403).
    Forbidden,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("{message}")]
    Validation { code: &'static str, message: String },
    #[error("unknown menu item `{0}`")]
    UnknownItem(String),
    #[error("menu item `{0}` is not available right now")]
    ItemUnavailable(String),
    #[error("cannot {action} an order that is {from}")]
    IllegalTransition { from: OrderStatus, action: &'static str },
    #[error("{0}")]
    NotPermitted(&'static str),
    #[error("the amount is too large")]
    AmountOverflow,
    /// The request conflicts with the current state (a name taken, something still in use).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
}

impl DomainError {
    pub fn validation(code: &'static str, message: impl Into<String>) -> Self {
        DomainError::Validation { code, message: message.into() }
    }

    /// The stable code clients can match on.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::Validation { code, .. } => code,
            DomainError::UnknownItem(_) => "unknown_item",
            DomainError::ItemUnavailable(_) => "item_unavailable",
            DomainError::IllegalTransition { .. } => "illegal_transition",
            DomainError::NotPermitted(_) => "forbidden",
            DomainError::AmountOverflow => "amount_too_large",
            DomainError::Conflict { code, .. } => code,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            DomainError::Validation { .. } | DomainError::UnknownItem(_) | DomainError::ItemUnavailable(_) | DomainError::AmountOverflow => ErrorKind::Invalid,
            DomainError::IllegalTransition { .. } | DomainError::Conflict { .. } => ErrorKind::Conflict,
            DomainError::NotPermitted(_) => ErrorKind::Forbidden,
        }
    }
}
