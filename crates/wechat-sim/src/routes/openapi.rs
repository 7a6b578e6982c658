//! WeChat's quota tools at the root: `POST /cgi-bin/openapi/quota/get`
//! (`{"cgi_path"}` with an `access_token` in the query →
//! `{"errcode":0,"errmsg":"ok","quota":{"daily_limit","used","remain"}}`)
//! and `POST /cgi-bin/clear_quota/v2` (`{"appid","appsecret"}` →
//! `{"errcode":0,"errmsg":"ok"}`). The rules are `state::openapi`'s.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use serde::{Deserialize, Serialize};

use crate::errcode::WxError;
use crate::shared::SimState;
use crate::state::ClearRequest;

use super::{Params, param, require_post, to_json, wx_error, wx_json};

pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route(
            "/cgi-bin/openapi/quota/get",
            post(quota_get).fallback(require_post),
        )
        .route(
            "/cgi-bin/clear_quota/v2",
            post(clear_quota_v2).fallback(require_post),
        )
}

#[derive(Deserialize)]
struct QuotaGetBody {
    cgi_path: Option<String>,
}

#[derive(Serialize)]
struct QuotaBody {
    daily_limit: u32,
    used: u32,
    remain: u32,
}

#[derive(Serialize)]
struct QuotaReply<'a> {
    errcode: i64,
    errmsg: &'a str,
    quota: QuotaBody,
}

async fn quota_get(State(state): State<SimState>, q: Params, body: Bytes) -> Response {
    let token = param(&q, "access_token");
    let Ok(parsed) = serde_json::from_slice::<QuotaGetBody>(&body) else {
        // The token is judged first, as on any API; a bad body is 47001.
        return match state.api_quota(token, Some("")) {
            Err(WxError::CgiPathNotFound) => wx_error(StatusCode::OK, WxError::DataFormat),
            Err(e) => wx_error(StatusCode::OK, e),
            Ok(_) => wx_error(StatusCode::OK, WxError::DataFormat),
        };
    };
    match state.api_quota(token, parsed.cgi_path.as_deref()) {
        Ok(quota) => wx_json(
            StatusCode::OK,
            to_json(&QuotaReply {
                errcode: 0,
                errmsg: "ok",
                quota: QuotaBody {
                    daily_limit: quota.daily_limit,
                    used: quota.used,
                    remain: quota.remain,
                },
            }),
        ),
        Err(e) => wx_error(StatusCode::OK, e),
    }
}

#[derive(Deserialize)]
struct ClearBody {
    appid: Option<String>,
    appsecret: Option<String>,
}

async fn clear_quota_v2(State(state): State<SimState>, body: Bytes) -> Response {
    // Only the body counts (the harsher reading: see `state::openapi`); an
    // empty or non-JSON body names no appid.
    let parsed = serde_json::from_slice::<ClearBody>(&body).unwrap_or(ClearBody {
        appid: None,
        appsecret: None,
    });
    let req = ClearRequest {
        appid: parsed.appid.as_deref(),
        appsecret: parsed.appsecret.as_deref(),
    };
    match state.clear_quota_v2(req) {
        Ok(()) => wx_json(
            StatusCode::OK,
            serde_json::json!({"errcode": 0, "errmsg": "ok"}).to_string(),
        ),
        Err(e) => wx_error(StatusCode::OK, e),
    }
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt;

    use crate::SimConfig;
    use crate::shared::SimState;

    async fn call(app: &axum::Router, req: Request<Body>) -> serde_json::Value {
        let resp = app.clone().oneshot(req).await.unwrap();
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn quota_get_and_clear_quota_v2_answer_in_wechats_shapes() {
        let state = SimState::new(SimConfig::new().app("wxA", "sA")).unwrap();
        let app = crate::router(state.clone());
        let uri = "/cgi-bin/token?grant_type=client_credential&appid=wxA&secret=sA";
        let v = call(&app, Request::get(uri).body(Body::empty()).unwrap()).await;
        let token = v["access_token"].as_str().unwrap().to_owned();
        state.external_refresh("wxA").unwrap();
        let quota_get = |token: &str| {
            Request::post(format!("/cgi-bin/openapi/quota/get?access_token={token}"))
                .body(Body::from(r#"{"cgi_path":"/cgi-bin/token"}"#))
                .unwrap()
        };
        // The first token lives on for the overlap.
        let v = call(&app, quota_get(&token)).await;
        assert_eq!(
            v,
            serde_json::json!({"errcode":0,"errmsg":"ok","quota":{"daily_limit":2000,"used":2,"remain":1998}})
        );
        let v = call(&app, quota_get("nope")).await;
        assert_eq!(v["errcode"], 40001);
        let clear = |body: &'static str| {
            Request::post("/cgi-bin/clear_quota/v2")
                .body(Body::from(body))
                .unwrap()
        };
        let v = call(&app, clear(r#"{"appid":"wxA","appsecret":"sA"}"#)).await;
        assert_eq!(v, serde_json::json!({"errcode":0,"errmsg":"ok"}));
        assert_eq!(call(&app, quota_get(&token)).await["quota"]["used"], 0);
        let v = call(&app, clear(r#"{"appid":"wxA","appsecret":"x"}"#)).await;
        assert_eq!(v["errcode"], 40125);
        assert_eq!(call(&app, clear("")).await["errcode"], 41002);
        let get = Request::get("/cgi-bin/clear_quota/v2")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&app, get).await["errcode"], 43002);
        let stats = state.stats();
        let a = stats.app("wxA").unwrap();
        assert_eq!(
            (a.quota_get_calls, a.quota_clears, a.quota_clears_refused),
            (2, 1, 1)
        );
        assert_eq!(a.clears_used_this_month, 1);
    }
}
