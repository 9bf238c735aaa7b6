//! Identity rules: roles and their ranking, and the parsed forms of an email and a password, so
//! an invalid one can't exist past the edge.

use serde::{Deserialize, Serialize};

use crate::DomainError;

/// Roles, ordered by privilege: each includes what the ones below it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Barista,
    Manager,
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Customer, Role::Barista, Role::Manager, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Barista => "barista",
            Role::Manager => "manager",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// True when this role has at least the privileges of `other`.
    pub fn at_least(self, other: Role) -> bool {
        self >= other
    }

    /// Staff are everyone who works the shop: baristas and above.
    pub fn is_staff(self) -> bool {
        self.at_least(Role::Barista)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syntactically valid, lower-cased email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, DomainError> {
        let s = raw.trim().to_ascii_lowercase();
        let invalid = || DomainError::validation("invalid_email", "email must look like name@example.com");
        if s.is_empty() || s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = s.split_once('@').ok_or_else(invalid)?;
        let domain_ok = !domain.contains('@') && domain.contains('.') && domain.split('.').all(|label| !label.is_empty() && label.len() <= 63);
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the length policy. Never logged or serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Password, DomainError> {
        let n = raw.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(DomainError::validation("weak_password", format!("password must be {} to {} characters", Self::MIN_CHARS, Self::MAX_CHARS)));
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_rank_from_customer_to_admin() {
        assert!(Role::Admin.at_least(Role::Manager));
        assert!(Role::Manager.at_least(Role::Barista));
        assert!(!Role::Barista.at_least(Role::Manager));
        assert!(!Role::Customer.is_staff());
        assert!(Role::Barista.is_staff());
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(Email::parse("  Ada@Example.COM ").map(|e| e.0), Ok("ada@example.com".into()));
    }

    #[test]
    fn malformed_emails_are_rejected() {
        for bad in ["", "ada", "ada@", "@example.com", "ada@example", "a b@example.com", "a@b@c.com", "ada@example..com"] {
            assert_eq!(Email::parse(bad).map_err(|e| e.code()), Err("invalid_email"), "{bad}");
        }
    }

    #[test]
    fn passwords_outside_the_length_policy_are_rejected() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert!(Password::parse("correct horse").is_ok());
        assert_eq!(format!("{:?}", Password::parse("correct horse")), "Ok(Password(***))");
    }
}
