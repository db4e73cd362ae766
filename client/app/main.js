/**
 * The demo chat's controller: signing in and out, the session, and the wiring between wsgate.js's
 * connection and the views (status-view.js, chat-view.js, sidebar-view.js) over the conversations'
 * data (conversations.js). Started by index.html as a module.
 *
 * Where the tokens live: in this module's memory only (`session.token`, `session.refreshToken`),
 * never in localStorage or sessionStorage, which every script of the origin can read (and the
 * refresh token is worth days of access). The price is that a reload signs the user out; for a demo
 * whose accounts vanish with the server anyway, that is the right trade.
 *
 * Conversations: the rooms the user is in (`lobby` from the start) and direct conversations. A
 * room's messages come from the socket; its history is loaded over REST when it is first opened,
 * and again when wsgate.js says that a reconnect could not recover it (`subscribed` with
 * `recovered: false`); otherwise the missed messages arrive on the socket by themselves. Direct
 * conversations are not recovered by the server: an open one is reloaded after every reconnect.
 */

import { connect, describeFrameError, LOBBY, MAX_MESSAGE_CHARS, Status } from '../wsgate.js';
import { AccountError, login, logout, refreshTokens, register } from './account.js';
import { ChatView } from './chat-view.js';
import { Conversation, keyOf } from './conversations.js';
import { byId, showText } from './dom.js';
import { SidebarView } from './sidebar-view.js';
import { StatusView } from './status-view.js';
import { initThemeToggle } from './theme.js';

/** Messages per history page ("Load older messages" and the first load). */
const PAGE_SIZE = 50;

const ui = {
  authView: byId('auth-view'),
  authNotice: byId('auth-notice'),
  loginForm: /** @type {HTMLFormElement} */ (byId('login-form')),
  loginError: byId('login-error'),
  registerForm: /** @type {HTMLFormElement} */ (byId('register-form')),
  registerError: byId('register-error'),
  chatView: byId('chat-view'),
  whoami: byId('whoami'),
  whoamiName: byId('whoami-name'),
  signOut: /** @type {HTMLButtonElement} */ (byId('sign-out')),
  composer: /** @type {HTMLFormElement} */ (byId('composer')),
  input: /** @type {HTMLTextAreaElement} */ (byId('composer-input')),
  counter: byId('composer-counter'),
  composerError: byId('composer-error'),
  roomLeave: /** @type {HTMLButtonElement} */ (byId('room-leave')),
  memberForm: /** @type {HTMLFormElement} */ (byId('member-form')),
  memberInput: /** @type {HTMLInputElement} */ (byId('member-user')),
  memberError: byId('member-error'),
};

/**
 * The signed-in session. `conn` is the current wsgate connection: callbacks of an older one (after
 * a sign-out) compare themselves with it and fall silent. `conversations` by key (conversations.js
 * keyOf), `current` the one shown, `roomList` the rooms of GET /api/rooms.
 *
 * @type {{token: string|null, refreshToken: string|null, user: string,
 *         conn: import('../wsgate.js').WsgateConnection|null, everOnline: boolean, lastSent: string,
 *         conversations: Map<string, Conversation>, current: Conversation|null, roomList: any[]}}
 */
const session = {
  token: null,
  refreshToken: null,
  user: '',
  conn: null,
  everOnline: false,
  lastSent: '',
  conversations: new Map(),
  current: null,
  roomList: [],
};

const chat = new ChatView({
  onDirect: (user) => openDirect(user).catch((err) => showText(ui.composerError, err.message)),
  onLoadOlder: () => loadOlder(),
});
const sidebar = new SidebarView({
  onOpenRoom: (id) => openRoom(id, { focus: true }),
  onOpenDirect: (user) => openDirect(user),
  onCreateRoom: (room) => createRoom(room),
  onRefresh: () => refreshRooms(),
});
const status = new StatusView({
  onRetry: () => session.conn?.reconnect(),
  onSignInAgain: () => endSession(status.problem)?.close(),
});

