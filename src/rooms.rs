//! Rooms and direct conversations as the application sees them: room ids and titles, who may see,
//! join and read a room, creating and deleting rooms, the member list, and history pages. REST and
//! sockets both ask here, so one rule decides access everywhere: a private room does not exist for
//! anyone who is not on its member list.

use crate::clock::now_millis;
use crate::history::Page;
use crate::realtime::{parse_id, LOBBY};
use crate::state::App;
use crate::store::{direct_stream, room_stream, RoomKind, RoomRecord, StoreError};

/// Longest room title, in Unicode scalar values.
pub const MAX_TITLE_CHARS: usize = 100;
/// History page size without `limit`, and the largest allowed.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;

/// Why a room operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// A bad id, kind or title.
    #[error("{0}")]
    InvalidRoom(&'static str),
    /// A request that makes no sense for this room (members of a public room, a bad cursor).
    #[error("{0}")]
    BadRequest(&'static str),
    /// The id is taken.
    #[error("a room with this id already exists")]
    RoomExists,
    /// No such room, or private and the caller is not a member.
    #[error("no such room")]
    UnknownRoom,
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// Only the owner may do this.
    #[error("only the owner may do this")]
    NotOwner,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A room as a caller may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView {
    /// The room.
    pub room: RoomRecord,
    /// Whether the caller is on its member list.
    pub member: bool,
    /// The member list, for private rooms.
    pub members: Option<Vec<String>>,
}

/// Whether `id` matches `^[a-z0-9][a-z0-9_-]{2,31}$`.
pub fn valid_room_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (3..=32).contains(&bytes.len())
        && matches!(bytes[0], b'a'..=b'z' | b'0'..=b'9')
        && bytes[1..]
            .iter()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-'))
}

/// `lobby`: public, ownerless, always there, never stored.
pub fn lobby() -> RoomRecord {
    RoomRecord {
        id: LOBBY.to_owned(),
        kind: RoomKind::Public,
        title: String::new(),
        owner: None,
        created_at: 0,
    }
}

/// Creates a room owned by `owner`, its first member.
pub async fn create(
    app: &App,
    owner: &str,
    id: &str,
    kind: &str,
    title: Option<String>,
) -> Result<RoomRecord, RoomError> {
    if !valid_room_id(id) {
        return Err(RoomError::InvalidRoom(
            "a room id is 3 to 32 characters: a-z, 0-9, _ or -, starting with a letter or digit",
        ));
    }
    let kind = RoomKind::parse(kind).ok_or(RoomError::InvalidRoom(
        "kind must be \"public\" or \"private\"",
    ))?;
    let title = title.unwrap_or_default();
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(RoomError::InvalidRoom(
            "a room title has at most 100 characters",
        ));
    }
    if id == LOBBY {
        return Err(RoomError::RoomExists);
    }
    // Whatever the hub still holds under this id (a deletion interrupted between the store and
    // the hub) goes before the room exists: nobody subscribed to an old room of this id may ever
    // receive the new one. Until the store has it, nobody can subscribe to it.
    app.engine.delete_room(id).await;
    let room = RoomRecord {
        id: id.to_owned(),
        kind,
        title,
        owner: Some(owner.to_owned()),
        created_at: now_millis(),
    };
    match app.store.create_room(room.clone()).await {
        Ok(()) => Ok(room),
        Err(StoreError::Duplicate) => Err(RoomError::RoomExists),
        Err(err) => Err(err.into()),
    }
}

/// Every room `user` may see, with whether they are a member, sorted by id.
pub async fn list(app: &App, user: &str) -> Result<Vec<(RoomRecord, bool)>, RoomError> {
    let mut rooms = app.store.rooms_visible_to(user).await?;
    rooms.push((lobby(), false));
    rooms.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    Ok(rooms)
}

/// The room, if `user` may see it: it exists, and is public or has `user` as a member. Anything
/// else is `UnknownRoom`, the same answer whether the room is missing or hidden.
pub async fn visible(app: &App, user: &str, id: &str) -> Result<(RoomRecord, bool), RoomError> {
    if id == LOBBY {
        return Ok((lobby(), false));
    }
    if !valid_room_id(id) {
        return Err(RoomError::UnknownRoom);
    }
    let room = app
        .store
        .find_room(id)
        .await?
        .ok_or(RoomError::UnknownRoom)?;
    let member = app.store.is_member(id, user).await?;
    match (room.kind, member) {
        (RoomKind::Private, false) => Err(RoomError::UnknownRoom),
        _ => Ok((room, member)),
    }
}

/// The room with, for a private room, its member list.
pub async fn get(app: &App, user: &str, id: &str) -> Result<RoomView, RoomError> {
    let (room, member) = visible(app, user, id).await?;
    let members = match room.kind {
        RoomKind::Private => Some(app.store.room_members(id).await?),
        RoomKind::Public => None,
    };
    Ok(RoomView {
        room,
        member,
        members,
    })
}

/// Whether a room exists at all (for the server API, which sees every room).
pub async fn exists(app: &App, id: &str) -> Result<bool, RoomError> {
    if id == LOBBY {
        return Ok(true);
    }
    if !valid_room_id(id) {
        return Ok(false);
    }
    Ok(app.store.find_room(id).await?.is_some())
}

/// The registered form of a username (`Alice` for `alice`), or `UnknownUser`.
pub async fn resolve_user(app: &App, name: &str) -> Result<String, RoomError> {
    if !crate::accounts::valid_username(name) {
        return Err(RoomError::UnknownUser);
    }
    app.store
        .find_user(name)
        .await?
        .map(|u| u.username)
        .ok_or(RoomError::UnknownUser)
}

