//! Properties: nothing panics on any input, and what we encrypt, seal or
//! write we read back unchanged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use wxtoken_msgcrypt::MsgCrypt;
use wxtoken_msgcrypt::event::{ComponentEvent, parse};

fn crypt() -> MsgCrypt {
    MsgCrypt::new(
        "pamtest",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "wxb11529c136998cb6",
    )
    .unwrap()
}

/// Any XML-1.0-legal text (no control characters but tab and newline).
fn xml_text() -> impl Strategy<Value = String> {
    "[\t\n\u{20}-\u{D7FF}\u{E000}-\u{FFFD}\u{10000}-\u{10FFFF}]{0,40}"
}

fn event() -> impl Strategy<Value = ComponentEvent> {
    let s = || xml_text().prop_filter("required fields are non-empty", |s| !s.is_empty());
    prop_oneof![
        (s(), any::<u64>(), s()).prop_map(|(appid, create_time, ticket)| {
            ComponentEvent::VerifyTicket {
                appid,
                create_time,
                ticket,
            }
        }),
        (s(), any::<u64>(), s(), s(), any::<u64>(), any::<bool>()).prop_map(
            |(appid, create_time, authorizer_appid, authorization_code, code_expires_at, new)| {
                if new {
                    ComponentEvent::Authorized {
                        appid,
                        create_time,
                        authorizer_appid,
                        authorization_code,
                        code_expires_at,
                    }
                } else {
                    ComponentEvent::UpdateAuthorized {
                        appid,
                        create_time,
                        authorizer_appid,
                        authorization_code,
                        code_expires_at,
                    }
                }
            }
        ),
        (s(), any::<u64>(), s()).prop_map(|(appid, create_time, authorizer_appid)| {
            ComponentEvent::Unauthorized {
                appid,
                create_time,
                authorizer_appid,
            }
        }),
        (s(), any::<u64>(), "[a-z_0-9]{1,30}")
            .prop_filter("not a known InfoType", |(_, _, t)| {
                ![
                    "component_verify_ticket",
                    "authorized",
                    "updateauthorized",
                    "unauthorized",
                ]
                .contains(&t.as_str())
            })
            .prop_map(|(appid, create_time, info_type)| ComponentEvent::Other {
                appid,
                create_time,
                info_type
            }),
    ]
}

proptest! {
    #[test]
    fn decrypt_never_panics_on_any_string(s in any::<String>()) {
        let _ = crypt().decrypt(&s);
    }

    #[test]
    fn decrypt_never_panics_on_any_whole_blocks(
        raw in (0usize..8).prop_flat_map(|n| prop::collection::vec(any::<u8>(), n * 32))
    ) {
        let _ = crypt().decrypt(&STANDARD.encode(raw));
    }

    #[test]
    fn open_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..300),
        ts in any::<String>(),
        nonce in any::<String>(),
        sig in any::<String>(),
    ) {
        let _ = crypt().open(&body, &ts, &nonce, &sig);
    }

    #[test]
    fn open_never_panics_on_signed_garbage(inner in any::<String>(), raw in prop::collection::vec(any::<u8>(), 0..200)) {
        // Correctly signed, so the cipher and the frame checks run.
        let c = crypt();
        for encrypt in [inner, STANDARD.encode(&raw)] {
            let body = format!("<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>");
            let sig = c.signature("1", "2", &encrypt);
            let _ = c.open(body.as_bytes(), "1", "2", &sig);
        }
    }

    #[test]
    fn encrypt_then_decrypt_is_identity(xml in any::<String>(), random in any::<[u8; 16]>()) {
        let c = crypt();
        let encrypt = c.encrypt_with_random(&xml, random);
        prop_assert_eq!(STANDARD.decode(&encrypt).unwrap().len() % 32, 0);
        prop_assert_eq!(c.decrypt(&encrypt), Ok(xml));
    }

    #[test]
    fn seal_then_open_is_identity(xml in any::<String>(), ts in "[0-9]{0,12}", nonce in "\\PC{0,12}") {
        let c = crypt();
        let sealed = c.seal(&xml, &ts, &nonce);
        prop_assert_eq!(c.open(sealed.body.as_bytes(), &ts, &nonce, &sealed.msg_signature), Ok(xml));
    }

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = parse(&s);
    }

    #[test]
    fn parse_never_panics_on_xml_like_text(s in "(<xml>|</xml>|<AppId>|</AppId>|<InfoType>|authorized|<CreateTime>|1|<!\\[CDATA\\[|\\]\\]>|<!DOCTYPE|&amp;|&x;|<a/>|[a-z ])*") {
        let _ = parse(&s);
    }

    #[test]
    fn to_xml_then_parse_is_identity(e in event()) {
        prop_assert_eq!(parse(&e.to_xml()), Ok(e));
    }
}