// ---- signing in, registering, signing out ----

/** Field-specific codes put the focus where the fix is. */
const FIELD_OF_CODE = { invalid_username: 'username', username_taken: 'username', invalid_password: 'password' };

/**
 * Runs a form's request: busy state while it runs, the error sentence (and focus) when it fails.
 *
 * @param {HTMLFormElement} form
 * @param {HTMLElement} errorNode
 * @param {(username: string, password: string) => Promise<void>} action
 */
async function submitAccountForm(form, errorNode, action) {
  const { username, password } = /** @type {any} */ (form.elements);
  for (const field of [username, password]) field.removeAttribute('aria-invalid');
  const missing = [username, password].find((field) => field.value === '');
  if (missing) {
    showText(errorNode, `Enter a ${missing.name}.`);
    missing.setAttribute('aria-invalid', 'true');
    missing.focus();
    return;
  }
  showText(errorNode, '');
  showText(ui.authNotice, '');
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  form.setAttribute('aria-busy', 'true');
  try {
    await action(username.value.trim(), password.value);
    form.reset();
  } catch (err) {
    const message = err instanceof AccountError ? err.message : `Something went wrong: ${err.message}`;
    showText(errorNode, message);
    const field = form.elements.namedItem(FIELD_OF_CODE[err.code] ?? '');
    if (field) {
      field.setAttribute('aria-invalid', 'true');
      field.focus();
    }
  } finally {
    button.disabled = false;
    form.removeAttribute('aria-busy');
  }
}

ui.loginForm.addEventListener('submit', (event) => {
  event.preventDefault();
  submitAccountForm(ui.loginForm, ui.loginError, async (username, password) => {
    startSession(await login(username, password), username);
  });
});

ui.registerForm.addEventListener('submit', (event) => {
  event.preventDefault();
  submitAccountForm(ui.registerForm, ui.registerError, async (username, password) => {
    await register(username, password);
    // A new account is signed in at once: nobody registers to then type it all again.
    startSession(await login(username, password), username);
  });
});

ui.signOut.addEventListener('click', () => signOut());

/**
 * Shows the chat and opens the wsgate connection with the session's tokens.
 *
 * @param {import('./account.js').Tokens} tokens
 * @param {string} user
 */
function startSession(tokens, user) {
  session.token = tokens.accessToken;
  session.refreshToken = tokens.refreshToken;
  session.user = user;
  session.everOnline = false;
  session.lastSent = '';
  for (const conversation of session.conversations.values()) conversation.dispose();
  session.conversations = new Map();
  session.roomList = [];
  chat.reset(user);
  chat.setPresenceStale(false);
  sidebar.reset();
  ui.input.value = '';
  updateCounter();
  showText(ui.composerError, '');
  ui.whoamiName.textContent = user;
  ui.whoami.hidden = false;
  ui.signOut.hidden = false;
  ui.authView.hidden = true;
  ui.chatView.hidden = false;

  const conn = connect({
    getAccessToken: async ({ refresh }) => {
      if (!session.token || conn !== session.conn) throw new Error('signed out');
      if (refresh) await refreshSession();
      return session.token;
    },
    onStatus: (s) => conn === session.conn && onStatus(s),
    onMessage: (frame) => conn === session.conn && onFrame(frame),
    onError: (err) => console.warn(err.message),
  });
  session.conn = conn;
  open(conversation('room', LOBBY));
  ui.input.focus();
}

/**
 * Replaces the session's tokens with a new pair (wsgate.js asks when the socket's token is about to
 * expire). Throws if there is no refresh token or the server refuses it: the socket then lives until
 * its token expires, and the page says the session has ended.
 */
