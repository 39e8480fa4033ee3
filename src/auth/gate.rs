//! Permissions belong to routes: every route is registered together with the access it needs,
//! and one gate decides every request from the route actix will run, never from the raw path.
//!
//! Owns: [`Access`] (what a route needs), [`Routes`] (the only way our services register
//! routes: each one declares its access), [`RouteTable`] (the declarations, which the gate
//! and the route-walking tests read), and the two layers that enforce them:
//!
//! 1. **The gate** ([`Gate::check`], an app-wide middleware, before routing). It asks actix's
//!    own resource map which pattern the request will be routed to, matching the *decoded*
//!    path that the router matches (`/db/%65xecute` is `/db/execute` to both), then looks the
//!    pattern and method up in the table. A pattern actix routes to but the table does not
//!    declare is refused (403: fail closed); a method the route does not declare is 405 before
//!    any handler runs; `HEAD` is decided as `GET`. With `-auth`, the caller must then hold the
//!    declared access (else 401). A request that passes carries a [`Granted`] marker naming
//!    the pattern.
//! 2. **The check at the route** (a resource middleware that [`Routes::register`] puts on every
//!    resource, after routing). It refuses (500) any request that reached a resource without a
//!    marker for exactly the pattern actix matched, so a gate bypassed or mistaken in any way
//!    still cannot run a handler.
//!
//! Invariants: no handler runs unless the gate granted its route's declared access; a route
//! cannot be registered without declaring access; a path the router sends nowhere gets the
//! service's 404, whatever the credentials (rqlite's answer for unknown paths).
//! Not owned here: who holds which perm (the credentials file, [`super::Auth`]).

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, Handler, HttpMessage as _, HttpResponse, Responder, Route};
use futures_util::future::{ready, Either};

use super::Auth;

/// What a route needs from its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Declared open to anyone (a redirect to the console; a backup job's download, whose
    /// 128-bit id was handed to a caller with `backup`).
    Public,
    /// Every one of these perms.
    AllOf(&'static [&'static str]),
    /// Any one of these perms (a join as a non-voter).
    AnyOf(&'static [&'static str]),
    /// Node-to-node: a member of the cluster. A connection whose client certificate was
    /// verified by node mutual TLS proves it; otherwise credentials holding any of these perms.
    Member(&'static [&'static str]),
}

/// One declared route.
#[derive(Debug, Clone)]
pub struct DeclaredRoute {
    pub pattern: &'static str,
    /// `None`: any method (rqlite serves expvar for any).
    pub method: Option<Method>,
    pub access: Access,
}

/// Every route a service registered, with its access.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<DeclaredRoute>,
    by_pattern: HashMap<&'static str, Vec<usize>>,
}

/// What the table says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The pattern is not in the table (fail closed).
    Undeclared,
    /// The route exists but not for this method.
    MethodNotAllowed,
    Needs(&'static str, Access),
}

impl RouteTable {
    pub fn routes(&self) -> &[DeclaredRoute] {
        &self.routes
    }

    fn push(&mut self, route: DeclaredRoute) {
        self.by_pattern
            .entry(route.pattern)
            .or_default()
            .push(self.routes.len());
        self.routes.push(route);
    }

    /// The access `method` on `pattern` needs. `HEAD` is decided as `GET` when the route does
    /// not declare it, so both land on the same decision.
    pub fn decide(&self, pattern: &str, method: &Method) -> Decision {
        let Some(indexes) = self.by_pattern.get(pattern) else {
            return Decision::Undeclared;
        };
        let find = |m: &Method| {
            indexes
                .iter()
                .map(|&i| &self.routes[i])
                .find(|r| match &r.method {
                    None => true,
                    Some(declared) => declared == m,
                })
        };
        let found = find(method).or_else(|| {
            if method == Method::HEAD {
                find(&Method::GET)
            } else {
                None
            }
        });
        match found {
            Some(route) => Decision::Needs(route.pattern, route.access),
            None => Decision::MethodNotAllowed,
        }
    }
}

/// The marker the gate leaves on a request it let through: the pattern it decided for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted(pub &'static str);

/// Routes being registered, each with its declared access.
#[derive(Default)]
pub struct Routes {
    table: RouteTable,
    /// In registration order (actix tries resources in that order).
    resources: Vec<(&'static str, Vec<Route>)>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Declares `method pattern` with `access`, served by `handler`.
    pub fn add<F, Args>(
        &mut self,
        pattern: &'static str,
        method: Method,
        access: Access,
        handler: F,
    ) -> &mut Routes
    where
        F: Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.push(
            pattern,
            Some(method.clone()),
            access,
            web::method(method).to(handler),
        )
    }

