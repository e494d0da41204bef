//! Hand-written JSON output for the two flat call shapes: the list endpoint's hot path.
//!
//! serde_json escapes byte by byte; almost every string callmux writes needs no escaping,
//! so a branch-free scan decides and the bytes are copied whole.

/// Appends `s` as a JSON string, quotes included.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_str_content(out, s);
    out.push(b'"');
}

/// Appends what goes between a JSON string's quotes for `s`: the caller writes the quotes,
/// usually as part of the fixed text around the value.
pub fn push_str_content(out: &mut Vec<u8>, s: &str) {
    // `fold` rather than `any`: no early exit, so the loop vectorises.
    let needs_escape = s.bytes().fold(false, |acc, b| {
        acc | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if needs_escape {
        push_escaped(out, s);
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

fn push_escaped(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends a number's digits (inside a JSON string, the caller writes the quotes).
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

pub fn push_usize(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_come_out_exactly_as_serde_json_writes_them() {
        for s in [
            "",
            "plain +1555",
            "quote \" backslash \\ slash /",
            "ctl \u{0} \u{1f} \n \r \t \u{8} \u{c}",
            "unicode é 日本 \u{2028} \u{feff} 🎉",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
    }
}
