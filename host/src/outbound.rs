//! `allowed_outbound_hosts`, as Spin reads it: every entry is `scheme://host[:port]`, where the
//! scheme is a word or `*`; the host is `*`, `*.example.com` (any subdomain), a name, an IP
//! address or an IP network (`10.0.0.0/8`); the port is a number, a range `6000..6010` (end
//! excluded), `*`, or left out for the scheme's well-known port (an error for a scheme without
//! one). An entry a variable made empty (or just `http://`) allows nothing and is skipped.
//!
//! Outbound HTTP, Redis connections and `wasi:sockets` all ask the same list: a TCP connection to
//! `127.0.0.1:6001` is the URL `tcp://127.0.0.1:6001`, so `*://127.0.0.1:6001`, `tcp://...`, or a
//! network that holds the address allow it. Binding a socket is never allowed.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use anyhow::{Context as _, Result, bail};
use url::Host;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    Any,
    /// `.example.com`: any name ending so.
    Subdomains(String),
    Name(String),
    Network(ipnet::IpNet),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ports {
    Any,
    One(u16),
    Range(Range<u16>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Allowed {
    /// `None`: any scheme.
    scheme: Option<String>,
    host: Hosts,
    port: Ports,
}

/// One component's `allowed_outbound_hosts`, variables already expanded.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<Allowed>);

fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Hosts {
    fn parse(host: &str) -> Result<Hosts> {
        let host = host.trim();
        if host == "*" {
            return Ok(Hosts::Any);
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(net) = bare.parse::<ipnet::IpNet>() {
            return Ok(Hosts::Network(net.trunc()));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Hosts::Network(ipnet::IpNet::from(ip)));
        }
        let host = host.strip_suffix('/').unwrap_or(host);
        if host.contains('/') {
            bail!("`{host}` must not include a path");
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                bail!("wildcards are allowed only as prefixes");
            }
            return match Host::parse(domain).with_context(|| format!("invalid wildcard host `*.{domain}`"))? {
                Host::Domain(d) => Ok(Hosts::Subdomains(format!(".{d}"))),
                _ => bail!("a wildcard's suffix must be a domain"),
            };
        }
        if host.contains('*') {
            bail!("wildcards are allowed only as subdomains");
        }
        match Host::parse(host).with_context(|| format!("invalid host `{host}`"))? {
            Host::Domain(d) => Ok(Hosts::Name(d)),
            Host::Ipv4(ip) => Ok(Hosts::Network(IpAddr::V4(ip).into())),
            Host::Ipv6(ip) => Ok(Hosts::Network(IpAddr::V6(ip).into())),
        }
    }

    fn allows(&self, host: &Host) -> bool {
        match (self, host) {
            (Hosts::Any, _) => true,
            (Hosts::Subdomains(suffix), Host::Domain(d)) => d.ends_with(suffix.as_str()),
            (Hosts::Name(name), Host::Domain(d)) => name == d,
            (Hosts::Network(net), Host::Ipv4(ip)) => net.contains(&IpAddr::V4(*ip)),
            (Hosts::Network(net), Host::Ipv6(ip)) => net.contains(&IpAddr::V6(*ip)),
            _ => false,
        }
    }
}

impl Ports {
    fn parse(port: &str, scheme: &str) -> Result<Ports> {
        if port.is_empty() {
            return well_known_port(scheme).map(Ports::One).with_context(|| format!("no port was given and the scheme `{scheme}` has no well-known port"));
        }
        if port == "*" {
            return Ok(Ports::Any);
        }
        if let Some((start, end)) = port.split_once("..") {
            return Ok(Ports::Range(start.parse().context("port range")?..end.parse().context("port range")?));
        }
        Ok(Ports::One(port.parse().with_context(|| format!("port `{port}` is not a number"))?))
    }

    fn allows(&self, port: u16) -> bool {
        match self {
            Ports::Any => true,
            Ports::One(p) => *p == port,
            Ports::Range(r) => r.contains(&port),
        }
    }
}

impl Allowed {
    fn parse(entry: &str) -> Result<Allowed> {
        let entry = entry.trim();
        let (scheme, rest) = entry.split_once("://").with_context(|| format!("`{entry}` has no scheme (`http://`, `*://`, ...)"))?;
        // The port is after the last `:`, unless the whole is a host (an IPv6 address).
        let (host, port) = match rest.rsplit_once(':') {
            None => (rest, ""),
            Some((h, "")) => (h, ""),
            Some((h, tail)) => {
                if Hosts::parse(rest).is_ok() {
                    (rest, "")
                } else {
                    match tail.split_once('/') {
                        Some((_, path)) if !path.is_empty() => bail!("`{entry}` has a path"),
                        Some((port, _)) => (h, port),
                        None => (h, tail),
                    }
                }
            }
        };
        let port = Ports::parse(port, scheme).with_context(|| format!("`{entry}`"))?;
        let scheme = match scheme {
            "*" => None,
            s if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()) => Some(s.to_ascii_lowercase()),
            s => bail!("`{entry}`: the scheme `{s}` may only have letters"),
        };
        let host = Hosts::parse(host).with_context(|| format!("`{entry}`"))?;
        Ok(Allowed { scheme, host, port })
    }
}

