//! The status page's HTML (maud: escaped by default, checked when the
//! binary is built): the page itself, the login form and a refusal. No
//! inline script or style (the page's CSP forbids both); the live parts
//! are `assets/ui.js`, reading `data-*` attributes set here.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};

use super::timeline::Entry;
use super::view::{Row, RowState, View, clock, generation_label, span, stamp};

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                link rel="stylesheet" href="/ui/assets/ui.css";
            }
            (body)
        }
    }
}

/// The login form (`message`: why it is shown again).
pub fn login(message: Option<&str>) -> Markup {
    layout(
        "wxtoken: log in",
        html! {
            body.login {
                main {
                    h1 { "wxtoken status" }
                    @if let Some(m) = message { p.notice { (m) } }
                    form method="post" action="/ui/login" {
                        label for="key" { "API key with " code { "status:read" } }
                        input #key type="password" name="key" autocomplete="current-password" required autofocus;
                        button type="submit" { "Log in" }
                    }
                }
            }
        },
    )
}

/// A refusal from the API's error table, as a page.
pub fn refused(status: StatusCode, code: &str, message: &str) -> Markup {
    layout(
        "wxtoken: refused",
        html! {
            body.login {
                main {
                    h1 { "wxtoken status" }
                    table.error {
                        tr { th { "status" } td { (status.as_u16()) } }
                        tr { th { "code" } td.code { (code) } }
                        tr { th { "message" } td { (message) } }
                    }
                    p { "The status page needs a key allowed " code { "status:read" } "." }
                    form method="post" action="/ui/logout" { button type="submit" { "Log in with another key" } }
                }
            }
        },
    )
}

fn page_link(view: &View, page: usize) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("q", &view.query)
        .append_pair("page", &page.to_string())
        .finish();
    format!("/ui?{q}")
}

/// The status page.
pub fn status(view: &View, recent: &[std::sync::Arc<Entry>], viewer: &str) -> Markup {
    let since = recent.first().map_or(0, |e| e.seq);
    layout(
        "wxtoken status",
        html! {
            body data-since=(since) {
                header {
                    h1 { "wxtoken status" }
                    span #live.live { "connecting…" }
                    span.config { "config generation "
                        @match view.config_generation {
                            Some(g) => span #config-generation { (g) },
                            None => span #config-generation title="not counted by this build" { "—" },
                        }
                    }
                    form.logout method="post" action="/ui/logout" {
                        span.viewer { "key " (viewer) }
                        button type="submit" { "Log out" }
                    }
                }
                section.counts {
                    span.count { b #count-matched { (view.counts.matched) } " credentials" }
                    span.count.healthy { b { (view.counts.with_token) } " with a token" }
                    span.count.no-token { b { (view.counts.without_token) } " without" }
                    @if view.counts.unknown > 0 {
                        span.count { b { (view.counts.unknown) } " not turned yet" }
                    }
                    @if view.authorizers > 0 {
                        span.count { b { (view.authorizers) } " authorizers" }
                    }
                    span.sep { "this page:" }
                    @for (state, n) in view.page_states() {
                        span class={ "count " (state.class()) } data-state=(state.name()) { b { (n) } " " (state.name()) }
                    }
                }
                form.search method="get" action="/ui" {
                    input type="search" name="q" value=(view.query) placeholder="id prefix (shop, open1.wx…)";
                    button type="submit" { "Search" }
                }
                main {
                    table #credentials {
                        thead { tr {
                            th { "credential" } th { "kind" } th { "state" } th { "TTL" }
                            th { "generation" } th { "fingerprint" } th { "last refresh" }
                            th { "last error" } th { "quota" } th { "lock" }
                        } }
                        tbody { @for row in &view.rows { (credential_row(row)) } }
                    }
                    @if view.pages > 1 {
                        nav.pages {
                            @if view.page > 1 { a href=(page_link(view, view.page - 1)) { "‹ previous" } }
                            span { "page " (view.page) " of " (view.pages) }
                            @if view.page < view.pages { a href=(page_link(view, view.page + 1)) { "next ›" } }
                        }
                    }
                }
                aside {
                    h2 { "Refresh timeline" }
                    ol #timeline { @for e in recent { (timeline_entry(e)) } }
                }
                script src="/ui/assets/ui.js" {}
            }
        },
    )
}

