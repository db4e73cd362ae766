//! The store suite: one set of assertions, each written once, run against every backend through
//! `store_suite!`.

use std::sync::Arc;

use wsgate::clock::now_millis;
use wsgate::store::{
    HistoryEntry, RefreshOutcome, Revoked, RoomKind, RoomRecord, Rotation, SessionRecord, Store,
    StoreError, TicketOutcome, TicketRecord, UserRecord,
};

/// Defines each test once, as `async fn name(store) { … }` over `store: Arc<dyn Store>`, and runs
/// it on every backend: `memory::name` on a fresh embedded store, `mongodb::name` on a fresh
/// database of the test MongoDB server (reported, or failed under `WSGATE_REQUIRE_MONGO=1`, when
/// there is none).
macro_rules! store_suite {
    ($(async fn $name:ident($store:ident) $body:block)*) => {
        $(async fn $name($store: Arc<dyn Store>) $body)*

        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(std::sync::Arc::new(wsgate::store::MemoryStore::new())).await;
                }
            )*
        }

        mod mongodb {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(store) = crate::helpers::mongo_store().await {
                        super::$name(store).await;
                    }
                }
            )*
        }
    };
}

fn user(name: &str) -> UserRecord {
    UserRecord {
        username: name.into(),
        password_hash: "$2b$04$hash".into(),
        created_at: now_millis(),
    }
}

fn room(id: &str, kind: RoomKind, owner: &str) -> RoomRecord {
    RoomRecord {
        id: id.into(),
        kind,
        title: format!("the {id}"),
        owner: Some(owner.into()),
        created_at: now_millis(),
    }
}