async function refreshSession() {
  if (!session.refreshToken) throw new Error('no refresh token');
  const spent = session.refreshToken;
  const tokens = await refreshTokens(spent);
  // Signed out (or in again) meanwhile: these tokens belong to a session that is over.
  if (session.refreshToken !== spent) throw new Error('signed out');
  session.token = tokens.accessToken;
  session.refreshToken = tokens.refreshToken;
}

/**
 * Signs out: ends the session on the server (POST /api/logout, which also makes the server close
 * the session's sockets, so others see `left`), then closes the connection here.
 */
async function signOut() {
  const { token, refreshToken } = session;
  const conn = endSession('');
  let notice = 'You have signed out.';
  if (token) {
    try {
      await logout(token).catch(async (err) => {
        // An access token that expired meanwhile cannot sign out; a fresh one of the session can.
        if (!(err instanceof AccountError && err.status === 401 && refreshToken)) throw err;
        await logout((await refreshTokens(refreshToken)).accessToken);
      });
    } catch (err) {
      notice = `You have signed out of this page, but the server could not be told: ${err.message} Your sign-in stays valid until it expires.`;
    }
  }
  conn?.close();
  showText(ui.authNotice, notice);
}

/**
 * Forgets the session and shows the sign-in forms, with `notice` above them if any. Returns the
 * session's connection, now detached from the page, for the caller to close when it sees fit.
 *
 * @param {string} notice
 * @returns {import('../wsgate.js').WsgateConnection|null}
 */
function endSession(notice) {
  const { conn } = session;
  for (const conversation of session.conversations.values()) conversation.dispose();
  Object.assign(session, { token: null, refreshToken: null, user: '', conn: null, current: null });
  status.show('signed_out');
  ui.whoami.hidden = true;
  ui.signOut.hidden = true;
  ui.chatView.hidden = true;
  ui.authView.hidden = false;
  showText(ui.authNotice, notice);
  byId('login-username').focus();
  return conn;
}

// ---- the connection ----

/** @param {import('../wsgate.js').ConnectionStatus} s */
function onStatus(s) {
  if (s.state === Status.CLOSED) return;
  status.show(s.state, s);
  // Before the first auth_ok the list is simply empty; after a drop it is a memory, and says so.
  chat.setPresenceStale(s.state !== Status.ONLINE && session.everOnline);
  if (s.state === Status.ONLINE) {
    session.user = s.user;
    chat.setMe(s.user);
    ui.whoamiName.textContent = s.user;
  } else if (s.state === Status.OFFLINE && (s.cause?.code === 4401 || s.cause?.code === 401)) {
    // The session is over (expired, revoked or invalid): its tokens are of no further use.
    session.token = null;
    session.refreshToken = null;
  }
}

function onFrame(frame) {
  switch (frame.type) {
    case 'auth_ok': {
      // After a reconnection the snapshot replaces the list: presence is not replayed.
      const lobby = conversation('room', LOBBY);
      lobby.setPresence(frame.users ?? []);
      if (!session.everOnline) {
        loadLatest(lobby);
      } else {
        // wsgate.js recovered the lobby with the auth frame: the missed messages follow, or, when
        // that could not be done, the history says what happened.
        recovered(lobby, frame.recovered === true);
        // Direct messages are not recovered by the server: reload the conversations on screen.
        for (const each of session.conversations.values()) if (each.kind === 'direct' && each.loaded) loadLatest(each);
      }
      session.everOnline = true;
      refreshRooms();
      renderUsers();
      break;
    }
    case 'subscribed':
      onSubscribed(frame);
      break;
    case 'unsubscribed':
      onUnsubscribed(frame);
      break;
    case 'message':
    case 'event':
      if (typeof frame.room === 'string' || frame.type === 'message') addMessage(conversation('room', frame.room ?? LOBBY), frame);
      break;
    case 'direct': {
      const partner = chat.isMe(frame.from) ? frame.to : frame.from;
      addMessage(conversation('direct', partner), frame);
      break;
    }
    case 'joined':
    case 'left':
      onPresence(frame);
      break;
    case 'typing':
      onTyping(frame);
      break;
    case 'error':
      onErrorFrame(frame);
      break;
    default:
      break; // token_expiring, refreshed: wsgate.js handles them (through getAccessToken)
  }
}

