//! Money as integer minor units. Never floats.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// An amount in US cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cents(pub u64);

impl Cents {
    pub const ZERO: Cents = Cents(0);

    pub fn checked_add(self, other: Cents) -> Result<Cents, DomainError> {
        self.0.checked_add(other.0).map(Cents).ok_or(DomainError::AmountOverflow)
    }

    pub fn checked_mul(self, n: u64) -> Result<Cents, DomainError> {
        self.0.checked_mul(n).map(Cents).ok_or(DomainError::AmountOverflow)
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${}.{:02}", self.0 / 100, self.0 % 100)
    }
}