impl AllowedHosts {
    pub fn parse(entries: &[String]) -> Result<AllowedHosts> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let entry = entry.trim();
            // A variable left empty (an optional endpoint) allows nothing.
            if entry.is_empty() || entry == "http://" || entry == "https://" {
                continue;
            }
            out.push(Allowed::parse(entry).with_context(|| format!("allowed_outbound_hosts entry `{entry}`"))?);
        }
        Ok(AllowedHosts(out))
    }

    /// Whether a connection to `url` (`https://api.example.com/x`, `redis://10.0.0.5`) is allowed.
    pub fn allows_url(&self, url: &str) -> bool {
        let Ok(url) = url::Url::parse(url) else { return false };
        // Parsed again as a host: a URL of a scheme the URL standard doesn't know (`redis://`)
        // keeps its host as opaque text, where `127.0.0.1` is a name, not an address.
        let Some(Ok(host)) = url.host_str().map(Host::parse) else { return false };
        let Some(port) = url.port().or_else(|| well_known_port(url.scheme())) else { return false };
        self.allows(url.scheme(), &host, port)
    }

    /// Whether a guest may open a TCP connection to `addr` (`wasi:sockets`): as the URL
    /// `tcp://{addr}`. UDP and listening sockets are not for Go Coffee's components.
    pub fn allows_tcp(&self, addr: SocketAddr) -> bool {
        let host = match addr.ip().to_canonical() {
            IpAddr::V4(ip) => Host::Ipv4(ip),
            IpAddr::V6(ip) => Host::Ipv6(ip),
        };
        self.allows("tcp", &host, addr.port())
    }

    fn allows(&self, scheme: &str, host: &Host, port: u16) -> bool {
        self.0.iter().any(|a| a.scheme.as_deref().is_none_or(|s| s == scheme) && a.host.allows(host) && a.port.allows(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("parses")
    }

    #[test]
    fn only_listed_hosts_are_allowed() {
        let h = hosts(&["redis://127.0.0.1:6379", "https://api.example.com", "http://*.internal:*"]);
        assert!(h.allows_url("redis://127.0.0.1:6379"));
        assert!(h.allows_url("redis://127.0.0.1"), "default port");
        assert!(!h.allows_url("redis://127.0.0.1:6380"));
        assert!(h.allows_url("https://api.example.com/v1/x?y=1"));
        assert!(h.allows_url("https://API.example.com/"), "names compare case-insensitively");
        assert!(!h.allows_url("http://api.example.com/"), "scheme matters");
        assert!(h.allows_url("http://svc.internal:8080/"));
        assert!(!h.allows_url("http://internal:8080/"));
        assert!(!h.allows_url("https://evil.com/api.example.com"));
        assert!(!h.allows_url("https://api.example.com@evil.com/"), "userinfo is not the host");
        assert!(h.allows_url("redis://user:pw@127.0.0.1:6379"));
        assert!(hosts(&["redis://10.0.0.0/8"]).allows_url("redis://10.1.2.3"), "an address in a network, any scheme");
        assert!(!hosts(&[]).allows_url("https://api.example.com"));
        assert!(hosts(&["*://*:*"]).allows_url("https://anything:1"));
    }

    #[test]
    fn sockets_are_allowed_exactly_where_the_list_says() {
        let h = hosts(&["*://127.0.0.1:6001", "tcp://10.0.0.0/8:5000..5010", "redis://192.168.1.7"]);
        assert!(h.allows_tcp("127.0.0.1:6001".parse().expect("addr")), "any scheme covers tcp");
        assert!(!h.allows_tcp("127.0.0.1:6002".parse().expect("addr")));
        assert!(!h.allows_tcp("127.0.0.2:6001".parse().expect("addr")));
        assert!(h.allows_tcp("10.200.3.4:5009".parse().expect("addr")), "a network and a port range");
        assert!(!h.allows_tcp("10.200.3.4:5010".parse().expect("addr")), "a range excludes its end");
        assert!(!h.allows_tcp("11.0.0.1:5000".parse().expect("addr")));
        assert!(!h.allows_tcp("192.168.1.7:6379".parse().expect("addr")), "redis:// is not tcp://");
        assert!(h.allows_tcp("[::ffff:127.0.0.1]:6001".parse().expect("addr")), "an IPv4-mapped address is that address");
        let v6 = hosts(&["tcp://2001:db8::/32:*", "tcp://[::1]:7000"]);
        assert!(v6.allows_tcp("[2001:db8:1::5]:443".parse().expect("addr")));
        assert!(!v6.allows_tcp("[2001:db9::5]:443".parse().expect("addr")));
        assert!(v6.allows_tcp("[::1]:7000".parse().expect("addr")));
        assert!(!hosts(&["*://*.example.com:*"]).allows_tcp("93.184.216.34:80".parse().expect("addr")), "names never match addresses");
    }

    #[test]
    fn entries_are_checked_as_spin_checks_them() {
        assert!(hosts(&["", "http://", "https://"]).0.is_empty(), "entries a variable left empty are skipped");
        for bad in ["127.0.0.1:6001", "tcp://127.0.0.1", "h2c://x:1", "http://a.*.com", "http://a.com/path", "*", "http://x:port"] {
            assert!(AllowedHosts::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
        assert_eq!(hosts(&["http://10.1.2.3/8"]).0[0].host, Hosts::Network("10.0.0.0/8".parse().expect("net")), "a network is truncated");
    }
}