/** The server's reply to a subscribe: the room's presence; and its history, unless recovered. */
function onSubscribed(frame) {
  const room = session.conversations.get(keyOf('room', frame.room));
  if (!room) return;
  room.setPresence(frame.users ?? []);
  if (room === session.current) renderUsers();
  if (frame.recovered === undefined) loadLatest(room); // a first subscription: its history
  else recovered(room, frame.recovered);
}

/** After a reconnect: the missed messages follow on the socket, in order; or the history is reloaded. */
function recovered(room, replayed) {
  if (replayed) {
    notice(room, 'Back online.');
    return;
  }
  loadLatest(room).then((loaded) => {
    if (loaded) notice(room, 'Back online. The latest messages were reloaded.');
  });
}

function onUnsubscribed(frame) {
  const room = session.conversations.get(keyOf('room', frame.room));
  if (!room || frame.reason === 'requested') return;
  notice(room, frame.reason === 'deleted' ? 'This room was deleted.' : 'You are no longer a member of this room.');
  room.presence.clear();
  if (room === session.current) renderUsers();
  refreshRooms();
}

/** `joined` and `left` of a room (v1's lobby presence has no `room`). */
function onPresence(frame) {
  const room = session.conversations.get(keyOf('room', frame.room ?? LOBBY));
  if (!room) return;
  const key = frame.user.toLowerCase();
  if (frame.type === 'joined') {
    const known = room.presence.has(key);
    room.presence.set(key, frame.user);
    if (!known) notice(room, `${frame.user} joined.`);
  } else {
    const name = room.presence.get(key);
    if (!room.presence.delete(key)) return;
    notice(room, `${name} left.`);
    if (room.stopTyping(frame.user) && room === session.current) renderTyping();
  }
  if (room === session.current) renderUsers();
}

function onTyping(frame) {
  const room = session.conversations.get(keyOf('room', frame.room));
  if (!room || chat.isMe(frame.user)) return;
  room.typingFrom(frame.user, () => room === session.current && renderTyping());
  if (room === session.current) renderTyping();
}

function onErrorFrame(frame) {
  if ((frame.code === 'unknown_room' || frame.code === 'too_many_rooms') && typeof frame.room === 'string') {
    // A subscribe that was refused (wsgate.js has forgotten the room already).
    const room = session.conversations.get(keyOf('room', frame.room));
    sidebar.setRoomsError(`#${frame.room}: ${describeFrameError(frame.code)}`);
    if (room) {
      room.dispose();
      session.conversations.delete(room.key);
      if (room === session.current) open(conversation('room', LOBBY));
      renderSidebar();
    }
    return;
  }
  showText(ui.composerError, describeFrameError(frame.code));
  // The refused text was cleared from the box when it was sent: give it back.
  if (frame.code !== 'bad_request' && ui.input.value === '' && session.lastSent) {
    ui.input.value = session.lastSent;
    updateCounter();
  }
}

// ---- conversations ----

/** The conversation of a room or a user, created on first use. */
function conversation(kind, id) {
  const key = keyOf(kind, id);
  let found = session.conversations.get(key);
  if (!found) {
    found = new Conversation(kind, id);
    found.info = kind === 'room' ? session.roomList.find((room) => room.id === id) ?? null : null;
    session.conversations.set(key, found);
    if (kind === 'direct') renderSidebar();
  }
  return found;
}

/** A message (or event) for a conversation: shown once, whatever path it came by. */
function addMessage(target, frame) {
  const entry = target.add(frame);
  if (!entry) return;
  if (typeof frame.from === 'string' && target.stopTyping(frame.from) && target === session.current) renderTyping();
  const dropped = target.trim();
  if (target === session.current) {
    chat.append(entry);
    if (dropped) {
      chat.trim(target.entries.length);
      chat.setOlder(target);
    }
  } else if (!chat.isMe(frame.from ?? '')) {
    target.unread += 1;
    renderSidebar();
  }
}

