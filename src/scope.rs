//! What a key may do: the scopes an org's keys are issued with, held as a small set.

use std::fmt;

/// One power a key may hold. Each route needs exactly one (see `http::scopes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::EnumIter, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    /// The lists, their streams, `/calls`, `/capacity` and `/webhooks`.
    Read,
    /// Ending one call.
    End,
    /// Ending every active call of the org at once.
    StopAll,
    /// Placing a call.
    Place,
    /// Bland's other `/v1/` routes, forwarded.
    Forward,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The scope named `text`, as written in `scopes = [...]`.
    pub fn parse(text: &str) -> Option<Self> {
        use strum::IntoEnumIterator;
        Self::iter().find(|s| s.as_str() == text)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes. A bit set, so a route's check is one AND on the request path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub const NONE: Self = Self(0);

    pub fn all() -> Self {
        use strum::IntoEnumIterator;
        Scope::iter().collect()
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes held, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        use strum::IntoEnumIterator;
        Scope::iter().filter(move |s| self.contains(*s))
    }

    /// The names of the scopes, as a list written in a config file.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Scope::as_str).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, s| bits | s.bit()))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_scope_parses_from_its_own_name_and_only_then() {
        for s in Scope::iter() {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert!(Scopes::all().contains(s));
            assert!(!Scopes::NONE.contains(s));
        }
        assert_eq!(Scope::parse("stop-all"), None);
        assert_eq!(Scope::parse("READ"), None);
    }
}
