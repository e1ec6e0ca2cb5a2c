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

/// How a connector consumes events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// Every matching event is delivered as it happened (webhooks).
    Events,
    /// The connector converges resources to their current state (SCIM targets): an event
    /// asks for its resource to be synced, and a group event for the users it touches (their
    /// scope may depend on the group), and for the group itself when groups are synced.
    State { groups: bool },
}

/// Which resource a delivery syncs or is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fan {
    /// `User/<id>` or `Group/<id>`.
    Key(String),
    /// Every current member of the group (looked up by the store).
    MembersOf(String),
}

/// What one connector wants to receive.
pub struct Route {
    pub name: String,
    pub kind: RouteKind,
    pub events: Vec<String>,
    pub scope: Option<Filter>,
    notify: Arc<Notify>,
}

fn key(kind: ResourceKind, id: &str) -> String {
    format!("{}/{id}", kind.name())
}

impl Route {
    pub fn new(name: String, kind: RouteKind, events: Vec<String>, scope: Option<Filter>) -> Route {
        Route {
            name,
            kind,
            events,
            scope,
            notify: Arc::new(Notify::new()),
        }
    }

    /// The user was in scope before the change or is after it (so leaving it is seen too).
    fn in_scope(&self, event: &NewEvent) -> bool {
        match &self.scope {
            Some(scope) => [&event.scope_before, &event.scope_after]
                .into_iter()
                .flatten()
                .any(|user| scope.matches(user, &|p| schema::case_exact(ResourceKind::User, p))),
            None => true,
        }
    }

    /// The deliveries this connector wants for an event (none: not interested).
    fn fans(&self, event: &NewEvent) -> Vec<Fan> {
        let type_ok = self
            .events
            .iter()
            .any(|p| events::pattern_matches(p, event.event_type.as_str()));
        if !type_ok {
            return Vec::new();
        }
        let own = Fan::Key(key(event.kind, &event.resource_id));
        match (self.kind, event.kind) {
            (_, ResourceKind::User) => {
                if self.in_scope(event) {
                    vec![own]
                } else {
                    Vec::new()
                }
            }
            (RouteKind::Events, ResourceKind::Group) => vec![own],
            (RouteKind::State { groups }, ResourceKind::Group) => {
                let mut out: Vec<Fan> = match event.event_type {
                    EventType::GroupUpdated => vec![Fan::MembersOf(event.resource_id.clone())],
                    _ => event
                        .members
                        .iter()
                        .map(|m| Fan::Key(key(ResourceKind::User, m)))
                        .collect(),
                };
                if groups {
                    out.push(own);
                }
                out
            }
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

    /// The connectors that want this event, with the deliveries each wants.
    pub fn targets(&self, event: &NewEvent) -> Vec<(usize, Vec<Fan>)> {
        self.routes
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.fans(event)))
            .filter(|(_, fans)| !fans.is_empty())
            .collect()
    }

    /// Whether any connector filters users by a scope (events then carry the user's states).
    pub fn has_scopes(&self) -> bool {
        self.routes.iter().any(|r| r.scope.is_some())
    }

    /// The index of the connector with this name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.name == name)
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
