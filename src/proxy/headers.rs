//! Header hygiene: hop-by-hop removal (RFC 9110 §7.6.1) and identity header stripping.

use http::header::{HeaderName, CONNECTION, COOKIE, TE};
use http::HeaderMap;

/// Removes hop-by-hop headers: the fixed set and every header `Connection` names.
/// `TE: trailers` is kept, since it is end-to-end in meaning for gRPC-style peers.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Runs twice per proxied request: one pass over the (few) names present is
    // cheaper than a lookup for each of the many names that are usually absent.
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // The usual token is in the fixed set anyway: no parsing, no allocation.
        .filter(|token| !token.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|token| HeaderName::from_bytes(token.as_bytes()).ok())
        .collect();
    let te_trailers_only = headers
        .get_all(TE)
        .iter()
        .all(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| match name.as_str() {
            "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "trailer"
            | "transfer-encoding"
            | "upgrade" => true,
            "te" => !te_trailers_only || listed.contains(name),
            _ => listed.contains(name),
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

/// Removes every client-supplied copy of the identity headers.
///
/// Header names arrive lower-cased from the parser, so case is already folded; `_`
/// is folded to `-` as well, because CGI-style upstreams (PHP, WSGI, Rack) map
/// `X_Samlgate_Assertion` and `X-Samlgate-Assertion` to the same variable.
#[derive(Debug, Clone)]
pub struct IdentityHeaderStripper {
    names: Vec<String>,
}

impl IdentityHeaderStripper {
    /// A stripper for `names` (any case, `-` or `_`).
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: names.into_iter().map(fold).collect(),
        }
    }

    /// Removes all matching headers, every value of each.
    pub fn strip(&self, headers: &mut HeaderMap) {
        // Runs on every request: compare in place rather than folding each name
        // into a new string.
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| self.names.iter().any(|own| same_folded(own, name.as_str())))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }
}

/// Whether `name` equals the already folded `folded` once case and `_`/`-` are folded.
fn same_folded(folded: &str, name: &str) -> bool {
    folded.len() == name.len()
        && folded.bytes().zip(name.bytes()).all(|(f, n)| {
            let n = if n == b'_' {
                b'-'
            } else {
                n.to_ascii_lowercase()
            };
            f == n
        })
}

/// samlgate's own cookies (session, request state, remembered company): the panel
/// never needs them, and a session cookie is a credential it should not see.
#[derive(Debug, Clone)]
pub struct OwnCookies {
    names: Vec<String>,
}

impl OwnCookies {
    /// The cookies called `names`.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            names: names.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Rewrites the `Cookie` headers without samlgate's cookies.
    pub fn remove_from(&self, headers: &mut HeaderMap) {
        let mut kept = String::new();
        for value in headers.get_all(COOKIE) {
            // A header that is not visible ASCII cannot be split safely; it is dropped.
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(';').map(str::trim) {
                let name = pair.split_once('=').map_or(pair, |(name, _)| name).trim();
                if pair.is_empty() || self.names.iter().any(|own| own == name) {
                    continue;
                }
                if !kept.is_empty() {
                    kept.push_str("; ");
                }
                kept.push_str(pair);
            }
        }
        headers.remove(COOKIE);
        if !kept.is_empty() {
            if let Ok(value) = http::HeaderValue::try_from(kept) {
                headers.insert(COOKIE, value);
            }
        }
    }
}

fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'_' => '-',
            other => other.to_ascii_lowercase() as char,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn hop_by_hop_headers_and_connection_listed_ones_go() {
        let mut headers = map(&[
            ("connection", "close, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("te", "gzip"),
            ("accept", "text/html"),
        ]);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("accept"));
    }

    #[test]
    fn te_trailers_survives() {
        let mut headers = map(&[("te", "trailers")]);
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers["te"], "trailers");
    }

    #[test]
    fn every_header_connection_names_goes_even_te_trailers_and_close() {
        let mut headers = map(&[
            ("connection", "te, close"),
            ("te", "trailers"),
            ("close", "x"),
        ]);
        remove_hop_by_hop(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");
    }

    #[test]
    fn own_cookies_are_not_forwarded() {
        let own = OwnCookies::new(["samlgate_session", "samlgate_request"]);
        let mut headers = map(&[
            ("cookie", "a=1; samlgate_session=secret"),
            ("cookie", "samlgate_request=x;b=2"),
        ]);
        own.remove_from(&mut headers);
        assert_eq!(headers.get_all("cookie").iter().count(), 1);
        assert_eq!(headers["cookie"], "a=1; b=2");
        let mut only_own = map(&[("cookie", "samlgate_session=secret")]);
        own.remove_from(&mut only_own);
        assert!(!only_own.contains_key("cookie"));
    }

    #[test]
    fn identity_headers_go_in_every_spelling() {
        let stripper = IdentityHeaderStripper::new(["X-Samlgate-Assertion", "x-samlgate-email"]);
        let mut headers = map(&[
            ("x-samlgate-assertion", "a"),
            ("x-samlgate-assertion", "b"),
            ("x_samlgate_assertion", "c"),
            ("x-samlgate_email", "d"),
            ("x-samlgate-assertion-extra", "kept"),
        ]);
        stripper.strip(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-samlgate-assertion-extra"));
    }
}