/// A private room the caller may manage: visible, and not `lobby` or public.
async fn private_room(app: &App, caller: &str, id: &str) -> Result<RoomRecord, RoomError> {
    let (room, _) = visible(app, caller, id).await?;
    if room.kind != RoomKind::Private {
        return Err(RoomError::BadRequest(
            "only private rooms have a member list to change",
        ));
    }
    Ok(room)
}

/// Puts `user` on the member list (owner only; idempotent).
pub async fn add_member(app: &App, caller: &str, id: &str, user: &str) -> Result<(), RoomError> {
    let room = private_room(app, caller, id).await?;
    if room.owner.as_deref() != Some(caller) {
        return Err(RoomError::NotOwner);
    }
    let user = resolve_user(app, user).await?;
    app.store.add_member(id, &user).await?;
    Ok(())
}

/// Takes `user` off the member list: by the owner, or by the member themselves (leaving). Their
/// sockets stop receiving the room at once.
pub async fn remove_member(app: &App, caller: &str, id: &str, user: &str) -> Result<(), RoomError> {
    let room = private_room(app, caller, id).await?;
    let user = resolve_user(app, user).await?;
    let owner = room.owner.as_deref() == Some(caller);
    if !owner && user != caller {
        return Err(RoomError::NotOwner);
    }
    if room.owner.as_deref() == Some(user.as_str()) {
        return Err(RoomError::BadRequest(
            "the owner cannot leave the room; delete it instead",
        ));
    }
    // The store and the hub together, in a task of its own: a client that drops the request
    // cannot leave the member removed from the list but still subscribed.
    let (store, engine, room_id) = (app.store.clone(), app.engine.clone(), id.to_owned());
    let removal = tokio::spawn(async move {
        let removed = store.remove_member(&room_id, &user).await;
        match &removed {
            // Not on the list: nothing to take away (and no reason to make others re-check).
            Ok(false) => {}
            // Removed, or perhaps removed (no answer in time): unsubscribing is always safe.
            Ok(true) | Err(StoreError::Unavailable(_)) => {
                engine.remove_member(&room_id, &user).await
            }
            Err(_) => {}
        }
        removed
    });
    match removal.await {
        Ok(removed) => removed.map(|_| ()).map_err(RoomError::from),
        Err(_) => Err(RoomError::Store(StoreError::Unavailable(
            "the removal task failed".into(),
        ))),
    }
}

/// Deletes a room (owner only): its members, its history, and every subscription, at once.
pub async fn delete(app: &App, caller: &str, id: &str) -> Result<(), RoomError> {
    if id == LOBBY {
        return Err(RoomError::NotOwner);
    }
    let (room, _) = visible(app, caller, id).await?;
    if room.owner.as_deref() != Some(caller) {
        return Err(RoomError::NotOwner);
    }
    // As for removals: in a task of its own, and the hub is told whatever the store answered, so
    // no subscription outlives the room (`create` also clears the id, in case).
    let (store, engine, room_id) = (app.store.clone(), app.engine.clone(), id.to_owned());
    let deletion = tokio::spawn(async move {
        let deleted = store.delete_room(&room_id).await;
        engine.delete_room(&room_id).await;
        deleted
    });
    match deletion.await {
        Ok(deleted) => deleted.map(|_| ()).map_err(RoomError::from),
        Err(_) => Err(RoomError::Store(StoreError::Unavailable(
            "the deletion task failed".into(),
        ))),
    }
}

/// Whether `user` may subscribe to room `id` (it is visible to them).
pub async fn may_subscribe(app: &App, user: &str, id: &str) -> Result<(), RoomError> {
    visible(app, user, id).await.map(|_| ())
}

/// A page size from a query: 1 to 200, 50 when absent.
pub fn page_size(limit: Option<&str>) -> Result<usize, RoomError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(RoomError::BadRequest(
                "limit must be a whole number from 1 to 200",
            )),
        },
    }
}

/// A page of a room's history, for a user who may see the room.
pub async fn room_history(
    app: &App,
    user: &str,
    id: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Page, RoomError> {
    let (room, _) = visible(app, user, id).await?;
    // Only this room's messages: a deleted room's entries the writer stored after the deletion
    // (it was behind) predate a room created again under the same id.
    page(app, &room_stream(id), before, limit, room.created_at).await
}

/// A page of the direct conversation between `user` and `other`.
pub async fn direct_history(
    app: &App,
    user: &str,
    other: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Page, RoomError> {
    let other = resolve_user(app, other).await?;
    page(app, &direct_stream(user, &other), before, limit, 0).await
}

async fn page(
    app: &App,
    stream: &str,
    before: Option<&str>,
    limit: usize,
    since: crate::clock::UnixMillis,
) -> Result<Page, RoomError> {
    let before = match before {
        None => None,
        Some(text) => {
            let id = parse_id(text).ok_or(RoomError::BadRequest(
                "before must be a message id of this conversation",
            ))?;
            if !app.history.contains(stream, id, since).await? {
                return Err(RoomError::BadRequest(
                    "before must be a message id of this conversation",
                ));
            }
            Some(id)
        }
    };
    Ok(app.history.page(stream, before, limit, since).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_follow_the_contract() {
        for good in ["abc", "lobby", "a-b_c", "0rooms", &"a".repeat(32)] {
            assert!(valid_room_id(good), "{good}");
        }
        for bad in [
            "ab",
            "-abc",
            "_abc",
            "Abc",
            "ab c",
            "abé",
            &"a".repeat(33),
            "",
        ] {
            assert!(!valid_room_id(bad), "{bad}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(None).unwrap(), 50);
        assert_eq!(page_size(Some("200")).unwrap(), 200);
        for bad in ["0", "201", "-1", "x", ""] {
            assert!(page_size(Some(bad)).is_err(), "{bad}");
        }
    }
}
