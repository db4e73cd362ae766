//! Accounts and bearer routes: registration and login, bearer checks, health, cross-site posts.

use super::*;

pub(super) async fn register_and_login_contract(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let name = crate::unique_name("reg");
    let ok = gw.register(&name, PASSWORD).await?;
    ensure!(
        ok.status == 201 && ok.body == json!({"username": name}),
        "register: {} {}",
        ok.status,
        ok.body
    );
    gw.register(&name, "another-password")
        .await?
        .expect_error(409, "username_taken")?;
    gw.register(&name.to_uppercase(), PASSWORD)
        .await?
        .expect_error(409, "username_taken")?;
    for bad in ["ab", "has space", "dash-name", &"x".repeat(33), "émile"] {
        gw.register(bad, PASSWORD)
            .await?
            .expect_error(400, "invalid_username")?;
    }
    let fresh = crate::unique_name("pw");
    for bad in ["short", &"x".repeat(73), &"é".repeat(37)] {
        gw.register(&fresh, bad)
            .await?
            .expect_error(400, "invalid_password")?;
    }
    // 72 bytes exactly is fine.
    let edge = gw.register(&fresh, &"y".repeat(72)).await?;
    ensure!(edge.status == 201, "72-byte password: {}", edge.status);
    for body in [
        &b"not json"[..],
        br#"{"username":"abc"}"#,
        br#"{"username":5,"password":"12345678"}"#,
        br#"[1,2]"#,
    ] {
        gw.request(
            reqwest::Method::POST,
            "/api/register",
            Some(body.to_vec()),
            None,
        )
        .await?
        .expect_error(400, "bad_request")?;
    }
    let huge = format!(
        r#"{{"username":"abc","password":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    gw.request(
        reqwest::Method::POST,
        "/api/register",
        Some(huge.into_bytes()),
        None,
    )
    .await?
    .expect_error(413, "payload_too_large")?;

    let login = gw.login(&name, PASSWORD).await?;
    ensure!(
        login.status == 200,
        "login: {} {}",
        login.status,
        login.body
    );
    ensure!(login.body["token_type"] == "Bearer", "{}", login.body);
    ensure!(
        login.body["expires_in"].as_u64().unwrap_or(0) > 0,
        "{}",
        login.body
    );
    ensure!(
        login.body["access_token"].as_str().is_some(),
        "{}",
        login.body
    );
    let wrong = gw.login(&name, "wrong-password").await?;
    let unknown = gw.login(&crate::unique_name("ghost"), PASSWORD).await?;
    wrong.expect_error(401, "invalid_credentials")?;
    unknown.expect_error(401, "invalid_credentials")?;
    ensure!(
        wrong.body == unknown.body,
        "unknown user and wrong password differ"
    );
    Ok(Outcome::Pass)
}

pub(super) async fn bearer_routes_need_a_valid_token(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let user = gw.new_user("bearer").await?;
    for path in ["/api/ws-ticket", "/api/logout"] {
        gw.post_empty(path, None)
            .await?
            .expect_error(401, "unauthorized")?;
        gw.post_empty(path, Some("garbage"))
            .await?
            .expect_error(401, "unauthorized")?;
        gw.post_empty(path, Some(&forged_token(&user.name)))
            .await?
            .expect_error(401, "unauthorized")?;
    }
    let reply = gw.ticket_reply(&user.token).await?;
    ensure!(
        reply.status == 201,
        "ticket: {} {}",
        reply.status,
        reply.body
    );
    let ticket = reply.body["ticket"].as_str().unwrap_or("");
    ensure!(
        ticket.len() >= 43,
        "ticket too short for 256 bits: {ticket}"
    );
    ensure!(
        ticket
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "ticket not URL-safe"
    );
    ensure!(
        reply.body["expires_in"].as_u64().unwrap_or(0) > 0,
        "{}",
        reply.body
    );
    Ok(Outcome::Pass)
}

pub(super) async fn health_reports_the_store(ctx: Arc<Ctx>) -> Result<Outcome> {
    let reply = ctx
        .gw
        .request(reqwest::Method::GET, "/api/health", None, None)
        .await?;
    ensure!(
        reply.status == 200,
        "health: {} {}",
        reply.status,
        reply.body
    );
    ensure!(reply.body["status"] == "ok", "{}", reply.body);
    let store = reply.body["store"].as_str().unwrap_or("");
    ensure!(store == "memory" || store == "mongodb", "{}", reply.body);
    Ok(Outcome::Pass)
}

/// Another site's page posting a form from a visitor's browser: every state-changing route refuses
/// it (403 `origin_forbidden`) and changes nothing; the server's own origin and no origin pass.
pub(super) async fn cross_site_posts_are_refused(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let post =
        |path: &'static str, body: Option<String>, bearer: Option<String>, origin: String| {
            let gw = gw.clone();
            async move {
                let mut headers = vec![("content-type", "text/plain")];
                if !origin.is_empty() {
                    headers.push(("origin", origin.as_str()));
                }
                gw.request_with_headers(
                    reqwest::Method::POST,
                    path,
                    body.map(String::into_bytes),
                    bearer.as_deref(),
                    &headers,
                )
                .await
            }
        };
    let name = crate::unique_name("xsite");
    let form = json!({"username": name, "password": PASSWORD}).to_string();
    for origin in ["http://evil.example", "null", "https://evil.example:443"] {
        post("/api/register", Some(form.clone()), None, origin.into())
            .await?
            .expect_error(403, "origin_forbidden")?;
    }
    // Nothing was created: the name is still free.
    let created = gw.register(&name, PASSWORD).await?;
    ensure!(created.status == 201, "register: {}", created.body);
    let user = gw.relogin(&name).await?;
    let evil = || "http://evil.example".to_string();
    let token = || Some(user.token.clone());
    post("/api/login", Some(form.clone()), None, evil())
        .await?
        .expect_error(403, "origin_forbidden")?;
    let refresh = json!({"refresh_token": user.refresh_token}).to_string();
    post("/api/token/refresh", Some(refresh), None, evil())
        .await?
        .expect_error(403, "origin_forbidden")?;
    for path in ["/api/ws-ticket", "/api/logout", "/api/logout-all"] {
        post(path, None, token(), evil())
            .await?
            .expect_error(403, "origin_forbidden")?;
    }
    // The refused logouts changed nothing; the server's own origin, and no origin, pass.
    let own = post("/api/ws-ticket", None, token(), gw.origin().to_string()).await?;
    ensure!(own.status == 201, "own origin: {} {}", own.status, own.body);
    let bare = post("/api/ws-ticket", None, token(), String::new()).await?;
    ensure!(
        bare.status == 201,
        "no origin: {} {}",
        bare.status,
        bare.body
    );
    Ok(Outcome::Pass)
}
