//! The component push events: WeChat's documented samples, round trips,
//! refusals, and that `Debug` hides the ticket and the code.

use wxtoken_msgcrypt::event::{ComponentEvent, parse};
use wxtoken_msgcrypt::{CryptError, MsgCrypt};

fn all_variants() -> Vec<ComponentEvent> {
    vec![
        ComponentEvent::VerifyTicket {
            appid: "wx00000000000000c1".into(),
            create_time: 1_413_192_605,
            ticket: "ticket@@@x]]>y<&>".into(),
        },
        ComponentEvent::Authorized {
            appid: "wx00000000000000c1".into(),
            create_time: 1_413_192_760,
            authorizer_appid: "wx1234567890abcdef".into(),
            authorization_code: "queryauthcode@@@abc".into(),
            code_expires_at: 1_413_196_360,
        },
        ComponentEvent::UpdateAuthorized {
            appid: "wx00000000000000c1".into(),
            create_time: 1_413_192_760,
            authorizer_appid: "wx1234567890abcdef".into(),
            authorization_code: "queryauthcode@@@def".into(),
            code_expires_at: 1_413_196_360,
        },
        ComponentEvent::Unauthorized {
            appid: "wx00000000000000c1".into(),
            create_time: 1_413_192_760,
            authorizer_appid: "wx1234567890abcdef".into(),
        },
        ComponentEvent::Other {
            appid: "wx00000000000000c1".into(),
            create_time: 0,
            info_type: "notify_third_fasteregister".into(),
        },
    ]
}

#[test]
fn every_variant_round_trips_through_xml_and_through_the_cipher() {
    let c = MsgCrypt::new("tok", &"k".repeat(43), "wx00000000000000c1").unwrap();
    for e in all_variants() {
        let xml = e.to_xml();
        assert_eq!(parse(&xml).as_ref(), Ok(&e), "{xml}");
        let sealed = c.seal(&xml, "1", "n");
        let opened = c
            .open(sealed.body.as_bytes(), "1", "n", &sealed.msg_signature)
            .unwrap();
        assert_eq!(parse(&opened), Ok(e));
    }
}

#[test]
fn to_xml_is_what_wechat_sends() {
    let [ticket, authorized, ..] = &all_variants()[..] else {
        unreachable!()
    };
    assert_eq!(
        ticket.to_xml(),
        "<xml><AppId><![CDATA[wx00000000000000c1]]></AppId><CreateTime>1413192605</CreateTime>\
         <InfoType><![CDATA[component_verify_ticket]]></InfoType>\
         <ComponentVerifyTicket><![CDATA[ticket@@@x]]]]><![CDATA[>y<&>]]></ComponentVerifyTicket></xml>"
    );
    assert_eq!(
        authorized.to_xml(),
        "<xml><AppId><![CDATA[wx00000000000000c1]]></AppId><CreateTime>1413192760</CreateTime>\
         <InfoType><![CDATA[authorized]]></InfoType>\
         <AuthorizerAppid><![CDATA[wx1234567890abcdef]]></AuthorizerAppid>\
         <AuthorizationCode><![CDATA[queryauthcode@@@abc]]></AuthorizationCode>\
         <AuthorizationCodeExpiredTime>1413196360</AuthorizationCodeExpiredTime></xml>"
    );
}

/// The decrypted sample of the Open Platform doc "验证票据"
/// (Third-party_Platforms/2.0/api/Before_Develop/component_verify_ticket.html).
#[test]
fn doc_sample_verify_ticket() {
    let xml = "<xml>\n<AppId>some_appid</AppId>\n<CreateTime>1413192605</CreateTime>\n<InfoType>component_verify_ticket</InfoType>\n<ComponentVerifyTicket>some_verify_ticket</ComponentVerifyTicket>\n</xml>";
    assert_eq!(
        parse(xml),
        Ok(ComponentEvent::VerifyTicket {
            appid: "some_appid".into(),
            create_time: 1_413_192_605,
            ticket: "some_verify_ticket".into(),
        })
    );
}

/// The samples of the doc "授权变更通知推送" (Before_Develop/authorize_event.html).
/// Its authorized and updateauthorized samples end in `<xml>` instead of
/// `</xml>` and carry placeholders ("过期时间") where numbers go: as printed
/// they are refused, with the typo fixed and real values they parse.
#[test]
fn doc_samples_authorization_changes() {
    let printed = |info_type: &str, close: &str, expires: &str| {
        format!(
            "<xml>\n  <AppId>第三方平台appid</AppId>\n  <CreateTime>1413192760</CreateTime>\n  <InfoType>{info_type}</InfoType>\n  <AuthorizerAppid>公众号appid</AuthorizerAppid>\n  <AuthorizationCode>授权码</AuthorizationCode>\n  <AuthorizationCodeExpiredTime>{expires}</AuthorizationCodeExpiredTime>\n  <PreAuthCode>预授权码</PreAuthCode>\n{close}"
        )
    };
    for info_type in ["authorized", "updateauthorized"] {
        assert_eq!(
            parse(&printed(info_type, "<xml>", "过期时间")),
            Err(CryptError::BadXml)
        );
        assert_eq!(
            parse(&printed(info_type, "</xml>", "过期时间")),
            Err(CryptError::BadXml)
        );
        let fields = (
            "第三方平台appid".to_owned(),
            1_413_192_760,
            "公众号appid".to_owned(),
            "授权码".to_owned(),
            1_413_196_360,
        );
        let (appid, create_time, authorizer_appid, authorization_code, code_expires_at) = fields;
        let expected = if info_type == "authorized" {
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
        };
        assert_eq!(
            parse(&printed(info_type, "</xml>", "1413196360")),
            Ok(expected)
        );
    }
    let unauthorized = "<xml>\n  <AppId>第三方平台appid</AppId>\n  <CreateTime>1413192760</CreateTime>\n  <InfoType>unauthorized</InfoType>\n  <AuthorizerAppid>公众号appid</AuthorizerAppid>\n</xml>";
    assert_eq!(
        parse(unauthorized),
        Ok(ComponentEvent::Unauthorized {
            appid: "第三方平台appid".into(),
            create_time: 1_413_192_760,
            authorizer_appid: "公众号appid".into(),
        })
    );
}

