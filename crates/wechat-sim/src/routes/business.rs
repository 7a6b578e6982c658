//! A few of WeChat's business endpoints, real-shaped, for the gateway's
//! tests (SPEC §10): they need a valid token like every use endpoint, and
//! answer as WeChat does — a JSON `errcode` 0 for a custom message, a
//! `media_id` for a multipart upload, and raw image bytes (not JSON) for a
//! mini-program code.
//!
//! Not modelled: WeChat's per-type upload size limits (image 10 MB, thumb
//! 64 KB, …); uploads up to [`UPLOAD_LIMIT`] are accepted, so a proxy can be
//! tested with tens of megabytes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::errcode::WxError;
use crate::shared::SimState;
use crate::state::Host;
use crate::stats::Upload;

use super::{Params, param, require_post, wx_error, wx_json};

/// The largest upload accepted.
pub(crate) const UPLOAD_LIMIT: usize = 64 << 20;

pub(super) const CUSTOM_SEND: &str = "/cgi-bin/message/custom/send";
pub(super) const MEDIA_UPLOAD: &str = "/cgi-bin/media/upload";
pub(super) const WXACODE: &str = "/wxa/getwxacodeunlimit";

const MESSAGE_TYPES: [&str; 8] = [
    "text",
    "image",
    "voice",
    "video",
    "music",
    "news",
    "mpnews",
    "miniprogrampage",
];
const MEDIA_TYPES: [&str; 4] = ["image", "voice", "video", "thumb"];

pub(super) fn routes() -> Router<SimState> {
    Router::new()
        .route(CUSTOM_SEND, post(custom_send).fallback(require_post))
        .route(
            MEDIA_UPLOAD,
            post(media_upload)
                .fallback(require_post)
                .layer(DefaultBodyLimit::max(UPLOAD_LIMIT)),
        )
        .route(WXACODE, post(wxacode).fallback(require_post))
}

fn ok(state: &SimState, path: &'static str, upload: Option<Upload>) {
    state.business_ok(path, upload);
}

async fn custom_send(State(state): State<SimState>, q: Params, body: Bytes) -> Response {
    if let Err(e) = state.use_token::<WxError>(param(&q, "access_token"), Host::Wechat) {
        return wx_error(StatusCode::OK, e);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return wx_error(StatusCode::OK, WxError::DataFormat);
    };
    let touser = v.get("touser").and_then(Value::as_str).unwrap_or("");
    if touser.is_empty() || touser.len() > 64 {
        return wx_error(StatusCode::OK, WxError::InvalidOpenid);
    }
    let msgtype = v.get("msgtype").and_then(Value::as_str).unwrap_or("");
    if !MESSAGE_TYPES.contains(&msgtype) || v.get(msgtype).is_none() {
        return wx_error(StatusCode::OK, WxError::InvalidMessageType);
    }
    ok(&state, CUSTOM_SEND, None);
    wx_json(
        StatusCode::OK,
        json!({"errcode": 0, "errmsg": "ok"}).to_string(),
    )
}

async fn media_upload(
    State(state): State<SimState>,
    q: Params,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    if let Err(e) = state.use_token::<WxError>(param(&q, "access_token"), Host::Wechat) {
        return wx_error(StatusCode::OK, e);
    }
    let kind = param(&q, "type").unwrap_or("");
    if !MEDIA_TYPES.contains(&kind) {
        return wx_error(StatusCode::OK, WxError::InvalidMediaType);
    }
    let Ok(mut form) = form else {
        return wx_error(StatusCode::OK, WxError::MediaDataMissing);
    };
    let mut media = None;
    loop {
        match form.next_field().await {
            Ok(Some(mut field)) if field.name() == Some("media") => {
                let mut hash = sha1_smol::Sha1::new();
                let mut bytes = 0_u64;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            hash.update(&chunk);
                            bytes += chunk.len() as u64;
                        }
                        Ok(None) => break,
                        Err(_) => return wx_error(StatusCode::OK, WxError::MediaDataMissing),
                    }
                }
                media = Some((bytes, hash.digest().to_string()));
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => return wx_error(StatusCode::OK, WxError::MediaDataMissing),
        }
    }
    let Some((bytes, sha1)) = media.filter(|(bytes, _)| *bytes > 0) else {
        return wx_error(StatusCode::OK, WxError::MediaDataMissing);
    };
    let media_id = format!("sim_{kind}_{}", &sha1[..32]);
    let created_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    ok(
        &state,
        MEDIA_UPLOAD,
        Some(Upload {
            media_id: media_id.clone(),
            bytes,
            sha1,
        }),
    );
    wx_json(
        StatusCode::OK,
        json!({"type": kind, "media_id": media_id, "created_at": created_at}).to_string(),
    )
}

/// The image WeChat would draw for `scene`: deterministic bytes (a JPEG
/// start-of-image marker, then `width` × 16 bytes derived from the scene),
/// so a test can check a proxied image byte for byte.
pub fn wxacode_image(scene: &str, width: u64) -> Vec<u8> {
    let seed = sha1_smol::Sha1::from(scene).digest().bytes();
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0];
    out.extend((0..width * 16).map(|i| seed[(i % 20) as usize] ^ (i as u8)));
    out
}

async fn wxacode(State(state): State<SimState>, q: Params, body: Bytes) -> Response {
    if let Err(e) = state.use_token::<WxError>(param(&q, "access_token"), Host::Wechat) {
        return wx_error(StatusCode::OK, e);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return wx_error(StatusCode::OK, WxError::DataFormat);
    };
    let scene = v.get("scene").and_then(Value::as_str).unwrap_or("");
    if scene.is_empty() || scene.chars().count() > 32 {
        return wx_error(StatusCode::OK, WxError::InvalidScene);
    }
    let width = v
        .get("width")
        .and_then(Value::as_u64)
        .unwrap_or(430)
        .clamp(280, 1280);
    ok(&state, WXACODE, None);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "image/jpeg")],
        wxacode_image(scene, width),
    )
        .into_response()
}
