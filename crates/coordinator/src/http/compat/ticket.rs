//! `GET /cgi-bin/ticket/getticket?access_token=T&type=jsapi|wx_card` in
//! WeChat's shape, from the fleet's shared ticket: `T` must be the current
//! access token the fleet stores for an app (that is the caller's proof),
//! and no upstream call is made.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use wxtoken_common::{CredentialRef, TicketType};

use super::{holder_of, ticket_reply, wx};
use crate::http::HttpState;
use crate::kind::Family;

pub async fn getticket(
    State(state): State<HttpState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return wx(47001, "data format error");
    };
    let Some(token) = q.get("access_token").filter(|t| !t.is_empty()) else {
        return wx(41001, "access_token missing");
    };
    let ticket = match q.get("type").map(String::as_str) {
        Some("jsapi") => TicketType::Jsapi,
        Some("wx_card") => TicketType::WxCard,
        _ => return wx(40097, "invalid args: type must be jsapi or wx_card"),
    };
    let Some(app) = holder_of(&state, token, Family::App).await else {
        return wx(
            40001,
            "invalid credential, access_token is invalid or not latest",
        );
    };
    let cref = CredentialRef::ticket(app.cref.id.clone(), ticket);
    if state.catalog.get(&cref).is_none() {
        return wx(
            40097,
            &format!(
                "invalid args: the fleet keeps no {ticket} ticket for this app (add it to `tickets`)"
            ),
        );
    }
    match state.client.value(&cref).await {
        Ok(t) => ticket_reply(&t),
        Err(_) => wx(-1, "system error"),
    }
}
