//! Property tests for every parser that sees client input: the ticket query, the Authorization
//! header, client frames, request bodies, X-Forwarded-For lists, Origin values and configuration
//! values. Properties: never a panic; every rejection is one of the documented errors; round trips
//! hold where there are any (tickets, refresh tokens, frames). Case counts are bounded so that
//! `cargo test` stays quick.

use std::net::IpAddr;

use http::HeaderValue;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::auth::refresh::new_session_id;
use crate::auth::{RefreshCodec, TicketCodec};
use crate::edge::TrustedProxies;
use crate::protocol::ClientFrame;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Shrinking a failure is worth a little time, not minutes.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        prop_oneof![
            Just("auth"),
            Just("message"),
            Just("refresh"),
            Just("type"),
            Just("token"),
            Just("text")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("token".to_string()),
                    Just("text".to_string()),
                    Just("refresh_token".to_string()),
                    Just("username".to_string()),
                    Just("password".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config(256))]

    // ---- the ticket query (`GET /ws?…`)

    #[test]
    fn any_query_yields_no_ticket_or_a_non_empty_one(query in ".{0,200}") {
        if let Some(ticket) = crate::http::upgrade::ticket_param(&query) {
            prop_assert!(!ticket.is_empty());
            let pair = format!("ticket={ticket}");
            prop_assert!(query.split('&').any(|p| p == pair));
        }
        // Whatever it found, verifying it never panics: garbage is `ticket_invalid`.
        let codec = TicketCodec::new(&[7; 32], None);
        if let Some(ticket) = crate::http::upgrade::ticket_param(&query) {
            prop_assert!(codec.verify(ticket).is_none());
        }
    }

    #[test]
    fn a_minted_ticket_is_found_among_other_parameters_and_verifies(
        before in prop::collection::vec("[a-z]{1,5}=[a-z0-9]{0,5}", 0..3),
        after in prop::collection::vec("[a-z]{1,5}=[a-z0-9]{0,5}", 0..3),
        expires_at in 0i64..=i64::MAX / 2,
    ) {
        let codec = TicketCodec::new(&[7; 32], None);
        let minted = codec.mint(expires_at);
        let others = |v: Vec<String>| v.into_iter().filter(|p| !p.starts_with("ticket="));
        let query: Vec<String> = others(before)
            .chain([format!("ticket={}", minted.text)])
            .chain(others(after))
            .collect();
        let query = query.join("&");
        let found = crate::http::upgrade::ticket_param(&query);
        prop_assert_eq!(found, Some(minted.text.as_str()));
        let verified = codec.verify(&minted.text).expect("a minted ticket verifies");
        prop_assert_eq!((verified.hash, verified.expires_at), (minted.hash, expires_at));
        // Another key, or any changed character, and it is refused.
        prop_assert!(TicketCodec::new(&[8; 32], None).verify(&minted.text).is_none());
    }

    #[test]
    fn a_ticket_with_one_character_changed_is_refused(at in 0usize..1000, to in "[A-Za-z0-9_-]") {
        let codec = TicketCodec::new(&[7; 32], None);
        let minted = codec.mint(1_000);
        let at = at % minted.text.len();
        let mut chars: Vec<char> = minted.text.chars().collect();
        let replacement = to.chars().next().unwrap();
        prop_assume!(chars[at] != replacement);
        chars[at] = replacement;
        let tampered: String = chars.into_iter().collect();
        prop_assert!(codec.verify(&tampered).is_none());
    }

    // ---- refresh tokens

    #[test]
    fn refresh_tokens_round_trip_and_garbage_is_refused(generation in any::<u64>(), garbage in ".{0,120}") {
        let codec = RefreshCodec::new(&[9; 32], None);
        let sid = new_session_id();
        let minted = codec.mint(&sid, generation);
        let opened = codec.open(&minted.text).expect("a minted token opens");
        prop_assert_eq!(opened.sid, sid);
        prop_assert_eq!(opened.generation, generation);
        prop_assert_eq!(opened.hash, minted.hash);
        prop_assume!(garbage != minted.text);
        prop_assert!(codec.open(&garbage).is_none());
    }

    // ---- the Authorization header

    #[test]
    fn any_authorization_header_is_a_bearer_token_or_nothing(header in ".{0,200}") {
        if let Some(token) = crate::http::bearer_token(&header) {
            prop_assert!(!token.is_empty());
            prop_assert!(header[..6].eq_ignore_ascii_case("bearer"));
            prop_assert_eq!(token, token.trim());
        }
    }

    #[test]
    fn bearer_tokens_are_found_in_any_case(scheme in "[bB][eE][aA][rR][eE][rR]", token in "[A-Za-z0-9._-]{1,300}", pad in " {0,3}") {
        let header = format!("{scheme} {pad}{token}{pad}");
        prop_assert_eq!(crate::http::bearer_token(&header), Some(token.as_str()));
        let basic = format!("Basic {token}");
        prop_assert_eq!(crate::http::bearer_token(&basic), None);
    }

    // ---- client frames

    #[test]
    fn any_bytes_as_a_client_frame_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        // A refusal is `bad_request` (an error frame, or close 4400 before auth): never a panic.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = ClientFrame::from_json(text);
        }
    }

    #[test]
    fn any_json_as_a_client_frame_parses_only_with_its_fields(value in json_value()) {
        let text = value.to_string();
        match ClientFrame::from_json(&text) {
            Ok(ClientFrame::Auth { token, .. } | ClientFrame::Refresh { token }) => {
                prop_assert_eq!(value["token"].as_str(), Some(token.as_str()));
            }
            Ok(ClientFrame::Message { text, room }) => {
                prop_assert_eq!(value["type"].as_str(), Some("message"));
                prop_assert_eq!(value["text"].as_str(), Some(text.as_str()));
                prop_assert_eq!(value["room"].as_str(), room.as_deref());
            }
            Ok(ClientFrame::Direct { to, text }) => {
                prop_assert_eq!(value["to"].as_str(), Some(to.as_str()));
                prop_assert_eq!(value["text"].as_str(), Some(text.as_str()));
            }
            Ok(
                ClientFrame::Subscribe { room, .. }
                | ClientFrame::Unsubscribe { room }
                | ClientFrame::Typing { room },
            ) => {
                prop_assert_eq!(value["room"].as_str(), Some(room.as_str()));
            }
            Err(_) => {}
        }
    }

    #[test]
    fn client_frames_round_trip(kind in 0u8..7, payload in ".{0,300}") {
        let (value, expected) = match kind {
            0 => (json!({"type": "auth", "token": payload}), ClientFrame::Auth { token: payload.clone(), since: None }),
            1 => (json!({"type": "message", "text": payload}), ClientFrame::Message { room: None, text: payload.clone() }),
            2 => (json!({"type": "message", "room": payload, "text": "t"}), ClientFrame::Message { room: Some(payload.clone()), text: "t".into() }),
            3 => (json!({"type": "subscribe", "room": "r", "since": payload}), ClientFrame::Subscribe { room: "r".into(), since: Some(payload.clone()) }),
            4 => (json!({"type": "typing", "room": payload}), ClientFrame::Typing { room: payload.clone() }),
            5 => (json!({"type": "direct", "to": payload, "text": "t"}), ClientFrame::Direct { to: payload.clone(), text: "t".into() }),
            _ => (json!({"type": "refresh", "token": payload}), ClientFrame::Refresh { token: payload.clone() }),
        };
        let parsed = ClientFrame::from_json(&value.to_string()).unwrap();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn server_frames_encode_what_they_hold(id in "[A-Za-z0-9_-]{1,20}", from in "[A-Za-z0-9_]{3,32}", text in ".{1,200}", ts in any::<i64>()) {
        let json = crate::protocol::ServerFrame::Message { room: "lobby", id: &id, from: &from, text: &text, ts }.to_json();
        let decoded: Value = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(decoded, json!({"type": "message", "room": "lobby", "id": id, "from": from, "text": text, "ts": ts}));
    }

    // ---- request bodies

    #[test]
    fn any_request_body_parses_or_is_a_bad_request(body in prop::collection::vec(any::<u8>(), 0..400), value in json_value()) {
        for bytes in [body, value.to_string().into_bytes()] {
            if let Err(err) = crate::http::body::parse_body::<crate::http::accounts::Credentials>(&bytes) {
                prop_assert_eq!(err.code(), "bad_request");
            }
            if let Err(err) = crate::http::body::parse_body::<crate::http::tokens::RefreshRequest>(&bytes) {
                prop_assert_eq!(err.code(), "bad_request");
            }
        }
    }

    #[test]
    fn bodies_are_read_whole_up_to_the_limit_and_refused_past_it(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6000), 0..8),
    ) {
        let total: usize = chunks.iter().map(Vec::len).sum();
        let expected: Vec<u8> = chunks.concat();
        let stream = futures_util::stream::iter(
            chunks.into_iter().map(|c| Ok::<_, warp::Error>(bytes::Bytes::from(c))),
        );
        let read = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(crate::http::body::read_limited(stream, crate::http::MAX_BODY_BYTES));
        if total as u64 > crate::http::MAX_BODY_BYTES {
            prop_assert_eq!(read.unwrap_err().code(), "payload_too_large");
        } else {
            prop_assert_eq!(read.unwrap().to_vec(), expected);
        }
    }

    // ---- X-Forwarded-For

    #[test]
    fn any_forwarded_for_names_the_peer_or_an_address_it_lists(
        lines in prop::collection::vec(".{0,60}", 0..4),
        trusted_peer in any::<bool>(),
    ) {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let peer: IpAddr = if trusted_peer { "10.0.0.1" } else { "192.0.2.1" }.parse().unwrap();
        let client = proxies.client(peer, lines.iter().map(String::as_str));
        if !trusted_peer {
            prop_assert_eq!(client, peer);
        }
        let listed = lines
            .iter()
            .flat_map(|l| l.split(','))
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok());
        prop_assert!(client == peer || listed.clone().any(|ip| ip == client));
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop_of_every_line(
        hops in prop::collection::vec((any::<bool>(), 1u8..250), 1..8),
        cuts in prop::collection::vec(any::<bool>(), 8),
    ) {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let addrs: Vec<String> = hops
            .iter()
            .map(|(trusted, n)| if *trusted { format!("10.0.0.{n}") } else { format!("203.0.113.{n}") })
            .collect();
        // The same list, cut into field lines anywhere.
        let mut lines = vec![String::new()];
        for (i, addr) in addrs.iter().enumerate() {
            let last = lines.last_mut().unwrap();
            if !last.is_empty() {
                last.push_str(", ");
            }
            last.push_str(addr);
            if cuts[i] {
                lines.push(String::new());
            }
        }
        lines.retain(|l| !l.is_empty());
        let peer: IpAddr = "10.0.0.254".parse().unwrap();
        let expected = addrs
            .iter()
            .rev()
            .find(|a| a.starts_with("203."))
            .or(addrs.first())
            .map(|a| a.parse::<IpAddr>().unwrap())
            .unwrap();
        prop_assert_eq!(proxies.client(peer, lines.iter().map(String::as_str)), expected);
    }

    #[test]
    fn any_proxy_list_parses_or_is_refused_with_a_reason(entries in prop::collection::vec(".{0,30}", 0..4)) {
        if let Err(reason) = TrustedProxies::parse(&entries) {
            prop_assert!(reason.contains("not an IP address") || reason.contains("prefix length"));
        }
    }

    // ---- Origin

    #[test]
    fn any_origin_header_is_allowed_only_when_listed(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let allowed = vec!["https://app.example.com".to_string()];
        if let Ok(value) = HeaderValue::from_bytes(&bytes) {
            let verdict = crate::edge::origin::origin_allowed(&allowed, Some(&value));
            let listed = value
                .to_str()
                .is_ok_and(|o| o.trim_end_matches('/').eq_ignore_ascii_case("https://app.example.com"));
            prop_assert_eq!(verdict, listed);
        }
        prop_assert!(crate::edge::origin::origin_allowed(&allowed, None));
    }

    #[test]
    fn an_allowed_origin_is_allowed_in_any_case_with_a_trailing_slash(upper in prop::collection::vec(any::<bool>(), 23), slash in any::<bool>()) {
        let allowed = vec!["https://app.example.com".to_string()];
        let mut origin: String = "https://app.example.com"
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect();
        if slash {
            origin.push('/');
        }
        let value = HeaderValue::from_str(&origin).unwrap();
        prop_assert!(crate::edge::origin::origin_allowed(&allowed, Some(&value)));
    }
}

