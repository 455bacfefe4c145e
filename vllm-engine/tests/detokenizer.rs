//! Incremental detokenization across split UTF-8 characters, and stop strings.

use vllm_engine::detokenizer::{Decode, OutputText};

/// A byte-level tokenizer: each token is a byte string; decoding concatenates and replaces
/// incomplete UTF-8 with U+FFFD, as byte-level BPE decoders do. Token 0 is a special token.
struct Bytes(Vec<Vec<u8>>);

impl Decode for Bytes {
    fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut b = Vec::new();
        for &id in ids {
            if id == 0 && skip_special_tokens {
                continue;
            }
            b.extend_from_slice(&self.0[id as usize]);
        }
        String::from_utf8_lossy(&b).into_owned()
    }
}

fn vocab() -> Bytes {
    let mut v: Vec<Vec<u8>> = vec![b"<s>".to_vec()];
    // 1..: "Hel", "lo", " w", "or", "ld", "!", first half of 'é', second half of 'é', "日" in 3 parts
    for t in [
        &b"Hel"[..],
        b"lo",
        b" w",
        b"or",
        b"ld",
        b"!",
        &[0xC3],
        &[0xA9],
        &[0xE6],
        &[0x97],
        &[0xA5],
        b" caf",
    ] {
        v.push(t.to_vec());
    }
    Bytes(v)
}

fn stream(out: &mut OutputText, d: &Bytes, tokens: &[u32]) -> (Vec<String>, Option<String>) {
    let mut deltas = Vec::new();
    for &t in tokens {
        let x = out.push(d, t);
        deltas.push(x.text);
        if let Some(s) = x.stopped {
            return (deltas, Some(s.stop));
        }
    }
    deltas.push(out.finish());
    (deltas, None)
}

#[test]
fn split_characters_appear_whole_and_never_as_replacement() {
    let d = vocab();
    let mut out = OutputText::new(&[0], &[], false, true);
    // " caf" + 'é' (2 tokens) + "日" (3 tokens) + "!"
    let (deltas, stop) = stream(&mut out, &d, &[12, 7, 8, 9, 10, 11, 6]);
    assert_eq!(stop, None);
    assert_eq!(deltas.concat(), " café日!");
    assert!(deltas.iter().all(|x| !x.contains('\u{FFFD}')), "{deltas:?}");
    assert_eq!(deltas[1], "", "half of é is held back");
    assert_eq!(deltas[2], "é");
    assert_eq!(
        (deltas[3].as_str(), deltas[4].as_str(), deltas[5].as_str()),
        ("", "", "日")
    );
    assert_eq!(out.text(), " café日!");
}

#[test]
fn stop_string_across_tokens_is_cut_and_never_partly_sent() {
    let d = vocab();
    let stops = vec!["world".to_string()];
    let mut out = OutputText::new(&[], &stops, false, true);
    let (deltas, stop) = stream(&mut out, &d, &[1, 2, 3, 4, 5, 6]);
    assert_eq!(stop.as_deref(), Some("world"));
    assert_eq!(deltas.concat(), "Hello ");
    assert!(
        deltas.iter().all(|x| !x.contains('w')),
        "no part of the stop string was sent: {deltas:?}"
    );
    assert_eq!(out.text(), "Hello ");
    // Tokens after the stop add nothing.
    assert_eq!(out.push(&d, 6).text, "");
}

#[test]
fn include_stop_str_keeps_it_and_finish_flushes_held_text() {
    let d = vocab();
    let stops = vec!["world".to_string()];
    let mut out = OutputText::new(&[], &stops, true, true);
    let (deltas, stop) = stream(&mut out, &d, &[1, 2, 3, 4, 5, 6]);
    assert_eq!(stop.as_deref(), Some("world"));
    assert_eq!(deltas.concat(), "Hello world");

    // No stop string appears: the held-back tail comes out at finish.
    let stops = vec!["xyz!".to_string()];
    let mut out = OutputText::new(&[], &stops, false, true);
    let (deltas, stop) = stream(&mut out, &d, &[1, 2, 6]);
    assert_eq!(stop, None);
    assert_eq!(deltas.concat(), "Hello!");
    assert_eq!(
        deltas.last().map(String::as_str),
        Some("lo!"),
        "three characters were held back"
    );
}

#[test]
fn any_of_several_stop_strings_stops_and_specials_are_skipped() {
    let d = vocab();
    let stops = vec!["ld".to_string(), "o w".to_string()];
    let mut out = OutputText::new(&[], &stops, false, true);
    let (deltas, stop) = stream(&mut out, &d, &[1, 0, 2, 3, 4, 5]);
    assert_eq!(stop.as_deref(), Some("o w"));
    assert_eq!(deltas.concat(), "Hell");
    let mut out = OutputText::new(&[], &[], false, false);
    let (deltas, _) = stream(&mut out, &d, &[0, 1]);
    assert_eq!(deltas.concat(), "<s>Hel");
}
