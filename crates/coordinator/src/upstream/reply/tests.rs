//! Every odd reply WeChat (or a proxy in front of it) can send, and what
//! each becomes: values, classified errors, withheld echoes (with proptests).

use super::*;

#[test]
fn success() {
    let g = parse_reply(200, br#"{"access_token":"ACCESS_TOKEN","expires_in":7200}"#).unwrap();
    assert_eq!(g.token.expose_secret(), "ACCESS_TOKEN");
    assert_eq!(g.expires_in, Duration::from_secs(7200));
    assert!(!format!("{g:?}").contains("ACCESS_TOKEN"));
    let g = parse_reply(
        200,
        br#"{"errcode":0,"errmsg":"ok","access_token":"T","expires_in":"7200"}"#,
    )
    .unwrap();
    assert_eq!(g.expires_in, Duration::from_secs(7200));
}

#[test]
fn wechat_errors_are_classified() {
    let e = parse_reply(
        200,
        br#"{"errcode":40125,"errmsg":"invalid appsecret rid: 1"}"#,
    )
    .err()
    .unwrap();
    assert_eq!(e.class(), ErrorClass::Fatal);
    assert_eq!(e.code(), "40125");
    let e = parse_reply(200, br#"{"errcode":-1,"errmsg":"system error"}"#)
        .err()
        .unwrap();
    assert_eq!(e.class(), ErrorClass::Retryable);
    let e = parse_reply(
        200,
        br#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#,
    )
    .err()
    .unwrap();
    assert_eq!(e.class(), ErrorClass::QuotaExhausted);
    let e = parse_reply(
        200,
        br#"{"errcode":45011,"errmsg":"api minute-quota reach limit"}"#,
    )
    .err()
    .unwrap();
    assert_eq!(e.class(), ErrorClass::RateLimited);
}

#[test]
fn odd_replies_are_retryable() {
    let cases: &[(u16, &[u8])] = &[
        (502, b"<html>Bad Gateway</html>"),
        (500, b""),
        (200, b"{\"access_token\":\"T\",\"expi"),
        (200, b"null"),
        (200, b"[]"),
        (200, br#"{"access_token":"","expires_in":7200}"#),
        (200, br#"{"access_token":"T","expires_in":0}"#),
        (200, br#"{"access_token":"T","expires_in":-5}"#),
        (200, br#"{"access_token":"T"}"#),
        (200, br#"{"access_token":42,"expires_in":7200}"#),
        (200, br#"{"access_token":"T T","expires_in":7200}"#),
        (200, br#"{"access_token":"T","expires_in":{"a":1}}"#),
        (200, b"\xff\xfe\x00garbage"),
        (404, br#"{"access_token":"T","expires_in":7200}"#),
    ];
    for (status, body) in cases {
        let e = parse_reply(*status, body)
            .err()
            .unwrap_or_else(|| panic!("{status} {body:?} parsed"));
        assert_eq!(e.class(), ErrorClass::Retryable, "{status} {body:?}: {e}");
    }
}

#[test]
fn errcode_wins_over_http_status() {
    let e = parse_reply(500, br#"{"errcode":40164,"errmsg":"invalid ip"}"#)
        .err()
        .unwrap();
    assert_eq!(e.class(), ErrorClass::Fatal);
}

#[test]
fn errmsg_is_sanitized() {
    let long = format!(
        r#"{{"errcode":40013,"errmsg":"{}\n\u0007x"}}"#,
        "a".repeat(500)
    );
    let FetchError::Wechat { errmsg, .. } = parse_reply(200, long.as_bytes()).err().unwrap() else {
        panic!()
    };
    assert_eq!(errmsg.len(), 200);
    assert!(!errmsg.contains('\n'));
}

#[test]
fn an_echoed_secret_is_withheld() {
    let body =
        br#"{"errcode":40164,"errmsg":"invalid ip, GET /cgi-bin/token?secret=S3CRET-42 rid: 1"}"#;
    let secret = SecretString::from("S3CRET-42");
    let e = withhold_echo(parse_reply(200, body).err().unwrap(), body, &secret);
    assert!(!format!("{e} {e:?}").contains("S3CRET-42"), "{e}");
    assert_eq!(e.class(), ErrorClass::Fatal);
    let other = SecretString::from("other");
    let e = withhold_echo(parse_reply(200, body).err().unwrap(), body, &other);
    assert!(e.to_string().contains("invalid ip"));
}

// ---- Property: any status and body → a plausible grant or a classified error ----

use proptest::prelude::*;

/// A JSON value as text (maybe not valid JSON) and what it means to a reader.
#[derive(Debug, Clone)]
struct Field {
    text: Vec<u8>,
    /// The value as an i64 when it is a JSON integer that fits.
    int: Option<i64>,
    /// The value as a string (invalid UTF-8 replaced) when it is a JSON string.
    string: Option<String>,
}

fn raw(text: impl Into<Vec<u8>>) -> Field {
    Field {
        text: text.into(),
        int: None,
        string: None,
    }
}

fn int_field(n: i64) -> Field {
    Field {
        int: Some(n),
        ..raw(n.to_string())
    }
}

fn string_field(s: String) -> Field {
    Field {
        text: serde_json::to_vec(&s).unwrap(),
        int: None,
        string: Some(s),
    }
}

/// A string with raw invalid UTF-8 inside the quotes.
fn broken_string(head: String, tail: String) -> Field {
    let mut text = serde_json::to_vec(&head).unwrap();
    text.pop();
    text.extend_from_slice(b"\xff\xfe\xc3");
    let tail_json = serde_json::to_vec(&tail).unwrap();
    text.extend_from_slice(&tail_json[1..]);
    let decoded = String::from_utf8_lossy(&text[1..text.len() - 1]).into_owned();
    Field {
        text,
        int: None,
        string: serde_json::from_str(&format!("\"{decoded}\"")).ok(),
    }
}

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(serde_json::Value::from),
        "\\PC{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values of the wrong type, or too large for any integer type.
fn wrong_type() -> impl Strategy<Value = Field> {
    prop_oneof![
        Just(raw("null")),
        Just(raw("true")),
        Just(raw("[]")),
        Just(raw(r#"{"access_token":"T","expires_in":7200}"#)),
        Just(raw("1e400")),
        Just(raw("-1e400")),
        Just(raw("123456789012345678901234567890")),
        ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(|n| raw(n.to_string())),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| raw(format!("{f:?}"))),
        any_json().prop_map(|v| raw(v.to_string())),
    ]
}

fn errcode() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => prop::sample::select(vec![0_i64, -1, 40001, 40013, 40125, 40164, 45009, 45011, 89501])
            .prop_map(int_field),
        1 => any::<i64>().prop_map(int_field),
        1 => "-?[0-9]{1,6}".prop_map(string_field),
        1 => wrong_type(),
    ]
}

fn token() -> impl Strategy<Value = Field> {
    prop_oneof![
        4 => "[A-Za-z0-9_-]{1,200}".prop_map(string_field),
        1 => "[ -~]{0,40}".prop_map(string_field),
        1 => "\\PC{0,40}".prop_map(string_field),
        1 => "[\\s\\x00-\\x1f]{0,3}[A-Z]{1,4}[\\s\\x00-\\x1f]{0,3}".prop_map(string_field),
        1 => (2040_usize..2060).prop_map(|n| string_field("t".repeat(n))),
        1 => ("[A-Z]{0,8}", "[A-Z]{0,8}").prop_map(|(h, t)| broken_string(h, t)),
        1 => wrong_type(),
    ]
}

fn expires_in() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => prop::sample::select(vec![7200_i64, 1, 0, -1, -7200, 2_592_000, 2_592_001])
            .prop_map(int_field),
        1 => any::<i64>().prop_map(int_field),
        1 => "[ ]{0,2}-?[0-9]{1,8}[ ]{0,2}".prop_map(string_field),
        1 => "\\PC{0,10}".prop_map(string_field),
        1 => wrong_type(),
    ]
}

fn errmsg() -> impl Strategy<Value = Field> {
    prop_oneof![
        "\\PC{0,300}".prop_map(string_field),
        ".{0,40}".prop_map(string_field),
        ("[a-z ]{0,20}", "[a-z ]{0,20}").prop_map(|(h, t)| broken_string(h, t)),
        wrong_type(),
    ]
}

#[derive(Debug, Clone)]
struct Object {
    errcode: Option<Field>,
    errmsg: Option<Field>,
    access_token: Option<Field>,
    expires_in: Option<Field>,
    extra: Vec<(String, serde_json::Value)>,
    /// Where the extra fields go among the known ones.
    order: u8,
}

impl Object {
    fn render(&self) -> Vec<u8> {
        let mut parts: Vec<Vec<u8>> = Vec::new();
        for (name, field) in [
            ("errcode", &self.errcode),
            ("errmsg", &self.errmsg),
            ("access_token", &self.access_token),
            ("expires_in", &self.expires_in),
        ] {
            if let Some(f) = field {
                let mut p = format!("\"{name}\":").into_bytes();
                p.extend_from_slice(&f.text);
                parts.push(p);
            }
        }
        let at = usize::from(self.order) % (parts.len() + 1);
        for (k, v) in &self.extra {
            parts.insert(
                at,
                format!("{}:{v}", serde_json::Value::from(k.as_str())).into_bytes(),
            );
        }
        let mut out = b"{".to_vec();
        out.extend(parts.join(&b","[..]));
        out.push(b'}');
        out
    }
}

fn object() -> impl Strategy<Value = Object> {
    (
        prop::option::of(errcode()),
        prop::option::of(errmsg()),
        prop::option::weighted(0.8, token()),
        prop::option::weighted(0.8, expires_in()),
        prop::collection::vec(
            (
                "(data|result|errmsg_|access_token_|Access_Token|nested)",
                any_json(),
            ),
            0..3,
        ),
        any::<u8>(),
    )
        .prop_map(
            |(errcode, errmsg, access_token, expires_in, extra, order)| Object {
                errcode,
                errmsg,
                access_token,
                expires_in,
                extra,
                order,
            },
        )
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![4 => Just(200_u16), 1 => 100_u16..600, 1 => any::<u16>()]
}

/// What `parse_reply` must do with a structured reply, worked out from the
/// fields' meaning rather than from the parser.
fn expected(status: u16, body: &[u8], o: &Object) -> Result<(String, i64), ErrorClass> {
    let valid_json = serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(body))
        .is_ok_and(|v| v.is_object());
    if !valid_json {
        return Err(ErrorClass::Retryable);
    }
    if let Some(code) = o.errcode.as_ref().and_then(|f| f.int).filter(|c| *c != 0) {
        return Err(classify_fetch_errcode(code));
    }
    if !(200..300).contains(&status) {
        return Err(ErrorClass::Retryable);
    }
    let token = o.access_token.as_ref().and_then(|f| f.string.clone());
    let secs = o.expires_in.as_ref().and_then(|f| {
        f.int
            .or_else(|| f.string.as_ref().and_then(|s| s.trim().parse().ok()))
    });
    match (token, secs) {
        (Some(t), Some(secs))
            if (1..=2048).contains(&t.len())
                && t.bytes().all(|b| (0x21..=0x7e).contains(&b))
                && (1..=2_592_000).contains(&secs) =>
        {
            Ok((t, secs))
        }
        _ => Err(ErrorClass::Retryable),
    }
}

/// What holds for every reply, structured or not.
fn check_invariants(status: u16, result: &Result<Grant, FetchError>) -> Result<(), TestCaseError> {
    match result {
        Ok(g) => {
            let t = g.token.expose_secret();
            prop_assert!((200..300).contains(&status), "grant on HTTP {}", status);
            prop_assert!(plausible_token(t), "implausible token {:?}", t);
            prop_assert!(
                g.expires_in > Duration::ZERO && g.expires_in <= Duration::from_secs(2_592_000)
            );
            // `Debug` must not depend on the token at all (a bare
            // `!contains(t)` fails for a one-character token like "c",
            // which any text contains).
            let other = Grant {
                token: SecretString::from(format!("{t}x")),
                expires_in: g.expires_in,
            };
            prop_assert_eq!(format!("{g:?}"), format!("{other:?}"));
        }
        Err(e) => {
            let shown = e.to_string();
            match e {
                FetchError::Wechat {
                    errcode, errmsg, ..
                } => {
                    prop_assert_ne!(*errcode, 0);
                    prop_assert_eq!(e.class(), classify_fetch_errcode(*errcode));
                    prop_assert!(errmsg.chars().count() <= 200);
                    prop_assert!(!errmsg.chars().any(char::is_control));
                }
                _ => {
                    prop_assert_eq!(e.class(), ErrorClass::Retryable, "{}", shown);
                    prop_assert!(shown.len() < 120, "{}", shown);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn structured_replies_are_judged_by_their_fields(status in status(), o in object()) {
        let body = o.render();
        let result = parse_reply(status, &body);
        check_invariants(status, &result)?;
        let shown = String::from_utf8_lossy(&body).into_owned();
        match (expected(status, &body, &o), &result) {
            (Ok((token, secs)), Ok(g)) => {
                prop_assert_eq!(g.token.expose_secret(), token.as_str(), "{}", shown);
                prop_assert_eq!(g.expires_in, Duration::from_secs(secs.unsigned_abs()));
            }
            (Err(class), Err(e)) => prop_assert_eq!(e.class(), class, "{} → {}", shown, e),
            (want, got) => prop_assert!(false, "{} {}: expected {:?}, got {:?}", status, shown, want.map(|_| "grant"), got),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(status in any::<u16>(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        check_invariants(status, &parse_reply(status, &body))?;
    }

    #[test]
    fn arbitrary_json_never_panics(status in status(), v in any_json()) {
        let body = v.to_string().into_bytes();
        check_invariants(status, &parse_reply(status, &body))?;
    }

    #[test]
    fn mangled_valid_replies_never_panic(
        status in status(),
        cut in any::<prop::sample::Index>(),
        flip in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut body = br#"{"errcode":0,"errmsg":"ok","access_token":"85_ABCdef-123_xyz","expires_in":7200}"#.to_vec();
        for (i, b) in flip {
            let i = i.index(body.len());
            body[i] = b;
        }
        body.truncate(cut.index(body.len() + 1));
        check_invariants(status, &parse_reply(status, &body))?;
    }
}

#[test]
fn huge_and_deep_replies() {
    let token = format!(
        r#"{{"access_token":"{}","expires_in":7200}}"#,
        "x".repeat(10 << 20)
    );
    assert!(parse_reply(200, token.as_bytes()).is_err());
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        parse_reply(200, deep.as_bytes()).err().unwrap().class(),
        ErrorClass::Retryable
    );
    let deep_obj = format!(
        r#"{{"errcode":40125,"x":{}{}}}"#,
        r#"{"a":"#.repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(parse_reply(200, deep_obj.as_bytes()).is_err());
    // A wrong type next to a non-zero errcode does not hide it.
    let e = parse_reply(200, br#"{"errcode":40125,"errmsg":5,"access_token":{}}"#)
        .err()
        .unwrap();
    assert_eq!(e.class(), ErrorClass::Fatal);
    let e = parse_reply(200, b"{\"errcode\":45009,\"errmsg\":\"\xb7\xc7\xb7\xa8\"}")
        .err()
        .unwrap();
    assert_eq!(e.class(), ErrorClass::QuotaExhausted);
    assert!(
        parse_reply(
            200,
            "{\"access_token\":\"T\u{00e9}\",\"expires_in\":7200}".as_bytes()
        )
        .is_err()
    );
    assert!(parse_reply(200, b"{\"access_token\":\"T\xff\",\"expires_in\":7200}").is_err());
}