function notice(target, text) {
  const entry = target.notice(text);
  target.trim();
  if (target === session.current) {
    chat.append(entry);
    chat.trim(target.entries.length);
  }
}

/** Shows a conversation. */
function open(target, { focus = false } = {}) {
  session.current = target;
  target.unread = 0;
  chat.show(target, subtitleOf(target));
  renderHead();
  renderUsers();
  renderTyping();
  renderSidebar();
  showText(ui.composerError, '');
  ui.input.placeholder = target.kind === 'room' ? `Message # ${target.id}` : `Message ${target.id}`;
  if (focus) ui.input.focus();
}

/** Opens a room; enters it first if the connection is not in it yet (its history follows the reply). */
function openRoom(id, options) {
  const conn = session.conn;
  if (!conn) return;
  const target = conversation('room', id);
  if (!conn.rooms.includes(id)) conn.subscribe(id);
  open(target, options);
  if (target.info?.kind === 'private') loadRoomInfo(target);
}

/** Opens the conversation with `user`; a first one is checked (unknown users are refused) and loaded. */
async function openDirect(user) {
  const existing = session.conversations.get(keyOf('direct', user));
  if (existing) {
    open(existing, { focus: true });
    if (!existing.loaded) loadLatest(existing);
    return;
  }
  const conn = session.conn;
  if (!conn) return;
  const page = await conn.directHistory(user, { limit: PAGE_SIZE }); // throws unknown_user's sentence
  if (conn !== session.conn) return;
  // The server's spelling of the name, when it shows.
  const frame = page.messages.find((m) => typeof m.from === 'string');
  const spelled = frame ? (chat.isMe(frame.from) ? frame.to : frame.from) : user;
  const target = conversation('direct', spelled);
  target.replaceWith(page, 0);
  target.loaded = true;
  open(target, { focus: true });
}

/**
 * Loads the newest history page of a conversation into it, keeping what arrived meanwhile.
 * Resolves to whether it did (false: failed, or overtaken by a newer load).
 */
async function loadLatest(target) {
  const conn = session.conn;
  if (!conn) return false;
  const load = ++target.loads;
  const since = target.seq;
  let page;
  try {
    page =
      target.kind === 'room'
        ? await conn.history(target.id, { limit: PAGE_SIZE })
        : await conn.directHistory(target.id, { limit: PAGE_SIZE });
  } catch (err) {
    if (conn === session.conn && load === target.loads) notice(target, `The history could not be loaded: ${err.message}`);
    return false;
  }
  if (conn !== session.conn || load !== target.loads) return false;
  target.replaceWith(page, since);
  target.loaded = true;
  if (target === session.current) chat.renderEntries(target);
  return true;
}

/** "Load older messages": the page before the oldest message shown. */
async function loadOlder() {
  const target = session.current;
  const conn = session.conn;
  const before = target?.oldestId();
  if (!target || !conn || !before || target.loadingOlder) return;
  target.loadingOlder = true;
  chat.setOlder(target);
  try {
    const page =
      target.kind === 'room'
        ? await conn.history(target.id, { before, limit: PAGE_SIZE })
        : await conn.directHistory(target.id, { before, limit: PAGE_SIZE });
    if (conn !== session.conn) return;
    const added = target.prependPage(page);
    target.loadingOlder = false;
    if (target === session.current) chat.prepend(added, target);
  } catch (err) {
    target.loadingOlder = false;
    if (conn === session.conn) notice(target, `Older messages could not be loaded: ${err.message}`);
    if (target === session.current) chat.setOlder(target);
  }
}

// ---- rooms over REST ----