fn entry(stream: &str, id: u64, ts: i64) -> HistoryEntry {
    HistoryEntry {
        stream: stream.into(),
        id,
        ts,
        frame: format!(r#"{{"type":"message","id":"{id}"}}"#),
    }
}

fn ids(entries: &[HistoryEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

fn ticket(byte: u8, username: &str, ttl_ms: i64) -> TicketRecord {
    TicketRecord {
        hash: [byte; 32],
        username: username.into(),
        expires_at: now_millis() + ttl_ms,
    }
}

async fn start_session(store: &Arc<dyn Store>, sid: &str, first: u8) {
    store
        .create_session(SessionRecord {
            sid: sid.into(),
            username: "alice".into(),
            expires_at: now_millis() + 60_000,
            generation: 0,
            current_hash: [first; 32],
            created_at: now_millis(),
        })
        .await
        .unwrap();
}

fn rotation(sid: &str, generation: u64, presented: u8, next: u8) -> Rotation {
    Rotation {
        sid: sid.into(),
        generation,
        presented: [presented; 32],
        next: [next; 32],
        next_expires_at: now_millis() + 60_000,
    }
}

store_suite! {
    async fn users_are_unique_case_insensitively(store) {
        store.ping().await.unwrap();
        store.create_user(user("Alice")).await.unwrap();
        assert!(matches!(
            store.create_user(user("alice")).await,
            Err(StoreError::Duplicate)
        ));
        let found = store.find_user("ALICE").await.unwrap().unwrap();
        assert_eq!(found.username, "Alice");
        assert_eq!(found.password_hash, "$2b$04$hash");
        assert!(store.find_user("bob").await.unwrap().is_none());
    }

    async fn tickets_are_consumed_once(store) {
        store
            .insert_ticket(ticket(1, "alice", 30_000))
            .await
            .unwrap();
        let now = now_millis();
        assert_eq!(
            store.consume_ticket(&[1; 32], now).await.unwrap(),
            TicketOutcome::Accepted {
                username: "alice".into()
            }
        );
        assert_eq!(
            store.consume_ticket(&[1; 32], now).await.unwrap(),
            TicketOutcome::Used
        );
        assert_eq!(
            store.consume_ticket(&[2; 32], now).await.unwrap(),
            TicketOutcome::Unknown
        );
    }

    async fn expiry_is_checked_by_the_operation(store) {
        // Already expired when consumed, whatever any purge or TTL monitor has done yet.
        store
            .insert_ticket(ticket(3, "alice", 1_000))
            .await
            .unwrap();
        let later = now_millis() + 5_000;
        assert_eq!(
            store.consume_ticket(&[3; 32], later).await.unwrap(),
            TicketOutcome::Expired
        );
        // An expired ticket stays expired (not used) even after a failed consume.
        assert_eq!(
            store.consume_ticket(&[3; 32], later).await.unwrap(),
            TicketOutcome::Expired
        );
        // A used ticket that then expires reports expired.
        store.insert_ticket(ticket(4, "bob", 1_000)).await.unwrap();
        assert!(matches!(
            store.consume_ticket(&[4; 32], now_millis()).await.unwrap(),
            TicketOutcome::Accepted { .. }
        ));
        assert_eq!(
            store.consume_ticket(&[4; 32], later).await.unwrap(),
            TicketOutcome::Expired
        );
    }

    async fn concurrent_consumes_yield_one_winner(store) {
        store
            .insert_ticket(ticket(5, "alice", 30_000))
            .await
            .unwrap();
        let attempts = (0..32).map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.consume_ticket(&[5; 32], now_millis()).await })
        });
        let mut accepted = 0;
        for attempt in futures_util::future::join_all(attempts).await {
            match attempt.unwrap().unwrap() {
                TicketOutcome::Accepted { .. } => accepted += 1,
                TicketOutcome::Used => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(accepted, 1);
    }

    async fn revocations_are_remembered(store) {
        let now = now_millis();
        assert!(!store.is_revoked("j1", "s1").await.unwrap());
        store
            .revoke(&Revoked::Token("j1".into()), now + 60_000, now)
            .await
            .unwrap();
        assert!(store.is_revoked("j1", "s1").await.unwrap());
        assert!(!store.is_revoked("j2", "s1").await.unwrap());
        // Revoking twice is harmless; a session revocation covers every jti of the session.
        store
            .revoke(&Revoked::Token("j1".into()), now + 60_000, now)
            .await
            .unwrap();
        store
            .revoke(&Revoked::Session("s9".into()), now + 60_000, now)
            .await
            .unwrap();
        assert!(store.is_revoked("any", "s9").await.unwrap());
        // The feed reports what was revoked after a point in time, and only that.
        let mut feed = store.revocations_since(now - 1).await.unwrap();
        feed.sort_by_key(|r| r.key());
        assert_eq!(
            feed,
            vec![Revoked::Token("j1".into()), Revoked::Session("s9".into())]
        );
        assert!(store.revocations_since(now + 1).await.unwrap().is_empty());
    }

    async fn refresh_tokens_rotate_and_reuse_is_detected(store) {
        start_session(&store, "s1", 1).await;
        let now = now_millis();
        let rotated = RefreshOutcome::Rotated {
            username: "alice".into(),
        };
        assert_eq!(
            store
                .rotate_refresh(&rotation("s1", 0, 1, 2), now)
                .await
                .unwrap(),
            rotated
        );
        // The successor works; the spent generation is reuse.
        assert_eq!(
            store
                .rotate_refresh(&rotation("s1", 1, 2, 3), now)
                .await
                .unwrap(),
            rotated
        );
        assert_eq!(
            store
                .rotate_refresh(&rotation("s1", 0, 1, 4), now)
                .await
                .unwrap(),
            RefreshOutcome::Reused {
                username: "alice".into()
            }
        );
        // Current generation with the wrong hash, a future generation, an unknown session: invalid.
        for bad in [
            rotation("s1", 2, 9, 5),
            rotation("s1", 7, 3, 5),
            rotation("nope", 0, 1, 5),
        ] {
            assert_eq!(
                store.rotate_refresh(&bad, now).await.unwrap(),
                RefreshOutcome::Invalid,
                "{bad:?}"
            );
        }
        // Expired sessions are invalid, whatever any purge has done.
        start_session(&store, "s2", 6).await;
        assert_eq!(
            store
                .rotate_refresh(&rotation("s2", 0, 6, 7), now + 120_000)
                .await
                .unwrap(),
            RefreshOutcome::Invalid
        );
    }

    async fn revoked_sessions_stop_refreshing(store) {
        start_session(&store, "s1", 1).await;
        start_session(&store, "s2", 2).await;
        let now = now_millis();
        store.revoke_session("s1", now + 60_000, now).await.unwrap();
        assert!(store.is_revoked("anything", "s1").await.unwrap());
        assert_eq!(
            store
                .rotate_refresh(&rotation("s1", 0, 1, 3), now)
                .await
                .unwrap(),
            RefreshOutcome::Invalid
        );
        let sids = store
            .revoke_user_sessions("ALICE", now + 60_000, now)
            .await
            .unwrap();
        assert_eq!(sids, vec!["s2".to_string()], "s1 was already revoked");
        assert_eq!(
            store
                .rotate_refresh(&rotation("s2", 0, 2, 4), now)
                .await
                .unwrap(),
            RefreshOutcome::Invalid
        );
        assert!(store.is_revoked("x", "s2").await.unwrap());
    }

    async fn concurrent_rotations_yield_one_winner(store) {
        start_session(&store, "s1", 1).await;
        let attempts = (0..16u8).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_refresh(&rotation("s1", 0, 1, 100 + i), now_millis())
                    .await
            })
        });
        let mut rotated = 0;
        for attempt in futures_util::future::join_all(attempts).await {
            match attempt.unwrap().unwrap() {
                RefreshOutcome::Rotated { .. } => rotated += 1,
                RefreshOutcome::Reused { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(rotated, 1);
    }

    async fn sessions_beyond_the_cap_are_revoked_oldest_first(store) {
        let now = now_millis();
        let session = |sid: &str, user: &str, age: i64, expires_in: i64| SessionRecord {
            sid: sid.into(),
            username: user.into(),
            expires_at: now + expires_in,
            generation: 0,
            current_hash: [sid.as_bytes()[1]; 32],
            created_at: now - age,
        };
        for record in [
            session("a1", "alice", 5_000, 60_000),
            session("a2", "Alice", 4_000, 60_000), // the same account
            session("a3", "alice", 3_000, 60_000),
            session("a4", "alice", 2_000, 60_000),
            session("a5", "alice", 1_000, 60_000),
            session("a6", "alice", 6_000, -1), // expired: not live, not counted
            session("b1", "bob", 9_000, 60_000),
        ] {
            store.create_session(record).await.unwrap();
        }
        store.revoke_session("a4", now + 60_000, now).await.unwrap(); // revoked: not counted
        // The spared session (a login's new one) stays whatever its age; of the others, the
        // newest one stays too.
        let mut evicted = store
            .revoke_sessions_beyond("alice", 2, "a1", now + 60_000, now)
            .await
            .unwrap();
        evicted.sort();
        assert_eq!(evicted, ["a2", "a3"], "the oldest beyond the spared one and the newest");
        for sid in ["a2", "a3"] {
            assert!(store.is_revoked("any", sid).await.unwrap(), "{sid}");
            let presented = [sid.as_bytes()[1]; 32];
            let rotate = Rotation {
                sid: sid.into(),
                generation: 0,
                presented,
                next: [9; 32],
                next_expires_at: now + 60_000,
            };
            assert_eq!(
                store.rotate_refresh(&rotate, now).await.unwrap(),
                RefreshOutcome::Invalid
            );
        }
        for sid in ["a1", "a5", "b1"] {
            assert!(!store.is_revoked("any", sid).await.unwrap(), "{sid}");
        }
        assert!(store
            .revoke_sessions_beyond("alice", 2, "a5", now + 60_000, now)
            .await
            .unwrap()
            .is_empty());
    }

    async fn a_room_is_created_once_with_its_owner_as_first_member(store) {
        store.create_room(room("den", RoomKind::Private, "alice")).await.unwrap();
        assert!(matches!(
            store.create_room(room("den", RoomKind::Public, "bob")).await,
            Err(StoreError::Duplicate)
        ));
        let found = store.find_room("den").await.unwrap().unwrap();
        assert_eq!((found.kind, found.owner.as_deref(), found.title.as_str()), (RoomKind::Private, Some("alice"), "the den"));
        assert_eq!(store.room_members("den").await.unwrap(), ["alice"]);
        assert!(store.is_member("den", "alice").await.unwrap());
        assert!(!store.is_member("den", "bob").await.unwrap());
        assert!(store.find_room("nowhere").await.unwrap().is_none());
        assert!(store.room_members("nowhere").await.unwrap().is_empty());
    }

    async fn rooms_visible_to_a_user_are_public_ones_and_private_ones_they_belong_to(store) {
        store.create_room(room("zeta", RoomKind::Public, "alice")).await.unwrap();
        store.create_room(room("alpha", RoomKind::Private, "alice")).await.unwrap();
        store.create_room(room("mid", RoomKind::Private, "carol")).await.unwrap();
        store.add_member("mid", "bob").await.unwrap();
        let seen = |rooms: Vec<(RoomRecord, bool)>| -> Vec<(String, bool)> {
            rooms.into_iter().map(|(r, m)| (r.id, m)).collect()
        };
        assert_eq!(
            seen(store.rooms_visible_to("bob").await.unwrap()),
            [("mid".to_string(), true), ("zeta".to_string(), false)]
        );
        assert_eq!(
            seen(store.rooms_visible_to("alice").await.unwrap()),
            [("alpha".to_string(), true), ("zeta".to_string(), true)]
        );
    }

    async fn membership_changes_are_idempotent(store) {
        store.create_room(room("den", RoomKind::Private, "alice")).await.unwrap();
        store.add_member("den", "bob").await.unwrap();
        store.add_member("den", "bob").await.unwrap();
        store.add_member("den", "Carol").await.unwrap();
        assert_eq!(store.room_members("den").await.unwrap(), ["Carol", "alice", "bob"]);
        assert!(store.remove_member("den", "bob").await.unwrap());
        assert!(!store.remove_member("den", "bob").await.unwrap());
        assert!(!store.is_member("den", "bob").await.unwrap());
        // A missing room has no members to change.
        store.add_member("nowhere", "bob").await.unwrap();
        assert!(!store.is_member("nowhere", "bob").await.unwrap());
        assert!(!store.remove_member("nowhere", "bob").await.unwrap());
    }

    async fn deleting_a_room_takes_its_members_and_history_with_it(store) {
        let now = now_millis();
        store.create_room(room("den", RoomKind::Private, "alice")).await.unwrap();
        store.add_member("den", "bob").await.unwrap();
        store.append_history(&[entry("room:den", 1, now), entry("room:other", 2, now)]).await.unwrap();
        assert!(store.delete_room("den").await.unwrap());
        assert!(!store.delete_room("den").await.unwrap());
        assert!(store.find_room("den").await.unwrap().is_none());
        // A room created again under the same id starts empty: nothing of the old one shows.
        store.create_room(room("den", RoomKind::Private, "carol")).await.unwrap();
        assert_eq!(store.room_members("den").await.unwrap(), ["carol"]);
        assert!(store.history("room:den", None, 10, 0).await.unwrap().is_empty());
        assert_eq!(ids(&store.history("room:other", None, 10, 0).await.unwrap()), [2]);
    }

    async fn history_pages_newest_first_and_appends_are_idempotent(store) {
        let now = now_millis();
        let batch: Vec<HistoryEntry> = (1..=6).map(|id| entry("room:a", id * 10, now)).collect();
        store.append_history(&batch[..4]).await.unwrap();
        // A retried batch that was partly written stores each entry once.
        store.append_history(&batch).await.unwrap();
        store.append_history(&[entry("room:b", 35, now)]).await.unwrap();
        assert_eq!(ids(&store.history("room:a", None, 100, 0).await.unwrap()), [60, 50, 40, 30, 20, 10]);
        assert_eq!(ids(&store.history("room:a", None, 2, 0).await.unwrap()), [60, 50]);
        assert_eq!(ids(&store.history("room:a", Some(40), 2, 0).await.unwrap()), [30, 20]);
        assert_eq!(ids(&store.history("room:a", Some(35), 10, 0).await.unwrap()), [30, 20, 10]);
        assert!(store.history("room:a", Some(10), 10, 0).await.unwrap().is_empty());
        assert!(store.history("room:none", None, 10, 0).await.unwrap().is_empty());
        let stored = &store.history("room:a", None, 1, 0).await.unwrap()[0];
        assert_eq!(stored, &batch[5], "the frame comes back byte for byte");
        assert!(store.history_contains("room:a", 30, 0).await.unwrap());
        assert!(!store.history_contains("room:a", 35, 0).await.unwrap(), "35 is room:b's");
        assert!(store.history_contains("room:b", 35, 0).await.unwrap());
    }

    async fn history_older_than_the_retention_is_never_returned(store) {
        let now = now_millis();
        store
            .append_history(&[entry("room:a", 1, now - 10_000), entry("room:a", 2, now)])
            .await
            .unwrap();
        let cutoff = now - 5_000;
        assert_eq!(ids(&store.history("room:a", None, 10, cutoff).await.unwrap()), [2]);
        assert!(!store.history_contains("room:a", 1, cutoff).await.unwrap());
        assert!(store.history_contains("room:a", 1, 0).await.unwrap());
    }
}
