//! Spin's HTTP routing: exact routes, `:name` segments and trailing `/...` wildcards, the most
//! specific match winning, and the `spin-*` headers a component receives.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// As written in the manifest, e.g. `/api/v1/orders/...`.
    pub raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
    pub component: String,
}

#[derive(Debug, Clone)]
pub struct Match<'a> {
    pub route: &'a Route,
    /// The part of the path after what the route matched (`spin-path-info`).
    pub path_info: String,
    pub params: Vec<(String, String)>,
}

impl Match<'_> {
    /// The `spin-path-match-*` headers of the named segments, named as Spin names them: the
    /// parameter upper-cased with `_` for `-` (`SPIN_PATH_MATCH_PATH_SEGMENT`), then turned into a
    /// header name (`spin-path-match-path-segment`).
    pub fn param_headers(&self) -> impl Iterator<Item = (String, &str)> {
        self.params.iter().map(|(name, value)| (format!("spin-path-match-{}", name.to_ascii_lowercase().replace('_', "-")), value.as_str()))
    }
}

impl Route {
    pub fn parse(raw: &str, component: &str) -> Result<Route> {
        if !raw.starts_with('/') {
            bail!("route `{raw}` must start with /");
        }
        let (body, wildcard) = match raw.strip_suffix("/...") {
            Some(b) => (b, true),
            None => (raw, false),
        };
        let segments = body
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| match s.strip_prefix(':') {
                Some(name) if !name.is_empty() => Ok(Segment::Param(name.to_owned())),
                Some(_) => bail!("route `{raw}` has an unnamed parameter"),
                None if s == "..." => bail!("route `{raw}`: `...` may only end a route"),
                None => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<Result<_>>()?;
        Ok(Route { raw: raw.to_owned(), segments, wildcard, component: component.to_owned() })
    }

    /// The route without its wildcard (`spin-component-route`).
    pub fn component_route(&self) -> String {
        if self.wildcard { self.raw.trim_end_matches("/...").to_owned() } else { self.raw.clone() }
    }

    /// Orders routes most specific first: literals before parameters before wildcards,
    /// segment by segment, then longer before shorter, exact before wildcard.
    fn specificity(&self) -> Vec<u8> {
        let mut key: Vec<u8> = self.segments.iter().map(|s| if matches!(s, Segment::Literal(_)) { 3 } else { 2 }).collect();
        key.push(if self.wildcard { 1 } else { 0 });
        key
    }

    fn matches(&self, path: &str) -> Option<Match<'_>> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if parts.len() < self.segments.len() || (!self.wildcard && parts.len() != self.segments.len()) {
            return None;
        }
        let mut params = vec![];
        for (seg, part) in self.segments.iter().zip(&parts) {
            match seg {
                Segment::Literal(l) if l == part => {}
                Segment::Param(name) => params.push((name.clone(), (*part).to_owned())),
                Segment::Literal(_) => return None,
            }
        }
        let rest = &parts[self.segments.len()..];
        let path_info = if rest.is_empty() { String::new() } else { format!("/{}", rest.join("/")) };
        Some(Match { route: self, path_info, params })
    }
}

#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(mut routes: Vec<Route>) -> Result<Router> {
        routes.sort_by_key(|r| std::cmp::Reverse(r.specificity()));
        for pair in routes.windows(2) {
            if pair[0].specificity() == pair[1].specificity() && pair[0].segments == pair[1].segments {
                bail!("routes `{}` and `{}` overlap", pair[0].raw, pair[1].raw);
            }
        }
        Ok(Router { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn route(&self, path: &str) -> Option<Match<'_>> {
        self.routes.iter().find_map(|r| r.matches(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(vec![
            Route::parse("/...", "fallback").expect("route"),
            Route::parse("/api/v1/orders/...", "orders").expect("route"),
            Route::parse("/api/v1/orders/special", "special").expect("route"),
            Route::parse("/api/v1/users/:id", "users").expect("route"),
            Route::parse("/health", "health").expect("route"),
        ])
        .expect("router")
    }

    #[test]
    fn the_most_specific_route_wins() {
        let r = router();
        let m = |p| r.route(p).map(|m| (m.route.component.clone(), m.path_info));
        assert_eq!(m("/api/v1/orders/special"), Some(("special".into(), "".into())));
        assert_eq!(m("/api/v1/orders/123/cancel"), Some(("orders".into(), "/123/cancel".into())));
        assert_eq!(m("/api/v1/orders"), Some(("orders".into(), "".into())), "a wildcard matches its own prefix");
        assert_eq!(m("/health"), Some(("health".into(), "".into())));
        assert_eq!(m("/health/deep"), Some(("fallback".into(), "/health/deep".into())));
        assert_eq!(m("/api/v1/ordersx"), Some(("fallback".into(), "/api/v1/ordersx".into())));
    }

    #[test]
    fn named_segments_are_captured() {
        let r = router();
        let hit = r.route("/api/v1/users/42").expect("match");
        assert_eq!(hit.params, vec![("id".to_owned(), "42".to_owned())]);
        let spin_named = Router::new(vec![Route::parse("/a/:path_segment/:Mixed_Case", "x").expect("route")]).expect("router");
        let hit = spin_named.route("/a/one/two").expect("match");
        let headers: Vec<(String, &str)> = hit.param_headers().collect();
        assert_eq!(headers, vec![("spin-path-match-path-segment".to_owned(), "one"), ("spin-path-match-mixed-case".to_owned(), "two")]);
        assert_eq!(r.route("/api/v1/users/42/x").map(|m| m.route.component.clone()), Some("fallback".into()));
    }

    #[test]
    fn without_a_catch_all_unknown_paths_match_nothing() {
        let r = Router::new(vec![Route::parse("/health", "h").expect("route")]).expect("router");
        assert!(r.route("/nope").is_none());
        assert_eq!(r.routes()[0].component_route(), "/health");
    }

    #[test]
    fn duplicate_or_malformed_routes_are_refused() {
        assert!(Router::new(vec![Route::parse("/a/...", "x").expect("r"), Route::parse("/a/...", "y").expect("r")]).is_err());
        assert!(Route::parse("no-slash", "x").is_err());
        assert!(Route::parse("/a/.../b", "x").is_err());
        assert!(Route::parse("/a/:", "x").is_err());
    }
}