fn credential_row(row: &Row) -> Markup {
    let Some(s) = &row.status else {
        return html! {
            tr data-id=(row.id) data-state=(row.state.name()) {
                td.id { (row.id) } td { (row.kind) }
                td { span class={ "badge " (row.state.class()) } { (row.state.name()) } }
                td colspan="7" { (row.unreadable.as_deref().unwrap_or("")) }
            }
        };
    };
    let lifetime = row.lifetime_ms();
    html! {
        tr data-id=(row.id) data-state=(row.state.name()) {
            td.id { (row.id) @if s.appid != row.id { br; small { (s.appid) } } }
            td { (row.kind) }
            td { span class={ "badge " (row.state.class()) } { (row.state.name()) } }
            td.ttl {
                @match (s.ttl_ms, lifetime) {
                    (Some(ttl), Some(life)) => {
                        meter min="0" max=(life) value=(ttl.min(life)) low=(life / 10) high=(life / 4) optimum=(life)
                            data-ttl-ms=(ttl) data-lifetime-ms=(life) {}
                        " " span.left { (span(ttl)) } small { " of " (span(life)) }
                    },
                    (Some(ttl), None) => { span.left { (span(ttl)) } },
                    _ => { "—" },
                }
            }
            td.generation {
                @match s.generation {
                    Some(g) => span title=(g) { (generation_label(g, s.fetched_at_ms)) },
                    None => "—",
                }
            }
            td.fp { @match &row.fingerprint { Some(f) => code title="first 8 hex digits of the SHA-256 of the value" { (f) }, None => "—" } }
            td.fetched {
                @match s.fetched_at_ms {
                    Some(at) => {
                        span title=(stamp(at)) { (clock(at)) }
                        @if let Some(by) = &s.fetched_by { " by " b { (by) } }
                        @if let Some(src) = &s.source { br; small { (src) } }
                    },
                    None => "never",
                }
                @if let Some(f) = &s.followed {
                    br; small.followed title=(f.state) { "followed from " (f.from)
                        @if let Some(lag) = f.lag_ms { " · lag " (lag) " ms" } }
                }
            }
            td.error {
                @match &s.last_error {
                    Some(e) => {
                        @if let Some(class) = e.class { span class={ "class " (class.as_str()) } { (class.as_str()) } " " }
                        code { (e.code) } " " (e.message)
                        br; small title=(stamp(e.at_ms)) { (clock(e.at_ms))
                            @if row.state != RowState::Failing { " (before the last refresh)" } }
                    },
                    None => "—",
                }
            }
            td.quota {
                meter min="0" max=(s.daily_budget.max(1)) value=(s.quota_used_today.min(s.daily_budget.max(1)))
                    low=(s.daily_budget / 2) high=(s.daily_budget * 4 / 5) optimum="0" {}
                " " (s.quota_used_today) " / " (s.daily_budget) small { " per " (s.quota_window) }
            }
            td.lock { @match &s.locked_by { Some(l) => code { (l) }, None => "—" } }
        }
    }
}

/// One timeline line; `assets/ui.js` builds the same for live entries.
fn timeline_entry(e: &Entry) -> Markup {
    html! {
        li class={ "ev " (e.event) } data-seq=(e.seq) data-id=(e.id) data-event=(e.event) data-generation=(e.generation) {
            time title=(stamp(e.at_ms)) { (clock(e.at_ms)) }
            " " b.id { (e.id) } " " span.what { (e.event) }
            @if e.generation > 0 { " " span.gen title=(e.generation) { (generation_label(e.generation, None)) } }
            @if let Some(r) = &e.replica { " by " b.replica { (r) } }
            @if let Some(d) = &e.detail { " " small { (d) } }
        }
    }
}
