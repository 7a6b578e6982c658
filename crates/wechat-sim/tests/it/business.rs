//! The business endpoints the gateway is tested against: each needs a
//! valid token (41001 / 40001 / 42001 as every use endpoint), refuses a
//! malformed request with WeChat's code, and answers in WeChat's shape — a
//! JSON `errcode` 0, a `media_id`, or raw image bytes.

use reqwest::header;
use serde_json::{Value, json};

use crate::helpers::*;

async fn post(
    wx: &Wx,
    path: &str,
    query: &[(&str, &str)],
    body: reqwest::Body,
    ty: &str,
) -> reqwest::Response {
    wx.http
        .post(wx.url(path))
        .query(query)
        .header(header::CONTENT_TYPE, ty)
        .body(body)
        .send()
        .await
        .expect("request")
}

async fn json_of(r: reqwest::Response) -> Value {
    r.json().await.expect("json reply")
}

#[tokio::test]
async fn custom_send_needs_a_token_and_a_well_formed_message() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    let send = async |q: &[(&str, &str)], body: &str| {
        json_of(
            post(
                &wx,
                "/cgi-bin/message/custom/send",
                q,
                body.to_owned().into(),
                "application/json",
            )
            .await,
        )
        .await
    };
    let ok = json!({"touser": "oUser", "msgtype": "text", "text": {"content": "hi"}}).to_string();
    assert_eq!(errcode(&send(&[], &ok).await), 41001);
    assert_eq!(
        errcode(&send(&[("access_token", "forged")], &ok).await),
        40001
    );
    let t = [("access_token", token.as_str())];
    assert_eq!(send(&t, &ok).await, json!({"errcode": 0, "errmsg": "ok"}));
    assert_eq!(errcode(&send(&t, "not json").await), 47001);
    assert_eq!(
        errcode(&send(&t, r#"{"msgtype":"text","text":{}}"#).await),
        40003
    );
    assert_eq!(
        errcode(&send(&t, r#"{"touser":"o","msgtype":"fax"}"#).await),
        40008
    );
    assert_eq!(
        errcode(&send(&t, r#"{"touser":"o","msgtype":"text"}"#).await),
        40008
    );
    assert_eq!(
        wx.sim.stats().business_ok["/cgi-bin/message/custom/send"],
        1
    );
    // A revoked token is refused like on every use endpoint.
    assert!(wx.sim.revoke(&token));
    assert_eq!(errcode(&send(&t, &ok).await), 40001);
}

#[tokio::test]
async fn media_upload_takes_a_multipart_media_part_and_records_it() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    let boundary = "b0undary";
    let form = |name: &str, data: &[u8]| {
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x.jpg\"\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        body
    };
    let ty = format!("multipart/form-data; boundary={boundary}");
    let upload = async |kind: &str, body: Vec<u8>| {
        let q = [("access_token", token.as_str()), ("type", kind)];
        json_of(post(&wx, "/cgi-bin/media/upload", &q, body.into(), &ty).await).await
    };
    let data: Vec<u8> = (0..3_000_000_u32).map(|i| (i % 251) as u8).collect();
    let v = upload("image", form("media", &data)).await;
    assert_eq!(v["type"], "image", "{v}");
    let media_id = v["media_id"].as_str().expect("media_id").to_owned();
    assert!(v["created_at"].as_u64().is_some());
    let last = wx.sim.stats().uploads.last().cloned().expect("recorded");
    assert_eq!((last.media_id, last.bytes), (media_id, data.len() as u64));
    assert_eq!(last.sha1, sha1_smol::Sha1::from(&data).digest().to_string());
    assert_eq!(errcode(&upload("fax", form("media", b"x")).await), 40004);
    assert_eq!(errcode(&upload("image", form("other", b"x")).await), 41005);
    assert_eq!(errcode(&upload("image", form("media", b"")).await), 41005);
    assert_eq!(
        errcode(&upload("image", b"no multipart".to_vec()).await),
        41005
    );
}

#[tokio::test]
async fn wxacode_answers_image_bytes_or_a_json_error() {
    let wx = start(config()).await;
    let token = wx.fetch().await;
    let t = [("access_token", token.as_str())];
    let r = post(
        &wx,
        "/wxa/getwxacodeunlimit",
        &t,
        r#"{"scene":"id=7"}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/jpeg");
    let bytes = r.bytes().await.expect("image");
    assert_eq!(
        bytes.as_ref(),
        wechat_sim::wxacode_image("id=7", 430).as_slice()
    );
    assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
    let long = json!({"scene": "x".repeat(33)}).to_string();
    let r = post(
        &wx,
        "/wxa/getwxacodeunlimit",
        &t,
        long.into(),
        "application/json",
    )
    .await;
    assert_eq!(errcode(&json_of(r).await), 40169);
    let r = post(
        &wx,
        "/wxa/getwxacodeunlimit",
        &[],
        r#"{"scene":"a"}"#.into(),
        "application/json",
    )
    .await;
    assert_eq!(errcode(&json_of(r).await), 41001);
}

#[tokio::test]
async fn code_exchanges_are_single_use_and_answer_wechats_errors() {
    let wx = start(config()).await;
    let code = wx.sim.login_code(APP, "oUser7").expect("a code");
    let wx = &wx;
    let exchange = |code: &str, secret: &str| {
        let q = vec![
            ("appid".to_owned(), APP.to_owned()),
            ("secret".to_owned(), secret.to_owned()),
            ("js_code".to_owned(), code.to_owned()),
            ("grant_type".to_owned(), "authorization_code".to_owned()),
        ];
        async move {
            let r = wx
                .http
                .get(wx.url("/sns/jscode2session"))
                .query(&q)
                .send()
                .await;
            r.expect("request").json::<Value>().await.expect("json")
        }
    };
    assert_eq!(errcode(&exchange(&code, "wrong").await), 40125);
    let v = exchange(&code, SECRET).await;
    assert_eq!(v["openid"], "oUser7", "{v}");
    assert!(v["session_key"].as_str().is_some_and(|k| !k.is_empty()));
    assert_eq!(
        errcode(&exchange(&code, SECRET).await),
        40163,
        "a code is single-use"
    );
    assert_eq!(errcode(&exchange("never-minted", SECRET).await), 40029);
    let risky = wx.sim.risky_login_code(APP, "oRisk").expect("a code");
    assert_eq!(errcode(&exchange(&risky, SECRET).await), 40226);
    let other = wx.sim.login_code(APP_B, "oB").expect("a code");
    assert_eq!(
        errcode(&exchange(&other, SECRET).await),
        40029,
        "another app's code"
    );

    // OAuth: a user token and its renewal.
    let code = wx.sim.login_code(APP, "oWeb").expect("a code");
    let (_, v) = wx
        .get(
            "/sns/oauth2/access_token",
            &[
                ("appid", APP),
                ("secret", SECRET),
                ("code", &code),
                ("grant_type", "authorization_code"),
            ],
        )
        .await;
    assert_eq!(v["openid"], "oWeb", "{v}");
    let rt = v["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    let (_, v) = wx
        .get(
            "/sns/oauth2/refresh_token",
            &[
                ("appid", APP),
                ("refresh_token", &rt),
                ("grant_type", "refresh_token"),
            ],
        )
        .await;
    assert!(v["access_token"].is_string(), "{v}");
    let (_, v) = wx
        .get(
            "/sns/oauth2/refresh_token",
            &[
                ("appid", APP),
                ("refresh_token", "forged"),
                ("grant_type", "refresh_token"),
            ],
        )
        .await;
    assert_eq!(errcode(&v), 40030);
}
