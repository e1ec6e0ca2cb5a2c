//! The outbox: which connector wants which event, and the delivery engine that sends them.
//!
//! Owns: routing events to connectors (event-type patterns and scope filters), waking a
//! connector's dispatcher when its deliveries commit, and the dispatch loops with their
//! retry policy and circuit breaker. Must not touch SQL (the store does) or HTTP details
//! (connectors do).

pub mod events;
pub mod policy;
mod worker;

use std::sync::Arc;

use tokio::sync::Notify;

pub use events::{event_pattern_is_valid, EventType, NewEvent};
pub use worker::{start, Engine};

use crate::scim::filter::Filter;
use crate::scim::{schema, ResourceKind};

/// What one connector wants to receive.
pub struct Route {
    pub name: String,
    pub events: Vec<String>,
    pub scope: Option<Filter>,
    notify: Arc<Notify>,
}

impl Route {
    pub fn new(name: String, events: Vec<String>, scope: Option<Filter>) -> Route {
        Route {
            name,
            events,
            scope,
            notify: Arc::new(Notify::new()),
        }
    }

    fn wants(&self, event: &NewEvent) -> bool {
        let type_ok = self
            .events
            .iter()
            .any(|p| events::pattern_matches(p, event.event_type.as_str()));
        if !type_ok {
            return false;
        }
        // The scope is a filter over the user: a user event is delivered when the user was
        // in scope before the change or is after it (so leaving the scope is seen too).
        match (&self.scope, event.kind) {
            (Some(scope), ResourceKind::User) => [&event.scope_before, &event.scope_after]
                .into_iter()
                .flatten()
                .any(|user| scope.matches(user, &|p| schema::case_exact(ResourceKind::User, p))),
            _ => true,
        }
    }
}

/// The routing table the store consults while recording events, plus the public base URL
/// that resource snapshots are rendered with.
pub struct Fanout {
    routes: Vec<Route>,
    pub base_url: String,
}

impl Fanout {
    pub fn new(routes: Vec<Route>, base_url: String) -> Fanout {
        Fanout { routes, base_url }
    }

    /// No connectors: events are still logged, nothing is delivered.
    pub fn none() -> Fanout {
        Fanout::new(Vec::new(), String::new())
    }

    /// Indexes of the connectors that want this event.
    pub fn targets(&self, event: &NewEvent) -> Vec<usize> {
        self.routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.wants(event))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn name(&self, index: usize) -> &str {
        self.routes.get(index).map_or("", |r| r.name.as_str())
    }

    pub fn names(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.name.clone()).collect()
    }

    /// Wakes the dispatchers of connectors that just got deliveries.
    pub fn notify(&self, touched: &[usize]) {
        for &i in touched {
            if let Some(r) = self.routes.get(i) {
                r.notify.notify_one();
            }
        }
    }

    pub(crate) fn notifier(&self, index: usize) -> Option<Arc<Notify>> {
        self.routes.get(index).map(|r| r.notify.clone())
    }
}
