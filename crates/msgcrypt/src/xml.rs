//! The XML shared by the envelope and the events: a well-formedness gate
//! run before serde maps a document (one root named `xml`, no DOCTYPE, tags
//! balanced, nothing after the root), and the writers for WeChat's
//! `<Tag><![CDATA[…]]></Tag>` and `<Tag>123</Tag>` fields. Field names and
//! their meaning belong to [`crate::envelope`] and [`crate::event`].

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::CryptError;

/// Ok when `doc` is one well-formed element named `xml` with no DOCTYPE
/// (so no entity declarations can reach the parser: no XXE, no billion
/// laughs), only whitespace, comments and processing instructions around it.
pub(crate) fn check_document(doc: &str) -> Result<(), CryptError> {
    let mut reader = Reader::from_str(doc);
    let mut depth = 0usize;
    let mut root_done = false;
    loop {
        let event = reader.read_event().map_err(|_| CryptError::BadXml)?;
        match event {
            Event::Start(e) => {
                if depth == 0 && (root_done || e.name().into_inner() != "xml") {
                    return Err(CryptError::BadXml);
                }
                depth += 1;
            }
            // An empty root (`<xml/>`) carries no field at all.
            Event::Empty(_) if depth == 0 => return Err(CryptError::BadXml),
            Event::End(_) => {
                depth = depth.checked_sub(1).ok_or(CryptError::BadXml)?;
                if depth == 0 {
                    root_done = true;
                }
            }
            Event::Text(t) if depth == 0 => {
                if !t.trim_ascii().is_empty() {
                    return Err(CryptError::BadXml);
                }
            }
            Event::DocType(_) => return Err(CryptError::BadXml),
            Event::CData(_) | Event::GeneralRef(_) if depth == 0 => {
                return Err(CryptError::BadXml);
            }
            Event::Eof => {
                return if root_done && depth == 0 {
                    Ok(())
                } else {
                    Err(CryptError::BadXml)
                };
            }
            Event::Empty(_)
            | Event::Text(_)
            | Event::CData(_)
            | Event::GeneralRef(_)
            | Event::Comment(_)
            | Event::Decl(_)
            | Event::PI(_) => {}
        }
    }
}

/// Appends `<tag><![CDATA[value]]></tag>`; a `]]>` inside `value` is split
/// across two CDATA sections so the text reads back unchanged.
pub(crate) fn push_cdata(out: &mut String, tag: &str, value: &str) {
    out.push('<');
    out.push_str(tag);
    out.push_str("><![CDATA[");
    out.push_str(&value.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]></");
    out.push_str(tag);
    out.push('>');
}

/// Appends `<tag>n</tag>`, as WeChat writes numbers (no CDATA).
pub(crate) fn push_number(out: &mut String, tag: &str, n: u64) {
    out.push('<');
    out.push_str(tag);
    out.push('>');
    out.push_str(&n.to_string());
    out.push_str("</");
    out.push_str(tag);
    out.push('>');
}