proptest! {
    #![proptest_config(config(64))]

    // ---- configuration values

    #[test]
    fn any_config_value_is_accepted_or_refused_naming_its_variable(
        flag in prop::sample::select(CONFIG_FLAGS),
        value in prop_oneof![".{0,40}", "-?[0-9]{1,25}", Just(String::new())],
    ) {
        let arg = format!("--{flag}={value}");
        if let Err(err) = crate::config::Settings::from_args(["wsgate", arg.as_str()]) {
            let var = format!("WSGATE_{}", flag.to_ascii_uppercase().replace('-', "_"));
            prop_assert!(err.to_string().contains(&var), "{arg}: {err}");
        }
    }

    // ---- frames the server writes

    #[test]
    fn written_frames_decode_with_their_length_and_payload(len in prop_oneof![0usize..130, 65_530usize..65_540, 65_536usize..70_000], ping in any::<bool>()) {
        use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let len = if ping { len.min(125) } else { len };
        let payload = &payload[..len];
        let mut out = Vec::new();
        crate::ws::conn::encode_frame(&mut out, if ping { 0x9 } else { 0x1 }, payload);
        let mut cursor = std::io::Cursor::new(&out);
        let (header, decoded) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
        prop_assert!(header.is_final && header.mask.is_none());
        prop_assert_eq!(decoded as usize, len);
        prop_assert_eq!(&out[cursor.position() as usize..], payload);
    }
}