    /// Declares `pattern` for every method.
    pub fn any_method<F, Args>(
        &mut self,
        pattern: &'static str,
        access: Access,
        handler: F,
    ) -> &mut Routes
    where
        F: Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.push(pattern, None, access, web::route().to(handler))
    }

    fn push(
        &mut self,
        pattern: &'static str,
        method: Option<Method>,
        access: Access,
        route: Route,
    ) -> &mut Routes {
        self.table.push(DeclaredRoute {
            pattern,
            method,
            access,
        });
        match self.resources.iter_mut().find(|(p, _)| *p == pattern) {
            Some((_, routes)) => routes.push(route),
            None => self.resources.push((pattern, vec![route])),
        }
        self
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Registers every resource (a wrong method answers 405, and every resource checks the
    /// gate's marker) and returns the table the gate decides with.
    pub fn register(self, cfg: &mut web::ServiceConfig) -> RouteTable {
        for (pattern, routes) in self.resources {
            let mut resource = web::resource(pattern);
            for route in routes {
                resource = resource.route(route);
            }
            let resource = resource
                .default_service(web::to(|| async {
                    HttpResponse::new(StatusCode::METHOD_NOT_ALLOWED)
                }))
                .wrap_fn(|req, srv| {
                    let granted = req.extensions().get::<Granted>().copied();
                    let matched = req.match_pattern();
                    if matches!((granted, matched.as_deref()), (Some(Granted(g)), Some(m)) if g == m)
                    {
                        return Either::Left(actix_web::dev::Service::call(srv, req));
                    }
                    tracing::error!(
                        path = %req.path(),
                        ?matched,
                        ?granted,
                        "a request reached a route without the gate's grant: refused"
                    );
                    let refused = HttpResponse::new(StatusCode::INTERNAL_SERVER_ERROR);
                    Either::Right(ready(Ok(req.into_response(refused))))
                });
            cfg.service(resource);
        }
        self.table
    }
}

/// The app-wide gate: the route table, who holds which perm, and whether node mutual TLS
/// proves membership on this port.
#[derive(Debug, Clone)]
pub struct Gate {
    pub table: Arc<RouteTable>,
    pub auth: Option<Arc<Auth>>,
    /// True on the Raft port when `-node-verify-client` is on: every connection there
    /// presented a certificate signed by the node CA.
    pub members_by_tls: bool,
}

/// What the gate answers a request it does not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No route (404 from the service's default).
    NoRoute,
    MethodNotAllowed,
    /// A route actix serves that declares no access: a bug, refused (403).
    Undeclared,
    Unauthorized,
}

impl Gate {
    /// The pattern actix will route `req` to, matched on the decoded path as the router does.
    pub fn matched_pattern(req: &ServiceRequest) -> Option<String> {
        let decoded = req.match_info().as_str();
        req.request().resource_map().match_pattern(decoded)
    }

    /// Decides `req`: `Ok(Some(pattern))` to let it through to that route, `Ok(None)` for a
    /// path with no route (the default service answers 404), or the refusal.
    pub async fn check(&self, req: &ServiceRequest) -> Result<Option<&'static str>, Refusal> {
        let Some(pattern) = Gate::matched_pattern(req) else {
            return Ok(None);
        };
        let (pattern, access) = match self.table.decide(&pattern, req.method()) {
            Decision::Undeclared => {
                tracing::error!(%pattern, "route without declared access: refused");
                return Err(Refusal::Undeclared);
            }
            Decision::MethodNotAllowed => return Err(Refusal::MethodNotAllowed),
            Decision::Needs(pattern, access) => (pattern, access),
        };
        let Some(auth) = &self.auth else {
            return Ok(Some(pattern));
        };
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if auth
            .permits(authorization, access, self.members_by_tls)
            .await
        {
            Ok(Some(pattern))
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    /// Runs the gate in front of the rest of the service (an app-wide `from_fn` middleware):
    /// a request it lets through carries [`Granted`].
    pub async fn guard<B: MessageBody + 'static>(
        self: Arc<Gate>,
        req: ServiceRequest,
        next: Next<B>,
    ) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
        match self.check(&req).await {
            Ok(granted) => {
                if let Some(pattern) = granted {
                    req.extensions_mut().insert(Granted(pattern));
                }
                next.call(req).await.map(|r| r.map_into_boxed_body())
            }
            Err(refusal) => Ok(req.into_response(refusal_response(refusal))),
        }
    }
}

/// The answer for each refusal: empty bodies, as rqlite answers 401/404/405.
pub fn refusal_response(refusal: Refusal) -> HttpResponse {
    let status = match refusal {
        Refusal::NoRoute => StatusCode::NOT_FOUND,
        Refusal::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Refusal::Undeclared => StatusCode::FORBIDDEN,
        Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
    };
    HttpResponse::new(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ok() -> HttpResponse {
        HttpResponse::Ok().finish()
    }

    #[test]
    fn head_is_decided_as_get_and_undeclared_methods_are_405() {
        let mut routes = Routes::new();
        routes
            .add("/a", Method::GET, Access::AllOf(&["status"]), ok)
            .add("/a", Method::POST, Access::AllOf(&["execute"]), ok)
            .any_method("/any", Access::Public, ok);
        let t = routes.table();
        assert_eq!(
            t.decide("/a", &Method::HEAD),
            Decision::Needs("/a", Access::AllOf(&["status"]))
        );
        assert_eq!(
            t.decide("/a", &Method::POST),
            Decision::Needs("/a", Access::AllOf(&["execute"]))
        );
        assert_eq!(t.decide("/a", &Method::PUT), Decision::MethodNotAllowed);
        assert_eq!(t.decide("/b", &Method::GET), Decision::Undeclared);
        assert_eq!(
            t.decide("/any", &Method::PATCH),
            Decision::Needs("/any", Access::Public)
        );
    }
}
