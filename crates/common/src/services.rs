//! The one table of lakehouse services: each one's name, the route prefix
//! it owns and its port when it runs alone. `lakehouse serve --only`, the
//! gateway's routing, upstream errors and the auth route classes all read
//! it, so a new service is added here once.

use std::fmt;
use std::str::FromStr;

/// A lakehouse service (a daemon of a split deployment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Storaged,
    Catalogd,
    Ingestd,
    Queryd,
    Vectord,
    /// The front door of a split deployment: routes to the others.
    Gateway,
}

/// One row of the table.
struct Row {
    service: Service,
    name: &'static str,
    prefix: &'static str,
    port: u16,
}

const TABLE: [Row; 6] = [
    Row {
        service: Service::Storaged,
        name: "storaged",
        prefix: "/storage",
        port: 8081,
    },
    Row {
        service: Service::Catalogd,
        name: "catalogd",
        prefix: "/catalog",
        port: 8082,
    },
    Row {
        service: Service::Ingestd,
        name: "ingestd",
        prefix: "/ingest",
        port: 8083,
    },
    Row {
        service: Service::Queryd,
        name: "queryd",
        prefix: "/query",
        port: 8084,
    },
    Row {
        service: Service::Vectord,
        name: "vectord",
        prefix: "/vectors",
        port: 8085,
    },
    // The gateway owns no prefix of its own: it routes the others'.
    Row {
        service: Service::Gateway,
        name: "gateway",
        prefix: "",
        port: 8080,
    },
];

impl Service {
    /// Every service, the gateway last.
    pub const ALL: [Service; 6] = [
        Service::Storaged,
        Service::Catalogd,
        Service::Ingestd,
        Service::Queryd,
        Service::Vectord,
        Service::Gateway,
    ];

    /// The services behind the gateway (each owns a route prefix).
    pub const UPSTREAMS: [Service; 5] = [
        Service::Storaged,
        Service::Catalogd,
        Service::Ingestd,
        Service::Queryd,
        Service::Vectord,
    ];

    fn row(self) -> &'static Row {
        &TABLE[self as usize]
    }

    /// `storaged`, `catalogd`, …: in logs, errors, config keys and `--only`.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The route prefix the service owns (`""` for the gateway).
    pub fn prefix(self) -> &'static str {
        self.row().prefix
    }

    /// The port it listens on when it runs alone.
    pub fn default_port(self) -> u16 {
        self.row().port
    }

    /// `127.0.0.1:<default port>`.
    pub fn default_bind(self) -> String {
        format!("127.0.0.1:{}", self.default_port())
    }

    /// The service with this name.
    pub fn from_name(name: &str) -> Option<Service> {
        TABLE.iter().find(|r| r.name == name).map(|r| r.service)
    }

    /// The service whose routes `path` is under (`/query/sql` → queryd).
    pub fn of_path(path: &str) -> Option<Service> {
        Service::UPSTREAMS.into_iter().find(|s| {
            path.strip_prefix(s.prefix())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a service's.
#[derive(Debug, thiserror::Error)]
#[error("unknown service {0:?} (one of storaged, catalogd, ingestd, queryd, vectord, gateway)")]
pub struct UnknownService(pub String);

impl FromStr for Service {
    type Err = UnknownService;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::from_name(s).ok_or_else(|| UnknownService(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_variant_order() {
        for s in Service::ALL {
            assert_eq!(s.row().service, s);
            assert_eq!(s.name().parse::<Service>().unwrap(), s);
            assert_eq!(s.to_string(), s.name());
        }
        assert!("nope".parse::<Service>().is_err());
        assert_eq!(Service::Gateway.default_bind(), "127.0.0.1:8080");
        assert_eq!(Service::Vectord.default_bind(), "127.0.0.1:8085");
    }

    #[test]
    fn paths_belong_to_the_service_owning_their_prefix() {
        assert_eq!(Service::of_path("/query/sql"), Some(Service::Queryd));
        assert_eq!(Service::of_path("/storage"), Some(Service::Storaged));
        assert_eq!(
            Service::of_path("/vectors/indexes/a"),
            Some(Service::Vectord)
        );
        assert_eq!(Service::of_path("/queryx"), None);
        assert_eq!(Service::of_path("/health"), None);
    }
}