/// Every flag of the configuration (the variable is `WSGATE_` + the flag in upper snake case).
const CONFIG_FLAGS: &[&str] = &[
    "addr",
    "jwt-secret",
    "jwt-previous-secret",
    "jwt-ttl-secs",
    "refresh-ttl-secs",
    "max-sessions-per-user",
    "token-expiring-secs",
    "revocation-poll-ms",
    "jwt-leeway-secs",
    "ticket-ttl-secs",
    "auth-timeout-ms",
    "heartbeat-secs",
    "write-timeout-ms",
    "allowed-origins",
    "bcrypt-cost",
    "rate-register-per-min",
    "rate-login-per-min",
    "rate-refresh-per-min",
    "rate-ticket-per-min",
    "rate-upgrade-per-min",
    "rate-messages-per-sec",
    "max-frame-bytes",
    "outbound-queue",
    "max-connections",
    "mongodb-uri",
    "mongodb-db",
    "mongodb-timeout-ms",
    "redis-url",
    "node-timeout-secs",
    "trusted-proxies",
    "request-timeout-ms",
    "max-connections-per-ip",
    "max-rooms-per-socket",
    "recovery-messages",
    "recovery-secs",
    "history-days",
    "history-max-per-room",
    "history-buffer",
    "api-key",
    "metrics-addr",
    "addr-file",
    "client-dir",
    "log-format",
];

#[test]
fn every_flag_is_listed_for_the_config_property() {
    use clap::CommandFactory;
    let declared: Vec<String> = crate::config::Settings::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|l| l != "help" && l != "version")
        .collect();
    for flag in &declared {
        assert!(CONFIG_FLAGS.contains(&flag.as_str()), "{flag} is missing");
    }
}