/// As real pushes come (and WxJava's `WxOpenXmlMessageTest` writes them):
/// strings in CDATA, an XML declaration, other InfoTypes with nested fields.
#[test]
fn cdata_pushes_and_other_info_types() {
    let ticket = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<xml>\n  <AppId><![CDATA[wx00000000000000c1]]></AppId>\n  <CreateTime>1413192605</CreateTime>\n  <InfoType><![CDATA[component_verify_ticket]]></InfoType>\n  <ComponentVerifyTicket><![CDATA[ticket@@@abcdefg]]></ComponentVerifyTicket>\n</xml>";
    assert!(
        matches!(parse(ticket), Ok(ComponentEvent::VerifyTicket { ticket, .. }) if ticket == "ticket@@@abcdefg")
    );

    // Shaped like the fast-registration notice: lowercase `appid`, nested `info`.
    let fast = "<xml><AppId><![CDATA[wx00000000000000c1]]></AppId><CreateTime>1535442403</CreateTime><InfoType><![CDATA[notify_third_fasteregister]]></InfoType><appid>wx9</appid><status>0</status><auth_code>code</auth_code><msg>OK</msg><info><name><![CDATA[企业名称]]></name><code_type>1</code_type></info></xml>";
    let e = parse(fast).unwrap();
    assert_eq!(e.info_type(), "notify_third_fasteregister");
    assert_eq!(
        (e.appid(), e.create_time()),
        ("wx00000000000000c1", 1_535_442_403)
    );
    assert!(matches!(e, ComponentEvent::Other { .. }));

    // InfoType is matched ignoring ASCII case, as wechatpy lowercases it.
    let shouting = "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>Unauthorized</InfoType><AuthorizerAppid>b</AuthorizerAppid></xml>";
    let e = parse(shouting).unwrap();
    assert_eq!(e.info_type(), "unauthorized");
    assert!(
        e.to_xml()
            .contains("<InfoType><![CDATA[unauthorized]]></InfoType>")
    );
}

#[test]
fn missing_empty_repeated_or_malformed_fields_are_bad_xml() {
    let ok = "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>component_verify_ticket</InfoType><ComponentVerifyTicket>t</ComponentVerifyTicket></xml>";
    assert!(parse(ok).is_ok());
    for bad in [
        ok.replace("<AppId>a</AppId>", ""),
        ok.replace("<AppId>a</AppId>", "<AppId></AppId>"),
        ok.replace("<CreateTime>1</CreateTime>", ""),
        ok.replace("<CreateTime>1</CreateTime>", "<CreateTime>-1</CreateTime>"),
        ok.replace(
            "<CreateTime>1</CreateTime>",
            "<CreateTime>soon</CreateTime>",
        ),
        ok.replace("<InfoType>component_verify_ticket</InfoType>", ""),
        ok.replace("<ComponentVerifyTicket>t</ComponentVerifyTicket>", ""),
        ok.replace(
            "<ComponentVerifyTicket>t</ComponentVerifyTicket>",
            "<ComponentVerifyTicket/>",
        ),
        ok.replace("<AppId>a</AppId>", "<AppId>a</AppId><AppId>b</AppId>"),
        ok.replace("<xml>", "<root>").replace("</xml>", "</root>"),
        format!("<!DOCTYPE xml>{ok}"),
        format!("{ok}<xml/>"),
        ok.replace("</xml>", ""),
        ok.replace("<AppId>a</AppId>", "<AppId>a&ent;</AppId>"),
        String::new(),
    ] {
        assert_eq!(parse(&bad), Err(CryptError::BadXml), "{bad}");
    }
    let authorized = "<xml><AppId>a</AppId><CreateTime>1</CreateTime><InfoType>authorized</InfoType><AuthorizerAppid>b</AuthorizerAppid><AuthorizationCode>c</AuthorizationCode><AuthorizationCodeExpiredTime>2</AuthorizationCodeExpiredTime></xml>";
    assert!(parse(authorized).is_ok());
    for field in [
        "AuthorizerAppid",
        "AuthorizationCode",
        "AuthorizationCodeExpiredTime",
    ] {
        let start = authorized.find(&format!("<{field}>")).unwrap();
        let end = authorized.find(&format!("</{field}>")).unwrap() + field.len() + 3;
        let missing = format!("{}{}", &authorized[..start], &authorized[end..]);
        assert_eq!(parse(&missing), Err(CryptError::BadXml), "{missing}");
    }
}

#[test]
fn debug_redacts_the_ticket_and_the_code() {
    for e in all_variants() {
        let debug = format!("{e:?} {e:#?}");
        for secret in ["ticket@@@", "queryauthcode@@@"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        assert!(debug.contains("wx00000000000000c1"), "{debug}");
        if matches!(
            e,
            ComponentEvent::VerifyTicket { .. } | ComponentEvent::Authorized { .. }
        ) {
            assert!(debug.contains("<redacted>"), "{debug}");
        }
    }
}
