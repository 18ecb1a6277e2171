//! The machinery of armed faults that every emulator shares: a rule (a fault, the method it is
//! limited to, how many times it fires, and a scope each emulator defines: a path pattern, a
//! page, an entity…), the book of armed rules where the first match fires, and path patterns.
//! What a fault does, and which requests a scope covers, belong to each emulator; this module
//! never answers a request.

use std::sync::Mutex;

use crate::lock;

/// How many times a rule fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Times {
    Count(u32),
    Always,
}

/// Which requests a rule applies to, beyond their method; `T` is what an emulator knows of a
/// request when it asks its book for a fault.
pub trait Scope<T: ?Sized> {
    fn covers(&self, target: &T) -> bool;
}

/// A fault and the requests it applies to. Each emulator names its own as `FaultRule`, with
/// a `new` and the scope's builder methods.
#[derive(Clone, Debug)]
pub struct FaultRule<S, F> {
    pub(crate) scope: S,
    method: Option<String>,
    times: Times,
    fault: F,
}

impl<S, F> FaultRule<S, F> {
    /// A rule that fires `fault` once, on any method.
    pub(crate) fn once(scope: S, fault: F) -> FaultRule<S, F> {
        FaultRule { scope, method: None, times: Times::Count(1), fault }
    }

    /// Only for requests with this method (`GET`, `PATCH`, `POST`…).
    pub fn method(mut self, method: &str) -> FaultRule<S, F> {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Fires on the next `count` matching requests.
    pub fn times(mut self, count: u32) -> FaultRule<S, F> {
        self.times = Times::Count(count);
        self
    }

    /// Fires on every matching request until the faults are cleared.
    pub fn always(mut self) -> FaultRule<S, F> {
        self.times = Times::Always;
        self
    }

    fn spent(&self) -> bool {
        self.times == Times::Count(0)
    }

    fn matches<T: ?Sized>(&self, method: &str, target: &T) -> bool
    where
        S: Scope<T>,
    {
        !self.spent()
            && self.method.as_deref().is_none_or(|m| m == method)
            && self.scope.covers(target)
    }
}

/// The armed rules, in the order they were added; the first match fires.
pub struct FaultBook<S, F> {
    rules: Mutex<Vec<FaultRule<S, F>>>,
}

impl<S, F> Default for FaultBook<S, F> {
    fn default() -> Self {
        FaultBook { rules: Mutex::new(Vec::new()) }
    }
}

impl<S, F: Clone> FaultBook<S, F> {
    pub fn add(&self, rule: FaultRule<S, F>) {
        lock(&self.rules).push(rule);
    }

    pub fn clear(&self) {
        lock(&self.rules).clear();
    }

    /// How many rules could still fire.
    pub fn armed(&self) -> usize {
        lock(&self.rules).iter().filter(|r| !r.spent()).count()
    }

    /// The fault for a `method` request the emulator describes as `target`, if any, counting
    /// it against its rule.
    pub fn take<T: ?Sized>(&self, method: &str, target: &T) -> Option<F>
    where
        S: Scope<T>,
    {
        let mut rules = lock(&self.rules);
        let rule = rules.iter_mut().find(|r| r.matches(method, target))?;
        if let Times::Count(n) = &mut rule.times {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }
}

/// Whether `path` matches `pattern`, segment by segment and ignoring case: `*` matches one
/// segment, `**` any number of trailing segments.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/').filter(|s| !s.is_empty());
    let mut have = path.split('/').filter(|s| !s.is_empty());
    loop {
        match (want.next(), have.next()) {
            (Some("**"), _) => return true,
            (Some("*"), Some(_)) => continue,
            (Some(w), Some(h)) if w.eq_ignore_ascii_case(h) => continue,
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Any;

    impl Scope<str> for Any {
        fn covers(&self, _: &str) -> bool {
            true
        }
    }

    #[test]
    fn the_first_matching_rule_fires_and_methods_are_compared_in_upper_case() {
        let book = FaultBook::default();
        book.add(FaultRule::once(Any, "patch").method("patch"));
        book.add(FaultRule::once(Any, "any").always());
        assert_eq!(book.take("GET", "x"), Some("any"));
        assert_eq!(book.take("PATCH", "x"), Some("patch"));
        assert_eq!(book.take("PATCH", "x"), Some("any"));
        assert_eq!(book.armed(), 1);
        book.clear();
        assert_eq!(book.take("GET", "x"), None);
    }
}
