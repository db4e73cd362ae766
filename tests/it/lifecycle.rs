//! Session lifecycle, on both stores: JWT key rotation with the previous secret, revocations made
//! through one instance closing sockets held by another, and the per-user session cap.

use std::sync::Arc;
use std::time::Duration;

use wsgate::store::{MemoryStore, Store};

use crate::helpers::{mongo_store, spawn_app_with_store};

const OLD: &str = "old-secret-old-secret-old-secret-0001";
const NEW: &str = "new-secret-new-secret-new-secret-0002";

async fn store_for(backend: &str) -> Option<Arc<dyn Store>> {
    match backend {
        "memory" => Some(Arc::new(MemoryStore::new())),
        _ => mongo_store().await.map(|s| s as Arc<dyn Store>),
    }
}

async fn key_rotation_keeps_everyone_signed_in(backend: &str) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    let before = spawn_app_with_store(&["--jwt-secret", OLD], store.clone()).await;
    let during = spawn_app_with_store(
        &["--jwt-secret", NEW, "--jwt-previous-secret", OLD],
        store.clone(),
    )
    .await;
    let after = spawn_app_with_store(&["--jwt-secret", NEW], store.clone()).await;

    let mut user = before.gw.new_user("rotor").await.unwrap();
    // Tokens and tickets of the old key keep working on the rotated instance.
    let old_ticket = before.gw.ticket(&user.token).await.unwrap();
    let mut socket = during
        .gw
        .upgrade(&old_ticket)
        .await
        .unwrap()
        .open()
        .unwrap();
    socket.auth(&user.token).await.unwrap();
    assert_eq!(socket.recv().await.unwrap()["type"], "auth_ok");
    during.gw.ticket(&user.token).await.unwrap();

    // A refresh on the rotated instance signs with the new key, which the old instance cannot verify.
    let old_token = user.token.clone();
    during.gw.refresh_user(&mut user).await.unwrap();
    during.gw.ticket(&user.token).await.unwrap();
    after.gw.ticket(&user.token).await.unwrap();
    before
        .gw
        .post_empty("/api/ws-ticket", Some(&user.token))
        .await
        .unwrap()
        .expect_error(401, "unauthorized")
        .unwrap();
    // Once the previous secret is dropped, old tokens stop working.
    after
        .gw
        .post_empty("/api/ws-ticket", Some(&old_token))
        .await
        .unwrap()
        .expect_error(401, "unauthorized")
        .unwrap();
    // The socket authenticated with the old key refreshes in band to the new one.
    socket
        .send_json(serde_json::json!({"type": "refresh", "token": user.token}))
        .await
        .unwrap();
    assert_eq!(
        socket.recv_type("refreshed").await.unwrap()["type"],
        "refreshed"
    );
}

async fn revocation_reaches_sockets_on_other_instances(backend: &str) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    let args = ["--revocation-poll-ms", "200"];
    let a = spawn_app_with_store(&args, store.clone()).await;
    let b = spawn_app_with_store(&args, store.clone()).await;
    let alice = a.gw.new_user("alice").await.unwrap();
    let (mut on_b, _) = b.gw.connect(&alice).await.unwrap();
    let other = a.gw.relogin(&alice.name).await.unwrap();
    let (mut other_on_b, _) = b.gw.connect(&other).await.unwrap();

    // Logout through A closes the session's socket held by B.
    let out =
        a.gw.post_empty("/api/logout", Some(&alice.token))
            .await
            .unwrap();
    assert_eq!(out.status, 204);
    on_b.expect_closed_with(4401, "token_revoked", Duration::from_secs(5))
        .await
        .unwrap();
    // Logout-all through A closes the rest.
    let out =
        a.gw.post_empty("/api/logout-all", Some(&other.token))
            .await
            .unwrap();
    assert_eq!(out.status, 204);
    other_on_b
        .expect_closed_with(4401, "token_revoked", Duration::from_secs(5))
        .await
        .unwrap();
}

async fn logins_past_the_cap_revoke_the_oldest_session(backend: &str) {
    let Some(store) = store_for(backend).await else {
        return;
    };
    let server = spawn_app_with_store(&["--max-sessions-per-user", "3"], store).await;
    let gw = &server.gw;
    let first = gw.new_user("many").await.unwrap(); // session 1
    let (mut socket, _) = gw.connect(&first).await.unwrap();
    let mut later = Vec::new();
    for _ in 0..2 {
        later.push(gw.relogin(&first.name).await.unwrap()); // sessions 2 and 3
    }
    socket
        .expect_silence(Duration::from_millis(200))
        .await
        .unwrap();
    later.push(gw.relogin(&first.name).await.unwrap()); // session 4: the first must go
    socket
        .expect_closed_with(4401, "token_revoked", Duration::from_secs(5))
        .await
        .unwrap();
    gw.refresh(&first.refresh_token)
        .await
        .unwrap()
        .expect_error(401, "invalid_refresh_token")
        .unwrap();
    gw.post_empty("/api/ws-ticket", Some(&first.token))
        .await
        .unwrap()
        .expect_error(401, "unauthorized")
        .unwrap();
    for mut user in later {
        gw.refresh_user(&mut user).await.unwrap();
        gw.ticket(&user.token).await.unwrap();
    }
}

mod memory {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_rotation_keeps_everyone_signed_in() {
        super::key_rotation_keeps_everyone_signed_in("memory").await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocation_reaches_sockets_on_other_instances() {
        super::revocation_reaches_sockets_on_other_instances("memory").await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_past_the_cap_revoke_the_oldest_session() {
        super::logins_past_the_cap_revoke_the_oldest_session("memory").await;
    }
}

mod mongodb {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_rotation_keeps_everyone_signed_in() {
        super::key_rotation_keeps_everyone_signed_in("mongodb").await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn revocation_reaches_sockets_on_other_instances() {
        super::revocation_reaches_sockets_on_other_instances("mongodb").await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_past_the_cap_revoke_the_oldest_session() {
        super::logins_past_the_cap_revoke_the_oldest_session("mongodb").await;
    }
}
