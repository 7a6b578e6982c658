//! The one table from route to the permission it needs (SPEC §10), and the
//! globs a scoped key's `ids` and `proxy:` paths are matched with.

use axum::http::Method;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// An operation (`token:read`, …) on the route's `{id}` (if any).
    Op(&'static str),
    /// A gateway call of this API path.
    Proxy(&'a str),
}

/// The table: route pattern and method → permission.
pub fn need<'a>(method: &Method, route: &str, path: Option<&'a str>) -> Need<'a> {
    let write = method == Method::POST;
    match route {
        "/v1/apps/{id}/access_token"
        | "/v1/apps/{id}/tickets/{type}"
        | "/v1/apps/{id}/access_token/watch"
        | "/v1/apps/{id}/tickets/{type}/watch"
        | "/v1/components/{id}/watch" => Need::Op("token:read"),
        "/v1/apps/{id}/access_token/invalidate" | "/v1/apps/{id}/tickets/{type}/invalidate" => {
            Need::Op("token:invalidate")
        }
        "/v1/apps/{id}/jsapi_signature" => Need::Op("ticket:sign"),
        "/v1/apps/{id}/jscode2session"
        | "/v1/apps/{id}/oauth2/access_token"
        | "/v1/apps/{id}/oauth2/refresh_token" => Need::Op("login"),
        "/v1/components/{id}/authorizers" if !write => Need::Op("status:read"),
        "/v1/components/{id}/authorizers" | "/v1/components/{id}/authorizers/import" => {
            Need::Op("platform:write")
        }
        "/wx/{id}/{*path}" => Need::Proxy(path.unwrap_or("")),
        // `/v1/apps`, `/v1/credentials` and anything added later without an
        // entry here: status reads (no id, no token).
        _ => Need::Op("status:read"),
    }
}

/// `*` matches any run of characters; everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut text) = text.strip_prefix(head) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('*').collect();
    let (last, middle) = parts.split_last().unwrap_or((&"", &[]));
    for part in middle {
        match text.find(part) {
            Some(i) => text = &text[i + part.len()..],
            None => return false,
        }
    }
    text.len() >= last.len() && text.ends_with(last)
}

/// `glob(pattern, "/" + path)` without building the string.
pub(super) fn path_glob(pattern: &str, path: &str) -> bool {
    match pattern.strip_prefix('/') {
        Some(rest) => glob(rest, path),
        // Only a pattern that matches an empty head: `*…`.
        None => pattern.starts_with('*') && glob(pattern, &format!("/{path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("*", "anything"));
        assert!(glob("shop", "shop") && !glob("shop", "shop2"));
        assert!(glob("open1.*", "open1.wx123") && !glob("open1.*", "open2.wx1"));
        assert!(glob("/cgi-bin/message/*", "/cgi-bin/message/custom/send"));
        assert!(!glob("/cgi-bin/message/*", "/cgi-bin/media/upload"));
        assert!(glob("a*b*c", "aXXbYYc") && !glob("a*b*c", "aXXcYYb"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn path_globs_match_as_globs_of_the_slashed_path() {
        let paths = [
            "cgi-bin/message/custom/send",
            "wxa/x",
            "a",
            "cgi-bin/media/upload",
        ];
        let patterns = [
            "/cgi-bin/message/*",
            "/cgi-bin/*/send",
            "*",
            "*/send",
            "/*",
            "cgi-bin/*",
            "/a",
            "a",
            "/wxa/x",
        ];
        for pattern in patterns {
            for path in paths {
                assert_eq!(
                    path_glob(pattern, path),
                    glob(pattern, &format!("/{path}")),
                    "{pattern} {path}"
                );
            }
        }
    }

    #[test]
    fn routes_map_to_permissions() {
        let get = Method::GET;
        let post = Method::POST;
        assert_eq!(
            need(&get, "/v1/apps/{id}/access_token", None),
            Need::Op("token:read")
        );
        assert_eq!(
            need(&post, "/v1/apps/{id}/tickets/{type}/invalidate", None),
            Need::Op("token:invalidate")
        );
        assert_eq!(
            need(&get, "/v1/components/{id}/authorizers", None),
            Need::Op("status:read")
        );
        assert_eq!(
            need(&post, "/v1/components/{id}/authorizers", None),
            Need::Op("platform:write")
        );
        assert_eq!(
            need(&post, "/wx/{id}/{*path}", Some("a/b")),
            Need::Proxy("a/b")
        );
        assert_eq!(need(&get, "/v1/apps", None), Need::Op("status:read"));
    }
}