/** GET /api/rooms: the rooms this user can see. */
async function refreshRooms() {
  const conn = session.conn;
  if (!conn) return;
  try {
    const data = await conn.request('GET', 'api/rooms');
    if (conn !== session.conn) return;
    session.roomList = Array.isArray(data?.rooms) ? data.rooms : [];
    sidebar.setRoomsError('');
  } catch (err) {
    if (conn === session.conn) sidebar.setRoomsError(`The rooms could not be loaded: ${err.message}`);
    return;
  }
  for (const room of session.roomList) {
    const known = session.conversations.get(keyOf('room', room.id));
    if (known) known.info = { ...known.info, ...room };
  }
  renderSidebar();
  sidebar.loaded();
  if (session.current?.kind === 'room') {
    chat.sub.textContent = subtitleOf(session.current);
    renderHead();
  }
}

/** POST /api/rooms, then into it (the creator is its owner and first member). */
async function createRoom({ id, title, kind }) {
  const conn = session.conn;
  if (!conn) return;
  const room = await conn.request('POST', 'api/rooms', { id, kind, title });
  if (conn !== session.conn) return;
  session.roomList = [...session.roomList.filter((r) => r.id !== room.id), { ...room, member: true }].sort((a, b) =>
    a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
  );
  openRoom(room.id, { focus: true });
  conversation('room', room.id).info = { ...room, member: true };
  renderHead();
  chat.sub.textContent = subtitleOf(session.current);
  refreshRooms();
}

/** GET /api/rooms/{id}: a private room's members, for its heading. */
async function loadRoomInfo(target) {
  const conn = session.conn;
  try {
    const room = await conn.request('GET', `api/rooms/${encodeURIComponent(target.id)}`);
    if (conn !== session.conn) return;
    target.info = { ...target.info, ...room };
    if (target === session.current) {
      chat.sub.textContent = subtitleOf(target);
      renderHead();
    }
  } catch {
    // The heading simply lacks the member list.
  }
}

ui.memberForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const target = session.current;
  const conn = session.conn;
  const user = ui.memberInput.value.trim();
  if (!target || target.kind !== 'room' || !conn) return;
  if (!user) {
    showText(ui.memberError, 'Enter the username of the person to add.');
    ui.memberInput.focus();
    return;
  }
  showText(ui.memberError, '');
  const button = ui.memberForm.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    await conn.request('PUT', `api/rooms/${encodeURIComponent(target.id)}/members/${encodeURIComponent(user)}`);
    ui.memberForm.reset();
    notice(target, `${user} is now a member of this room.`);
    loadRoomInfo(target);
  } catch (err) {
    showText(ui.memberError, err.message);
    ui.memberInput.focus();
  } finally {
    button.disabled = false;
  }
});

ui.roomLeave.addEventListener('click', () => {
  const target = session.current;
  if (!target || target.kind !== 'room' || target.id === LOBBY) return;
  session.conn?.unsubscribe(target.id);
  target.dispose();
  session.conversations.delete(target.key);
  open(conversation('room', LOBBY), { focus: true });
});

// ---- rendering what the views share ----

/** The line under a conversation's heading. */
function subtitleOf(target) {
  if (target.kind === 'direct') return `Direct messages with ${target.id}`;
  if (target.id === LOBBY) return 'Everyone who is signed in';
  const info = target.info;
  if (!info) return '';
  const parts = [info.kind === 'private' ? 'Private room' : 'Public room'];
  if (info.title) parts.unshift(info.title);
  if (info.owner) parts.push(`owner ${info.owner}`);
  if (Array.isArray(info.members)) parts.push(`members: ${info.members.join(', ')}`);
  return parts.join(' · ');
}

/** The heading's actions: "Leave room" (not lobby), "Add member" (a private room's owner). */
function renderHead() {
  const target = session.current;
  const room = target?.kind === 'room' && target.id !== LOBBY;
  ui.roomLeave.hidden = !room;
  const owner = room && target.info?.kind === 'private' && typeof target.info.owner === 'string' && chat.isMe(target.info.owner);
  ui.memberForm.hidden = !owner;
  if (!owner) showText(ui.memberError, '');
}

/** The users pane: the open room's presence, or (lobby, direct messages) who is online. */
function renderUsers() {
  const target = session.current;
  if (target?.kind === 'room' && target.id !== LOBBY) {
    chat.setUsers([...target.presence.values()], `In # ${target.id}`);
  } else {
    chat.setUsers([...conversation('room', LOBBY).presence.values()], 'Online');
  }
}

function renderTyping() {
  chat.setTyping(session.current?.kind === 'room' ? session.current.typers() : []);
}

function renderSidebar() {
  const conn = session.conn;
  if (!conn) return;
  const currentKey = session.current?.key ?? '';
  const joined = new Set(conn.rooms);
  const listed = new Map(session.roomList.map((room) => [room.id, room]));
  if (!listed.has(LOBBY)) listed.set(LOBBY, { id: LOBBY, kind: 'public', title: '' });
  for (const id of joined) if (!listed.has(id)) listed.set(id, { id, kind: 'public', title: '' });
  const rows = [...listed.values()]
    .sort((a, b) => (a.id === LOBBY ? -1 : b.id === LOBBY ? 1 : a.id < b.id ? -1 : 1))
    .map((room) => ({
      id: room.id,
      kind: room.kind,
      title: room.title ?? '',
      joined: joined.has(room.id),
      unread: session.conversations.get(keyOf('room', room.id))?.unread ?? 0,
    }));
  sidebar.setRooms(rows, currentKey);
  const directs = [...session.conversations.values()]
    .filter((each) => each.kind === 'direct')
    .sort((a, b) => a.id.localeCompare(b.id, undefined, { sensitivity: 'base' }))
    .map((each) => ({ key: each.key, user: each.id, unread: each.unread }));
  sidebar.setDirects(directs, currentKey);
}

// ---- the composer ----

/** Characters as the server counts them: Unicode code points, not UTF-16 units. */
function charCount(text) {
  let count = 0;
  for (const _ of text) count += 1;
  return count;
}

function updateCounter() {
  const count = charCount(ui.input.value.trim());
  ui.counter.textContent = `${count} / ${MAX_MESSAGE_CHARS}`;
  ui.counter.dataset.over = String(count > MAX_MESSAGE_CHARS);
}

ui.input.addEventListener('input', () => {
  updateCounter();
  showText(ui.composerError, '');
  // "… is typing" for the others: wsgate.js sends at most one frame per room every 2 s.
  const target = session.current;
  if (target?.kind === 'room' && ui.input.value.trim() !== '') session.conn?.typing(target.id);
});

ui.input.addEventListener('keydown', (event) => {
  // Enter sends; Shift+Enter makes a new line; Enter that confirms an IME composition does neither.
  if (event.key !== 'Enter' || event.shiftKey || event.isComposing || event.ctrlKey || event.altKey || event.metaKey) {
    return;
  }
  event.preventDefault();
  ui.composer.requestSubmit();
});

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  const text = ui.input.value.trim();
  if (text === '') return;
  const count = charCount(text);
  if (count > MAX_MESSAGE_CHARS) {
    showText(ui.composerError, `${describeFrameError('too_long')} This one has ${count}.`);
    return;
  }
  const target = session.current;
  const conn = session.conn;
  const sent =
    target?.kind === 'direct' ? conn?.sendDirect(target.id, text) : conn?.sendMessage(target?.id ?? LOBBY, text);
  if (!sent) {
    showText(ui.composerError, 'You are offline: the message was not sent. It is still in the box; send it again once you are back online.');
    return;
  }
  session.lastSent = text;
  ui.input.value = '';
  updateCounter();
  showText(ui.composerError, '');
});

initThemeToggle(/** @type {HTMLButtonElement} */ (byId('theme-toggle')));
