/**
 * wsgate.js: the browser side of wsgate's two-step WebSocket authentication, as one ES module with
 * no dependencies and no build step. Drop it into any page and call `connect()`.
 *
 * What it owns:
 *  - the two-step dance: mint a fresh single-use ticket with the app's JWT (`POST /api/ws-ticket`),
 *    open `/ws?ticket=…`, and send `{"type":"auth","token":JWT}` as the first frame;
 *  - staying connected: after a dropped connection or a server restart it reconnects on its own,
 *    with exponential backoff and jitter (about 1 s growing to 30 s) and a new ticket every time;
 *  - knowing when to stop: on a terminal close (4400, 4401, 4403) or an HTTP error that a retry
 *    cannot fix, it stops and says why instead of hammering the server;
 *  - in-band token refresh: on `{"type":"token_expiring"}` it asks the app for a new token and sends
 *    `{"type":"refresh","token":…}` on the live socket;
 *  - rooms (contract v2): `subscribe(room)`, `unsubscribe(room)`, `sendMessage(room, text)`,
 *    `sendDirect(user, text)`, `typing(room)`. The connection remembers the rooms the app is in and
 *    the last message id it saw in each; after every reconnect it subscribes each room again with
 *    `since` = that id, so that the app sees every message of a room exactly once across reconnects
 *    (see "Recovery" below);
 *  - the REST calls of the realtime API with the app's token: `history(room)`, `directHistory(user)`
 *    and `request(method, path, body)` for the rest (rooms, members);
 *  - plain-language sentences for every close code and HTTP error code of docs/protocol.md.
 *
 * What it does not own: the page (no DOM access), storage (the app decides where its token lives),
 * signing in (the app gets its JWT however it likes, e.g. `POST /api/login`).
 *
 * Recovery. Message ids are opaque strings (never numbers: they exceed 2^53), in the order of the
 * room. For each room the connection is in, it keeps the id of the last `message` or `event` frame
 * received, and the last ids seen, to drop a duplicate. After a reconnect (any `auth_ok` but the
 * first):
 *  - `lobby`, which the server subscribes every socket to at authentication, is recovered by the
 *    auth frame itself: `{"type":"auth","token":…,"since":ID}`. The app gets `auth_ok` with
 *    `recovered` always set (if the app had unsubscribed from `lobby`, the connection unsubscribes
 *    it again, silently, and `auth_ok` carries no `recovered`);
 *  - every other room gets `{"type":"subscribe","room":R,"since":ID}`, and the app gets the server's
 *    `subscribed` frame with `recovered` always set.
 * In both cases:
 *  - `recovered: true`: the messages the app missed follow as ordinary `message`/`event` frames, in
 *    order, before any live one; nothing to do;
 *  - `recovered: false`: the server could not replay (the id is older than its recovery window, or
 *    unknown after a restart), or the connection had no id to recover from (no message of the room
 *    was seen yet). The app must reload the room's history over REST (`history(room)`); the
 *    connection also dispatches a `recovery_failed` event (`event.detail = {room}`) then.
 * A frame whose id the connection has already seen in that room (or, for `direct`, among direct
 * messages) is dropped. After `unsubscribe(room)`, nothing more of that room reaches the app.
 * Direct messages are not recovered by the server: after a reconnect, reload an open conversation
 * with `directHistory(user)`.
 *
 * @module wsgate
 */

/**
 * Connection states, in the order a healthy connection goes through them.
 *
 * - `getting_ticket`: asking the app for its token and minting a ticket over HTTP;
 * - `connecting`: the WebSocket upgrade is under way;
 * - `authenticating`: the socket is open and the `auth` frame is sent; waiting for `auth_ok`;
 * - `online`: authenticated; `send()` works;
 * - `reconnecting`: the last attempt or connection failed for a reason a retry can fix; the next
 *   attempt starts at `status.retryAt`;
 * - `offline`: stopped for good because retrying cannot help (revoked/expired/invalid token, a
 *   client bug, no token); `status.message` says why. `reconnect()` tries again on request;
 * - `closed`: the app called `close()`.
 *
 * @readonly
 * @enum {string}
 */
export const Status = Object.freeze({
  GETTING_TICKET: 'getting_ticket',
  CONNECTING: 'connecting',
  AUTHENTICATING: 'authenticating',
  ONLINE: 'online',
  RECONNECTING: 'reconnecting',
  OFFLINE: 'offline',
  CLOSED: 'closed',
});

/** Longest chat message the server accepts, in Unicode characters (code points). */
export const MAX_MESSAGE_CHARS = 2000;

/** The room that always exists, and that every socket is in from its authentication on. */
export const LOBBY = 'lobby';

/** `typing(room)` sends at most one frame per room this often (the server relays no more anyway). */
export const TYPING_INTERVAL_MS = 2000;

/** How many message ids per room (and of direct messages) are remembered to drop duplicates. */
const SEEN_IDS = 1000;

/**
 * Subscribe and unsubscribe frames count against the server's per-socket rate limit (10 frames per
 * second by default) like messages: after a reconnect with many rooms they go out at most this many
 * at once, then one every `CONTROL_INTERVAL_MS`, leaving the app room for its own messages.
 */
const CONTROL_BURST = 5;
const CONTROL_INTERVAL_MS = 200;

/** Error codes of a refused `subscribe` that a later try may fix: the connection retries it. */
const RETRIED_SUBSCRIBE_CODES = new Set(['rate_limited', 'unavailable', 'store_unavailable']);

/**
 * Close codes after which reconnecting is pointless (docs/protocol.md, "Which closes are final"):
 * 4401 and 4403 mean the credentials are no good; 4400, 1002 (protocol error) and 1007 (text that
 * is not UTF-8) are client bugs, which a reconnect would only repeat in a loop.
 */
const TERMINAL_CLOSE_CODES = new Set([1002, 1007, 4400, 4401, 4403]);

/** A connection must have been online this long for its drop to restart the backoff from 1 s. */
const STABLE_AFTER_MS = 5000;

/** Sentences for close codes with a specific reason, keyed `code:reason`. */
const CLOSE_SENTENCES = {
  '4400:bad_request':
    'The server did not understand the sign-in message from this page. This is a bug in the page; reloading may help.',
  '4401:token_invalid': 'Your sign-in is not valid (any more). Please sign in again.',
  '4401:token_expired': 'Your session has expired. Please sign in again.',
  '4401:token_revoked':
    'You have been signed out (in another tab or on another device, perhaps). Please sign in again.',
  '4403:ticket_user_mismatch':
    'The connection was opened for a different user than the one signed in. Please sign in again.',
  '4408:auth_timeout': 'The server did not receive the sign-in in time.',
  '4408:heartbeat_timeout': 'The connection went quiet for too long.',
  '4429:rate_limited': 'Too many messages in a short time: the server closed the connection.',
  '1009:message_too_big': 'A message was too large for the server.',
  '1013:slow_consumer': 'The connection could not keep up with the chat.',
  '1011:store_unavailable': "The server's database did not answer.",
  '1011:internal_error': 'The server ran into a problem.',
  '1002:protocol_error':
    'This page sent the server something it could not understand. This is a bug in the page; reloading may help.',
  '1007:invalid_utf8':
    'This page sent the server text it could not read. This is a bug in the page; reloading may help.',
  '1001:server_shutdown': 'The server is restarting.',
  '1012:reconnect': 'The server asked this page to reconnect.',
};

/** Sentences by close code alone, for reasons not listed above (or none). */
const CLOSE_CODE_SENTENCES = {
  1000: 'The connection was closed.',
  1001: 'The server went away.',
  1002: 'This page broke the WebSocket protocol. This is a bug in the page; reloading may help.',
  1006: 'The connection was lost: the network failed or the server could not be reached.',
  1007: 'This page sent text the server could not read. This is a bug in the page; reloading may help.',
  1009: 'A message was too large for the server.',
  1011: 'The server ran into a problem.',
  1012: 'The server is restarting.',
  1013: 'The server is busy.',
  4400: 'The server did not understand this page. This is a bug in the page; reloading may help.',
  4401: 'Your sign-in is no longer valid. Please sign in again.',
  4403: 'This sign-in may not open this connection. Please sign in again.',
  4408: 'The connection timed out.',
  4429: 'Too many messages in a short time: the server closed the connection.',
};

/** Sentences for the `error` codes of HTTP error bodies `{"error","message"}`. */
const HTTP_SENTENCES = {
  bad_request: 'The server could not understand the request. This is a bug in the page.',
  payload_too_large: 'That is too much text for the server (16 KiB at most).',
  invalid_username: 'Usernames are 3 to 32 characters: letters, digits or underscores, no spaces.',
  invalid_password:
    'Passwords are 8 to 72 bytes long (most characters are one byte; accented letters and emoji count as 2 to 4).',
  username_taken: 'That username is already taken. Choose another one, or sign in.',
  invalid_credentials: 'Unknown username or wrong password.',
  unauthorized: 'Your session is no longer valid. Please sign in again.',
  invalid_refresh_token: 'Your session has ended (you signed out, or it is too old). Please sign in again.',
  refresh_token_reused:
    'Your session was ended for your safety: its sign-in was used from two places at once. Please sign in again.',
  rate_limited: 'Too many attempts in a short time. Please wait a moment and try again.',
  store_unavailable: "The server's database is not answering. Please try again in a moment.",
  origin_forbidden: 'This page is not allowed to connect to the chat server (its origin is not allowed).',
  ticket_missing: 'The connection was opened without a ticket. This is a bug in the page.',
  ticket_invalid: 'The connection ticket was not valid.',
  ticket_expired: 'The connection ticket expired before it was used.',
  ticket_used: 'The connection ticket had already been used.',
  upgrade_required: 'That address only accepts WebSocket connections.',
  not_found: 'The server does not know that address.',
  method_not_allowed: 'The server does not accept that kind of request there.',
  internal: 'The server ran into an unexpected problem. Please try again later.',
  shutting_down: 'The server is restarting. Please try again in a moment.',
  server_busy: 'The server is busy. Please try again in a moment.',
  request_timeout: 'The request took too long to arrive. Please try again.',
  invalid_room:
    'A room name is 3 to 32 characters: lowercase letters, digits, "-" or "_", starting with a letter or digit. Its title is at most 100 characters, and it is public or private.',
  room_exists: 'A room with that name already exists. Choose another name.',
  unknown_room: 'That room does not exist, or you are not one of its members.',
  not_room_owner: "Only the room's owner can do that.",
  unknown_user: 'There is no user of that name.',
  unavailable: "The server's database is not answering. Please try again in a moment.",
};

/** Sentences for `{"type":"error","code":…}` frames on an authenticated socket. */
const FRAME_ERROR_SENTENCES = {
  rate_limited: 'You are sending messages too fast. Wait a second, then send it again.',
  too_long: `Messages can be at most ${MAX_MESSAGE_CHARS} characters long.`,
  bad_request: 'The server could not understand that message. It was not sent.',
  unknown_room: 'That room does not exist, or you are not one of its members.',
  too_many_rooms: 'You are in too many rooms at once. Leave one, then try again.',
  not_subscribed: 'You are not in that room (any more), so the server did not take the message.',
  unknown_user: 'There is no user of that name, so the message was not sent.',
  unavailable: "The server's database did not answer, so that was not done. Try again in a moment.",
  store_unavailable: "The server's database did not answer. Try again in a moment.",
};

/**
 * The plain sentence for a WebSocket close, for people.
 *
 * @param {number} code - the close code (`CloseEvent.code`).
 * @param {string} [reason] - the close reason (`CloseEvent.reason`); wsgate sends the code's name.
 * @returns {string}
 */
export function describeClose(code, reason = '') {
  return (
    CLOSE_SENTENCES[`${code}:${reason}`] ??
    CLOSE_CODE_SENTENCES[code] ??
    `The connection closed unexpectedly (code ${code}${reason ? `, ${reason}` : ''}).`
  );
}

/**
 * The plain sentence for a failed HTTP request to wsgate, for people.
 *
 * @param {number} status - the HTTP status; `0` for a request that got no answer (network failure).
 * @param {string} [code] - the `error` field of the JSON body, e.g. `"username_taken"`.
 * @param {{retryAfter?: number}} [extra] - `retryAfter`: the `Retry-After` header, in seconds.
 * @returns {string}
 */
export function describeHttpError(status, code, { retryAfter } = {}) {
  if (status === 0) {
    return 'The server could not be reached. Check your connection; it may also be restarting.';
  }
  if (code === 'rate_limited' || status === 429) {
    return retryAfter > 0
      ? `Too many attempts in a short time. Please wait ${retryAfter} s and try again.`
      : HTTP_SENTENCES.rate_limited;
  }
  if (code && HTTP_SENTENCES[code]) return HTTP_SENTENCES[code];
  if (status === 413) return HTTP_SENTENCES.payload_too_large;
  if (status === 401) return HTTP_SENTENCES.unauthorized;
  if (status === 503) return HTTP_SENTENCES.store_unavailable;
  if (status >= 500) return `The server ran into a problem (HTTP ${status}). Please try again later.`;
  return `The server refused the request (HTTP ${status}${code ? `, ${code}` : ''}).`;
}

/**
 * The plain sentence for an `{"type":"error","code":…}` frame (the socket stays open).
 *
 * @param {string} code - `rate_limited`, `too_long`, `bad_request`, `unknown_room`,
 *   `too_many_rooms`, `not_subscribed`, `unknown_user`, `unavailable` or `store_unavailable`.
 * @returns {string}
 */
export function describeFrameError(code) {
  return FRAME_ERROR_SENTENCES[code] ?? `The server refused that message (${code}).`;
}

/**
 * Whether a close code means "stop: retrying cannot help".
 *
 * @param {number} code
 * @returns {boolean}
 */
export function isTerminalClose(code) {
  return TERMINAL_CLOSE_CODES.has(code);
}

/**
 * The wait before reconnect attempt number `failures` (0 for the first retry): exponential from
 * `initialMs`, capped at `maxMs`, minus up to `jitter` of itself at random, so that the clients of a
 * restarted server do not all come back in the same instant.
 *
 * @param {number} failures - failed attempts in a row before this one.
 * @param {BackoffOptions} [backoff]
 * @param {() => number} [random] - a source of numbers in [0, 1).
 * @returns {number} milliseconds.
 */
export function backoffDelay(failures, backoff = {}, random = Math.random) {
  const { initialMs = 1000, maxMs = 30000, factor = 2, jitter = 0.25 } = backoff;
  const base = Math.min(maxMs, initialMs * factor ** Math.min(failures, 64));
  return Math.round(base * (1 - jitter * random()));
}

/**
 * @typedef {object} BackoffOptions
 * @property {number} [initialMs=1000] - the wait before the first retry.
 * @property {number} [maxMs=30000] - the longest wait.
 * @property {number} [factor=2] - growth per failed attempt.
 * @property {number} [jitter=0.25] - up to this fraction of each wait is taken off at random.
 */

/**
 * What went wrong, for programs. `source` says where: `socket` (a close: `code` is the close code,
 * `reason` its reason), `http` (`code` is the HTTP status, `reason` the body's `error` code),
 * `network` (no answer at all) or `token` (the app's `getAccessToken` failed or gave no token).
 *
 * @typedef {object} Cause
 * @property {'socket'|'http'|'network'|'token'} source
 * @property {number|null} code
 * @property {string} reason
 */

/**
 * A snapshot of the connection's state, given to `onStatus` on every change.
 *
 * @typedef {object} ConnectionStatus
 * @property {Status} state - see {@link Status}.
 * @property {number} failures - failed attempts in a row (0 once a connection has been stable).
 * @property {string} [message] - `reconnecting`/`offline`: why the last connection or attempt ended,
 *   as a sentence for people; `closed`: a short note.
 * @property {Cause} [cause] - `reconnecting`/`offline`: the same, for programs.
 * @property {number} [retryAt] - `reconnecting`: when the next attempt starts (epoch milliseconds).
 * @property {number} [retryInMs] - `reconnecting`: the wait, as chosen.
 * @property {string} [user] - `online`: the authenticated username (the server's spelling).
 * @property {string[]} [users] - `online`: everyone online when the socket authenticated.
 * @property {number} [expiresAt] - `online`: when the socket's token expires (Unix seconds).
 */

/**
 * @typedef {object} ConnectOptions
 * @property {(request: {refresh: boolean}) => (string|Promise<string>)} getAccessToken - returns the
 *   app's current JWT. Called before every attempt with `{refresh: false}`; called with
 *   `{refresh: true}` when the server warns that the socket's token is about to expire
 *   (`token_expiring`), or when the ticket endpoint refuses the current token: then get a new one
 *   (e.g. `POST /api/token/refresh`), keep it as the current token, and return it; throw if there is
 *   none. Refresh calls never overlap (refresh tokens rotate: presenting one twice ends the session).
 * @property {string} [baseUrl] - where wsgate is, e.g. `"https://chat.example.com"` (a path prefix
 *   is kept). Default: the page's origin. `ws:`/`wss:` follows `http:`/`https:`.
 * @property {(frame: object) => void} [onMessage] - every JSON frame from the server once
 *   authenticated, `auth_ok` included (its `users` is the fresh presence snapshot of `lobby` after
 *   every (re)connection), then `message`, `event`, `direct`, `joined`, `left`, `typing`,
 *   `subscribed`, `unsubscribed`, `error`, `refreshed`, `token_expiring`; less what the connection
 *   filters out (see "Recovery" in the module's description: duplicates, frames of rooms the app
 *   has left, replies to its own resubscriptions' retries). After a reconnect, `auth_ok` (for
 *   `lobby`) and every `subscribed` frame of a resubscribed room carry `recovered` (true or false).
 * @property {(status: ConnectionStatus) => void} [onStatus] - every state change.
 * @property {(error: Error) => void} [onError] - problems that do not change the state: a failed
 *   in-band refresh, a frame that is not JSON, an exception thrown by a callback.
 * @property {BackoffOptions} [backoff]
 * @property {number} [requestTimeoutMs=10000] - gives up on a ticket request after this long.
 * @property {number} [connectTimeoutMs=20000] - gives up on an attempt not online after this long.
 * @property {typeof fetch} [fetch] - for tests; default `globalThis.fetch`.
 * @property {typeof WebSocket} [WebSocket] - for tests; default `globalThis.WebSocket`.
 */

/**
 * Opens a wsgate connection and keeps it open until `close()` or a terminal failure.
 *
 * The first attempt starts in a microtask, so `onStatus` may safely use the returned object.
 *
 * @example
 * import { connect } from '/wsgate.js';
 * const conn = connect({
 *   getAccessToken: async () => myToken,
 *   onMessage: (frame) => {
 *     if (frame.type === 'message') show(frame.room, frame.from, frame.text);
 *     if (frame.type === 'subscribed' && frame.recovered === false) reload(frame.room); // conn.history()
 *   },
 *   onStatus: (s) => { statusLine.textContent = s.message ?? s.state; },
 * });
 * conn.subscribe('general');
 * conn.sendMessage('general', 'hello');
 *
 * @param {ConnectOptions} options
 * @returns {WsgateConnection}
 */
export function connect(options) {
  return new WsgateConnection(options);
}

/**
 * A failed REST call of {@link WsgateConnection#request}: `message` is a sentence for people,
 * `status` the HTTP status (0: no answer), `code` the body's `error` code ('' if none).
 */
export class WsgateHttpError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'WsgateHttpError';
    this.status = status;
    this.code = code;
  }
}

/**
 * A page of history, oldest first: `messages` are frames exactly as the socket delivers them
 * (`message` and `event` frames of a room, `direct` frames of a conversation). `hasMore`: older
 * ones exist; ask for them with `before` = the id of `messages[0]`.
 *
 * @typedef {{messages: object[], hasMore: boolean}} HistoryPage
 */

/** The last ids seen, oldest forgotten first past `limit`. */
class RecentIds {
  #ids = new Set();
  #limit;
  constructor(limit) {
    this.#limit = limit;
  }
  has(id) {
    return this.#ids.has(id);
  }
  add(id) {
    if (this.#ids.has(id)) return;
    this.#ids.add(id);
    if (this.#ids.size > this.#limit) this.#ids.delete(this.#ids.values().next().value);
  }
}

/** What the connection knows of one room. */
class Room {
  /** The app wants to be in the room (after `unsubscribe` it is kept until the server confirms). */
  wanted = true;
  /** On the current socket: `off`, `subscribing` (the reply is awaited) or `on`. */
  state = 'off';
  /** A `subscribed` came on an earlier socket (or the auth, for `lobby`): the next one recovers. */
  everSubscribed = false;
  /** The current socket has yet to send this room's recovering subscribe. */
  recover = false;
  /** The app called `subscribe()` while offline: it gets its `subscribed` once online (`lobby` too). */
  asked = false;
  /** @type {string|null} the id of the last `message`/`event` frame received. */
  lastId = null;
  /** @type {string|null} the app's `since` for its first subscription. */
  requestedSince = null;
  seen = new RecentIds(SEEN_IDS);
  /**
   * @type {{since: string|null, recovering: boolean, hold: boolean, retries: number}|null} the
   *   subscribe in flight; `hold`: frames of the room are held back until its reply.
   */
  pending = null;
  /** @type {object[]} frames held back while a `subscribe … since` of a room not yet on the socket is in flight. */
  held = [];
  /** @type {object[]} the app's messages to the room while its subscription is being renewed. */
  queued = [];
  /** The app's unsubscribes whose reply is awaited, and the connection's own (their replies are not the app's). */
  unsubscribing = 0;
  silentUnsubscribes = 0;
  /** `message`/`event` frames received: a history request that saw none arrive may move `lastId`. */
  received = 0;
  typingAt = -Infinity;
}

/**
 * One logical connection to wsgate: a series of WebSockets, one per attempt, each with its own
 * ticket. Also an `EventTarget`: `status` and `message` events carry the same values as `onStatus`
 * and `onMessage` in `event.detail`; `recovery_failed` (`detail: {room}`) says that the app must
 * reload a room's history (see "Recovery" in the module's description).
 */
export class WsgateConnection extends EventTarget {
  /** @type {ConnectOptions} */
  #options;
  /** @type {URL} wsgate's base URL, ending with `/`. */
  #base;
  /** @type {ConnectionStatus} */
  #status = Object.freeze({ state: Status.GETTING_TICKET, failures: 0 });
  /** @type {WebSocket|null} the socket of the current attempt. */
  #ws = null;
  /** Bumped on every attempt and on close(): async work of an older attempt sees it and gives up. */
  #generation = 0;
  #failures = 0;
  #onlineAt = 0;
  #stopped = false;
  /** @type {Promise<string|Error>|null} the app's token refresh in flight, shared by all who need it. */
  #pendingRefresh = null;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #retryTimer = null;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #connectTimer = null;
  #onBrowserOnline = () => {
    if (this.#status.state === Status.RECONNECTING) this.reconnect();
  };
  /** @type {Map<string, Room>} every room the app is in (or is leaving), `lobby` always. */
  #rooms = new Map([[LOBBY, new Room()]]);
  #directSeen = new RecentIds(SEEN_IDS);
  /** Subscribe/unsubscribe frames waiting for the pace (see CONTROL_BURST), and the pace's state. */
  #controlQueue = [];
  #controlTokens = CONTROL_BURST;
  #controlAt = 0;
  /** @type {ReturnType<typeof setTimeout>|null} */
  #controlTimer = null;
  /** The `since` of `lobby` that the current socket's auth frame carried, or null. */
  #authSince = null;

  /** @param {ConnectOptions} options */
  constructor(options) {
    super();
    if (!options || typeof options.getAccessToken !== 'function') {
      throw new TypeError('wsgate connect(): options.getAccessToken must be a function');
    }
    this.#options = options;
    // Resolved once, so that a bad baseUrl fails here, loudly, rather than in every attempt.
    this.#base = baseOf(options.baseUrl);
    // Coming back online (laptop lid, train tunnel) is worth more than the rest of a long backoff.
    globalThis.addEventListener?.('online', this.#onBrowserOnline);
    queueMicrotask(() => this.#attempt());
  }

  /** The current state; see {@link ConnectionStatus}. @returns {ConnectionStatus} */
  get status() {
    return this.#status;
  }

  /**
   * Sends one frame, e.g. `{type: 'message', text}`, as JSON. Only while `online`: frames are not
   * queued while offline, because a chat message that arrives minutes late misleads more than it helps.
   *
   * @param {object} frame
   * @returns {boolean} whether the frame was handed to the socket.
   */
  send(frame) {
    const ws = this.#ws;
    if (this.#status.state !== Status.ONLINE || !ws || ws.readyState !== 1) return false;
    ws.send(JSON.stringify(frame));
    return true;
  }

  // ---- rooms and direct messages ----

  /**
   * Enters a room: sends `{"type":"subscribe","room":R}` now if online, else once online; the server
   * answers `subscribed` with the room's presence (or `error` `unknown_room` / `too_many_rooms`,
   * after which the connection forgets the room). From then on the connection keeps the room across
   * reconnects. Subscribing to a room the socket is in again is allowed: the server answers again.
   *
   * @param {string} room - e.g. `"general"` (`^[a-z0-9][a-z0-9_-]{2,31}$`).
   * @param {{since?: string}} [options] - `since`: the id of the newest message the app already has
   *   (from history, say): the server then replays what came after it (`recovered: true`), or says it
   *   cannot (`recovered: false`).
   * @returns {boolean} whether the frame went out now (otherwise it goes once online).
   */
  subscribe(room, { since } = {}) {
    if (typeof room !== 'string' || room === '') throw new TypeError('wsgate subscribe(): room must be a non-empty string');
    let entry = this.#rooms.get(room);
    if (!entry) {
      entry = new Room();
      this.#rooms.set(room, entry);
    }
    if (!entry.wanted) {
      // Leaving and coming back: a new subscription, with nothing to recover.
      entry.wanted = true;
      entry.everSubscribed = false;
    }
    if (typeof since === 'string' && since !== '') {
      entry.requestedSince = since;
      entry.lastId = since;
    }
    if (!this.#isOnline()) {
      entry.asked = true;
      return false;
    }
    if (entry.state === 'subscribing') return true; // the reply is on its way
    if (entry.recover) this.#subscribeNow(room, entry, entry.lastId, true);
    else this.#subscribeNow(room, entry, typeof since === 'string' && since !== '' ? since : null, false);
    return true;
  }

  /**
   * Leaves a room: sends `{"type":"unsubscribe","room":R}` (the server answers `unsubscribed`, reason
   * `requested`), forgets the room's last id, and from now on drops every frame of the room. Also
   * works for `lobby`: the connection then unsubscribes from it again after every reconnect.
   *
   * @param {string} room
   * @returns {boolean} whether a frame went out now.
   */
  unsubscribe(room) {
    const entry = this.#rooms.get(room);
    if (!entry) return this.#isOnline() && this.#control({ type: 'unsubscribe', room });
    const onSocket = entry.state !== 'off';
    entry.wanted = false;
    entry.everSubscribed = false;
    entry.lastId = entry.requestedSince = entry.pending = null;
    entry.seen = new RecentIds(SEEN_IDS);
    entry.held = [];
    entry.queued = [];
    entry.state = 'off';
    if (!this.#isOnline() || !onSocket) {
      if (room !== LOBBY) this.#rooms.delete(room);
      return false;
    }
    entry.unsubscribing += 1;
    return this.#control({ type: 'unsubscribe', room });
  }

  /**
   * The rooms the app is in (subscribed, or being subscribed), `lobby` first unless the app left it.
   *
   * @returns {string[]}
   */
  get rooms() {
    return [...this.#rooms].filter(([, entry]) => entry.wanted).map(([room]) => room);
  }

  /**
   * The id of the last `message` or `event` frame received in `room` (what the next reconnect's
   * `since` will be), or null.
   *
   * @param {string} room
   * @returns {string|null}
   */
  lastMessageId(room) {
    return this.#rooms.get(room)?.lastId ?? null;
  }

  /**
   * Sends a chat message to a room the app is in: `{"type":"message","room":R,"text":T}`. Every
   * subscriber, this socket included, gets it back as a `message` frame. While the room's
   * subscription is being renewed after a reconnect (a few milliseconds), the message waits for the
   * server's `subscribed`; it is lost if the socket closes first.
   *
   * @param {string} room
   * @param {string} text - 1 to {@link MAX_MESSAGE_CHARS} characters.
   * @returns {boolean} whether it was handed to the socket (false while not online).
   */
  sendMessage(room, text) {
    const frame = { type: 'message', room, text };
    const entry = this.#rooms.get(room);
    if (entry?.wanted && entry.state === 'subscribing' && this.#isOnline()) {
      entry.queued.push(frame);
      return true;
    }
    return this.send(frame);
  }

  /**
   * Sends a direct message: `{"type":"direct","to":U,"text":T}`. Every socket of `user` and of the
   * sender gets it as a `direct` frame (or the sender gets `error` `unknown_user`).
   *
   * @param {string} user
   * @param {string} text
   * @returns {boolean} whether it was handed to the socket.
   */
  sendDirect(user, text) {
    return this.send({ type: 'direct', to: user, text });
  }

  /**
   * Tells the room's other users that this one is typing: `{"type":"typing","room":R}`, at most once
   * per room every {@link TYPING_INTERVAL_MS} (calls in between are ignored, so it is fine to call
   * this on every keystroke). Only in a room the socket is subscribed to.
   *
   * @param {string} room
   * @returns {boolean} whether a frame went out.
   */
  typing(room) {
    const entry = this.#rooms.get(room);
    if (!entry?.wanted || entry.state !== 'on') return false;
    const now = Date.now();
    if (now - entry.typingAt < TYPING_INTERVAL_MS) return false;
    if (!this.send({ type: 'typing', room })) return false;
    entry.typingAt = now;
    return true;
  }

  // ---- REST with the app's token ----

  /**
   * A REST call to wsgate with the app's token (`Authorization: Bearer`), e.g.
   * `request('POST', 'api/rooms', {id: 'general', kind: 'public'})`. A 401 gets one token refresh
   * (`getAccessToken({refresh: true})`) and one retry.
   *
   * @param {string} method
   * @param {string} path - under the base URL, e.g. `api/rooms` (a leading `/` is ignored).
   * @param {object} [body] - sent as JSON.
   * @returns {Promise<any>} the JSON answer (null for 204).
   * @throws {WsgateHttpError} on an error status, no answer, or no token.
   */
  async request(method, path, body) {
    const url = new URL(String(path).replace(/^\/+/, ''), this.#base);
    let token = await this.#token(false);
    if (token instanceof Error) throw new WsgateHttpError(401, 'unauthorized', describeCause(tokenCause(token)));
    let response = await this.#fetchJson(method, url, body, token);
    if (response.status === 401) {
      const fresh = await this.#refreshedToken();
      if (!(fresh instanceof Error) && fresh !== token) {
        token = fresh;
        response = await this.#fetchJson(method, url, body, token);
      }
    }
    if (response.ok) return response.data;
    const code = typeof response.data?.error === 'string' ? response.data.error : '';
    throw new WsgateHttpError(
      response.status,
      code,
      describeHttpError(response.status, code, { retryAfter: response.retryAfter }),
    );
  }

  /**
   * A page of a room's history: `GET /api/rooms/{room}/messages`. Without `before`, the newest
   * messages; the connection then counts them as seen in that room (a live frame with one of their
   * ids is dropped as a duplicate, and the next reconnect may recover from the newest of them).
   *
   * @param {string} room
   * @param {{before?: string, limit?: number}} [options] - `before`: an id of the room (the oldest
   *   the app has); `limit`: 1 to 200, default 50.
   * @returns {Promise<HistoryPage>}
   */
  async history(room, { before, limit } = {}) {
    const entry = this.#rooms.get(room);
    const received = entry?.received;
    const page = await this.#page(`api/rooms/${encodeURIComponent(room)}/messages`, before, limit);
    if (!before && entry && entry === this.#rooms.get(room) && entry.wanted) {
      for (const frame of page.messages) if (hasId(frame)) entry.seen.add(frame.id);
      // Only when nothing newer can have arrived meanwhile; an older cursor is merely less efficient.
      const newest = page.messages.at(-1);
      if (entry.received === received && hasId(newest)) entry.lastId = newest.id;
    }
    return page;
  }

  /**
   * A page of the direct conversation with `user`: `GET /api/direct/{user}/messages` (`direct`
   * frames, oldest first). Without `before`, its ids count as seen.
   *
   * @param {string} user
   * @param {{before?: string, limit?: number}} [options]
   * @returns {Promise<HistoryPage>}
   */
  async directHistory(user, { before, limit } = {}) {
    const page = await this.#page(`api/direct/${encodeURIComponent(user)}/messages`, before, limit);
    if (!before) for (const frame of page.messages) if (typeof frame?.id === 'string') this.#directSeen.add(frame.id);
    return page;
  }

  async #page(path, before, limit) {
    const query = new URLSearchParams();
    if (before) query.set('before', before);
    if (limit) query.set('limit', String(limit));
    const search = query.toString();
    const data = await this.request('GET', search ? `${path}?${search}` : path);
    return { messages: Array.isArray(data?.messages) ? data.messages : [], hasMore: data?.has_more === true };
  }

  /** One fetch: `{ok, status, data, retryAfter}`; a network failure or timeout throws a WsgateHttpError. */
  async #fetchJson(method, url, body, token) {
    const fetchImpl = this.#options.fetch ?? globalThis.fetch.bind(globalThis);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.#options.requestTimeoutMs ?? 10000);
    const headers = { Authorization: `Bearer ${token}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetchImpl(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'omit',
        cache: 'no-store',
        signal: abort.signal,
      });
    } catch {
      throw new WsgateHttpError(0, '', describeHttpError(0));
    } finally {
      clearTimeout(timer);
    }
    const data = response.status === 204 ? null : await response.json().catch(() => null);
    const retryAfter = Number(response.headers.get('Retry-After')) || 0;
    return { ok: response.ok, status: response.status, data, retryAfter };
  }

  /**
   * Starts a new attempt now: skips the rest of a reconnect wait, or tries again after `offline`
   * (for instance once the user has signed in again and `getAccessToken` has a new token).
   * Does nothing while an attempt is under way or online, or after `close()`.
   */
  reconnect() {
    const { state } = this.#status;
    if (this.#stopped || (state !== Status.RECONNECTING && state !== Status.OFFLINE)) return;
    if (state === Status.OFFLINE) this.#failures = 0;
    this.#attempt();
  }

  /**
   * Closes the connection for good (status `closed`); no reconnect follows. To sign a user out,
   * call `POST /api/logout` first: that revokes the token, which a closed socket alone does not.
   */
  close() {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#generation += 1;
    this.#clearTimers();
    globalThis.removeEventListener?.('online', this.#onBrowserOnline);
    this.#dropSocket(1000, 'client closing');
    this.#setStatus({ state: Status.CLOSED, message: 'Disconnected.' });
  }

  // ---- one attempt: token, ticket, socket, auth ----

  async #attempt() {
    if (this.#stopped) return;
    const generation = ++this.#generation;
    const stale = () => generation !== this.#generation;
    this.#clearTimers();
    this.#dropSocket(1000, 'new attempt');
    this.#setStatus({ state: Status.GETTING_TICKET });

    let token = await this.#token(false);
    if (stale()) return;
    if (token instanceof Error) return this.#fail(tokenCause(token), true);

    let minted = await this.#mintTicket(token);
    if (stale()) return;
    if (minted.status === 401) {
      // The app's token is expired or revoked; an app that can refresh gets one chance to.
      const fresh = await this.#refreshedToken();
      if (stale()) return;
      if (!(fresh instanceof Error) && fresh !== token) {
        token = fresh;
        minted = await this.#mintTicket(token);
        if (stale()) return;
      }
    }
    if (!minted.ticket) return this.#fail(minted.cause, !minted.retry, minted.retryAfter);

    this.#openSocket(generation, minted.ticket, token);
  }

  /** The app's token, or the Error explaining why there is none. */
  async #token(refresh) {
    try {
      const token = await this.#options.getAccessToken({ refresh });
      if (typeof token === 'string' && token !== '') return token;
      return new Error('getAccessToken returned no token');
    } catch (err) {
      return err instanceof Error ? err : new Error(String(err));
    }
  }

  /**
   * A new token from the app (`getAccessToken({refresh: true})`), or the Error why not. Single
   * flight: a second caller while one refresh runs shares its result. Refresh tokens rotate, and
   * wsgate treats a spent one presented again as stolen and revokes the whole session, so two
   * overlapping refreshes (an in-band one, then a reconnect's) would sign the user out.
   */
  #refreshedToken() {
    this.#pendingRefresh ??= this.#token(true).finally(() => {
      this.#pendingRefresh = null;
    });
    return this.#pendingRefresh;
  }

  /**
   * `POST /api/ws-ticket`. Resolves to `{ticket}` or `{cause, retry, retryAfter, status}`; never throws.
   */
  async #mintTicket(token) {
    const fetchImpl = this.#options.fetch ?? globalThis.fetch.bind(globalThis);
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.#options.requestTimeoutMs ?? 10000);
    let response;
    try {
      response = await fetchImpl(new URL('api/ws-ticket', this.#base), {
        method: 'POST',
        // The JWT travels in a header, never in a URL; no cookies are involved, so none are sent.
        headers: { Authorization: `Bearer ${token}` },
        credentials: 'omit',
        cache: 'no-store',
        signal: abort.signal,
      });
    } catch {
      return { cause: { source: 'network', code: null, reason: 'network_error' }, retry: true, status: 0 };
    } finally {
      clearTimeout(timer);
    }
    const body = await response.json().catch(() => null);
    if (response.status === 201 && typeof body?.ticket === 'string') return { ticket: body.ticket };
    const status = response.status;
    const code = typeof body?.error === 'string' ? body.error : '';
    const retryAfter = Number(response.headers.get('Retry-After')) || 0;
    // Worth retrying: rate limits, an unavailable store, server errors, a proxy's timeout.
    const retry = status === 408 || status === 429 || status >= 500;
    return { cause: { source: 'http', code: status, reason: code }, retry, retryAfter, status };
  }

  #openSocket(generation, ticket, token) {
    const WebSocketImpl = this.#options.WebSocket ?? globalThis.WebSocket;
    const url = new URL('ws', this.#base);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.searchParams.set('ticket', ticket);
    let ws;
    try {
      ws = new WebSocketImpl(url.href);
    } catch (err) {
      // Only a malformed URL (a bad baseUrl) throws here: retrying cannot help.
      return this.#fail({ source: 'network', code: null, reason: String(err) }, true);
    }
    this.#ws = ws;
    let opened = false;
    this.#setStatus({ state: Status.CONNECTING });
    this.#connectTimer = setTimeout(() => {
      // An attempt that hangs (a black-holed network) must not stall the connection forever.
      if (ws !== this.#ws || this.#status.state === Status.ONLINE) return;
      this.#dropSocket(1000, 'connect timeout');
      this.#fail({ source: 'network', code: null, reason: 'timeout' }, false);
    }, this.#options.connectTimeoutMs ?? 20000);

    ws.onopen = () => {
      if (ws !== this.#ws) return;
      opened = true;
      this.#setStatus({ state: Status.AUTHENTICATING });
      // The first frame proves who we are; the ticket alone only proved who minted it. It also
      // recovers `lobby`, which the server subscribes the socket to as it authenticates.
      const lobby = this.#rooms.get(LOBBY);
      const since = lobby.wanted ? (lobby.everSubscribed ? lobby.lastId : lobby.requestedSince) : null;
      this.#authSince = since ?? null;
      ws.send(JSON.stringify(since ? { type: 'auth', token, since } : { type: 'auth', token }));
    };
    ws.onmessage = (event) => {
      if (ws === this.#ws && generation === this.#generation) this.#onFrame(ws, event.data);
    };
    // An `error` event is always followed by `close`, which carries the code: handle it there.
    ws.onerror = null;
    ws.onclose = (event) => this.#onClose(ws, event.code, event.reason, opened);
  }

  #onFrame(ws, data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      this.#report(new Error('wsgate sent a frame that is not JSON'));
      return;
    }
    if (!frame || typeof frame.type !== 'string') return;
    switch (frame.type) {
      case 'auth_ok': {
        this.#onlineAt = Date.now();
        clearTimeout(this.#connectTimer);
        // `lobby` was recovered (or not) by the auth frame's `since`: the replay follows this frame.
        const lobby = this.#rooms.get(LOBBY);
        const since = this.#authSince;
        const recovering = lobby.wanted && (lobby.everSubscribed || since !== null);
        const recovered = since !== null && frame.recovered === true;
        const resubscribe = this.#newSocketRooms();
        this.#setStatus({
          state: Status.ONLINE,
          user: frame.user,
          users: Array.isArray(frame.users) ? [...frame.users] : [],
          expiresAt: frame.expires_at,
        });
        this.#emit('message', recovering ? { ...frame, recovered } : frame, this.#options.onMessage);
        if (recovering && !recovered) {
          this.dispatchEvent(new CustomEvent('recovery_failed', { detail: { room: LOBBY } }));
        }
        resubscribe();
        return;
      }
      case 'subscribed':
        return this.#onSubscribed(frame);
      case 'unsubscribed':
        return this.#onUnsubscribed(frame);
      case 'message':
      case 'typing':
      case 'joined':
      case 'left':
        return this.#onRoomFrame(frame);
      case 'event':
        // A server-API publish to a room is part of the room's stream; one sent to a user is not.
        if (typeof frame.room === 'string') return this.#onRoomFrame(frame);
        break;
      case 'direct':
        if (typeof frame.id === 'string') {
          if (this.#directSeen.has(frame.id)) return;
          this.#directSeen.add(frame.id);
        }
        break;
      case 'error':
        if (this.#onSubscribeError(frame)) return;
        break;
      case 'token_expiring':
        this.#refreshInBand(ws);
        break;
      case 'refreshed':
        if (this.#status.state === Status.ONLINE) {
          this.#setStatus({ ...this.#status, expiresAt: frame.expires_at });
        }
        break;
      default:
        break;
    }
    this.#emit('message', frame, this.#options.onMessage);
  }

  /**
   * A new socket is authenticated: no room is subscribed on it but `lobby` (the server's doing).
   * Resets every room's per-socket state at once, and returns what to send once the app has seen
   * the `auth_ok`: each room's subscription again (with `since` where it recovers), and the
   * unsubscription from `lobby` if the app had left it.
   */
  #newSocketRooms() {
    this.#controlQueue = [];
    clearTimeout(this.#controlTimer);
    this.#controlTimer = null;
    this.#controlTokens = CONTROL_BURST;
    this.#controlAt = Date.now();
    for (const [room, entry] of this.#rooms) {
      entry.state = room === LOBBY ? 'on' : 'off';
      // `lobby` is subscribed, and was recovered by the auth frame: from now on it recovers too.
      entry.recover = room !== LOBBY && entry.wanted && entry.everSubscribed;
      if (room === LOBBY && entry.wanted) {
        entry.everSubscribed = true;
        entry.requestedSince = null;
      }
      entry.pending = null;
      entry.held = [];
      entry.queued = [];
      entry.unsubscribing = entry.silentUnsubscribes = 0;
      if (!entry.wanted && room !== LOBBY) this.#rooms.delete(room);
    }
    const ws = this.#ws;
    return () => {
      if (ws !== this.#ws || !this.#isOnline()) return;
      for (const [room, entry] of this.#rooms) {
        if (!entry.wanted) {
          // Only `lobby` is left here (the others were forgotten above): the auth subscribed it again.
          if (entry.state === 'on') {
            entry.state = 'off';
            entry.silentUnsubscribes += 1;
            this.#control({ type: 'unsubscribe', room });
          }
        } else if (entry.state === 'subscribing') {
          // The app subscribed meanwhile (from its onStatus or onMessage): under way already.
        } else if (entry.recover) {
          this.#subscribeNow(room, entry, entry.lastId, true);
        } else if (entry.state === 'off' || entry.asked) {
          // A first subscription (`lobby` only when the app asked for it, to get its `subscribed`).
          this.#subscribeNow(room, entry, room === LOBBY ? null : entry.requestedSince, false);
        }
      }
    };
  }

  /**
   * Sends a subscribe for `room` (paced). `since`: recover from that id (frames of the room are held
   * back until the reply). `recovering`: a resubscription after a reconnect, whose reply always gets
   * `recovered` (false when there was no id to recover from).
   */
  #subscribeNow(room, entry, since, recovering) {
    // A room the socket is in already: the server replays nothing (it delivered everything since
    // the socket's subscription live), so its frames are not held back.
    const hold = Boolean(since) && entry.state !== 'on';
    entry.state = 'subscribing';
    entry.recover = entry.asked = false;
    entry.pending = { since: since ?? null, recovering, hold, retries: entry.pending?.retries ?? 0 };
    entry.held = [];
    this.#control(since ? { type: 'subscribe', room, since } : { type: 'subscribe', room });
  }

  #onSubscribed(frame) {
    const entry = this.#rooms.get(frame.room);
    if (!entry) return this.#emit('message', frame, this.#options.onMessage); // from a raw send()
    if (!entry.wanted) return; // the app left meanwhile
    const pending = entry.pending ?? { since: null, recovering: false };
    entry.pending = null;
    entry.state = 'on';
    entry.everSubscribed = true;
    entry.requestedSince = null;
    const held = entry.held;
    entry.held = [];
    const recovers = pending.since !== null || pending.recovering;
    const recovered = pending.since !== null && frame.recovered === true;
    this.#emit('message', recovers ? { ...frame, recovered } : frame, this.#options.onMessage);
    if (recovers && !recovered) {
      this.dispatchEvent(new CustomEvent('recovery_failed', { detail: { room: frame.room } }));
    }
    // Not replayed: what arrived while the subscribe was in flight is live news after all. (With
    // `recovered: true` the replay carries those very frames, in order, so they are dropped here.)
    if (!recovered) for (const early of held) this.#onRoomFrame(early);
    const queued = entry.queued;
    entry.queued = [];
    for (const message of queued) this.send(message);
  }

  #onUnsubscribed(frame) {
    const entry = this.#rooms.get(frame.room);
    if (entry) {
      if (frame.reason === 'requested' && entry.silentUnsubscribes > 0) {
        entry.silentUnsubscribes -= 1;
        return; // the connection's own, after a reconnect
      }
      if (frame.reason === 'requested' && entry.unsubscribing > 0) {
        entry.unsubscribing -= 1;
        if (entry.wanted) return; // the app subscribed again since: this reply is stale
      } else if (frame.reason !== 'requested' && entry.wanted) {
        // Removed from the room, or the room was deleted: the server sends nothing more of it.
        entry.wanted = false;
        entry.state = 'off';
        entry.lastId = entry.pending = null;
        entry.held = [];
        entry.queued = [];
      }
      if (!entry.wanted && entry.unsubscribing === 0 && frame.room !== LOBBY) this.#rooms.delete(frame.room);
    }
    this.#emit('message', frame, this.#options.onMessage);
  }

  /**
   * `message`, `event` (of a room), `typing`, `joined`, `left`: dropped if the app left the room,
   * held back during a recovery, dropped if its id was seen; otherwise the app gets it. A frame
   * without `room` (a v1 server) is `lobby`'s.
   */
  #onRoomFrame(frame) {
    const room = typeof frame.room === 'string' ? frame.room : LOBBY;
    const entry = this.#rooms.get(room);
    if (entry) {
      if (!entry.wanted) return;
      if (entry.pending?.hold) {
        // Presence and typing are superseded by the reply's snapshot; messages may be replayed.
        if (hasId(frame)) entry.held.push(frame);
        return;
      }
      if (hasId(frame)) {
        entry.received += 1;
        entry.lastId = frame.id;
        if (entry.seen.has(frame.id)) return;
        entry.seen.add(frame.id);
      }
    }
    this.#emit('message', frame, this.#options.onMessage);
  }

  /**
   * An error frame naming a room whose subscribe is in flight is the subscribe's: a rate limit or an
   * unreachable store is retried (the rate limit silently: it was the connection's doing), anything
   * else ends the subscription. Returns true when the app is not to see the frame.
   */
  #onSubscribeError(frame) {
    const entry = typeof frame.room === 'string' ? this.#rooms.get(frame.room) : undefined;
    if (!entry?.pending || entry.state !== 'subscribing') return false;
    const { room } = frame;
    if (RETRIED_SUBSCRIBE_CODES.has(frame.code)) {
      const pending = entry.pending;
      const ws = this.#ws;
      const delay = backoffDelay(pending.retries, { initialMs: 1000, maxMs: 10000 });
      pending.retries += 1;
      setTimeout(() => {
        if (ws !== this.#ws || entry.pending !== pending || !entry.wanted || !this.#isOnline()) return;
        this.#control(pending.since ? { type: 'subscribe', room, since: pending.since } : { type: 'subscribe', room });
      }, delay);
      return frame.code === 'rate_limited';
    }
    entry.wanted = false;
    entry.state = 'off';
    entry.pending = null;
    entry.held = [];
    entry.queued = [];
    if (room !== LOBBY && entry.unsubscribing === 0) this.#rooms.delete(room);
    return false;
  }

  #isOnline() {
    return this.#status.state === Status.ONLINE && this.#ws?.readyState === 1;
  }

  /** Sends a subscribe/unsubscribe frame at the pace (see CONTROL_BURST). */
  #control(frame) {
    this.#controlQueue.push(frame);
    this.#drainControl();
    return true;
  }

  #drainControl() {
    clearTimeout(this.#controlTimer);
    this.#controlTimer = null;
    while (this.#controlQueue.length && this.#isOnline()) {
      const now = Date.now();
      this.#controlTokens = Math.min(CONTROL_BURST, this.#controlTokens + (now - this.#controlAt) / CONTROL_INTERVAL_MS);
      this.#controlAt = now;
      if (this.#controlTokens < 1) {
        const wait = Math.ceil((1 - this.#controlTokens) * CONTROL_INTERVAL_MS);
        this.#controlTimer = setTimeout(() => this.#drainControl(), wait);
        return;
      }
      this.#controlTokens -= 1;
      this.#ws.send(JSON.stringify(this.#controlQueue.shift()));
    }
  }

  /**
   * The server warned that the socket's token expires soon: get a new one from the app and hand it
   * over on the live socket. If that fails, nothing else is done: the server closes the socket with
   * 4401 token_expired when the old token runs out, and that is reported like any terminal close.
   */
  async #refreshInBand(ws) {
    if (this.#pendingRefresh) return; // already under way; the server warns once per token anyway
    const token = await this.#refreshedToken();
    if (token instanceof Error) {
      this.#report(new Error(`wsgate: in-band token refresh failed: ${token.message}`, { cause: token }));
      return;
    }
    // The socket may have gone meanwhile; the next attempt gets the app's current token anyway.
    if (ws === this.#ws && ws.readyState === 1) ws.send(JSON.stringify({ type: 'refresh', token }));
  }

  #onClose(ws, code, reason, opened) {
    if (ws !== this.#ws) return; // an old socket, already replaced or dropped
    this.#ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    clearTimeout(this.#connectTimer);
    if (this.#stopped) return;
    if (this.#onlineAt && Date.now() - this.#onlineAt >= STABLE_AFTER_MS) this.#failures = 0;
    // 1012: the server (its backend) asks for a reconnect; the delay stays short, about 1 s.
    if (code === 1012 && opened) this.#failures = 0;
    this.#onlineAt = 0;
    // A refused upgrade (401 ticket_used, 403 origin_forbidden, 429…) reaches a page only as 1006
    // before `open`: browsers hide the HTTP status. So it is retried like a network failure.
    const cause = {
      source: opened || code !== 1006 ? 'socket' : 'network',
      code,
      reason: reason || (opened ? '' : 'upgrade_failed'),
    };
    this.#fail(cause, isTerminalClose(code));
  }

  /** Ends the current attempt: stop for good (`offline`) or schedule the next one (`reconnecting`). */
  #fail(cause, terminal, retryAfterSecs = 0) {
    const message = describeCause(cause);
    if (terminal) {
      this.#setStatus({ state: Status.OFFLINE, message, cause });
      return;
    }
    const delay = Math.max(
      backoffDelay(this.#failures, this.#options.backoff),
      retryAfterSecs * 1000,
    );
    this.#failures += 1;
    const retryAt = Date.now() + delay;
    this.#retryTimer = setTimeout(() => this.#attempt(), delay);
    this.#setStatus({ state: Status.RECONNECTING, message, cause, retryAt, retryInMs: delay });
  }

  #dropSocket(code, reason) {
    const ws = this.#ws;
    this.#ws = null;
    if (!ws) return;
    ws.onmessage = ws.onclose = ws.onerror = null;
    if (ws.readyState === 0) {
      // Closing a socket that is still connecting makes browsers log an error; close it once open.
      ws.onopen = () => ws.close(code, reason);
    } else {
      ws.onopen = null;
      if (ws.readyState === 1) ws.close(code, reason);
    }
  }

  #clearTimers() {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#controlTimer);
    this.#retryTimer = this.#connectTimer = this.#controlTimer = null;
    this.#controlQueue = [];
  }

  #setStatus(fields) {
    this.#status = Object.freeze({ failures: this.#failures, ...fields });
    this.#emit('status', this.#status, this.#options.onStatus);
  }

  #emit(type, detail, callback) {
    try {
      callback?.(detail);
    } catch (err) {
      this.#report(err);
    }
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Non-fatal problems go to `onError`, else to the browser's error reporting. */
  #report(err) {
    try {
      if (this.#options.onError) return this.#options.onError(err);
    } catch {
      /* an onError that throws has nowhere else to report to */
    }
    if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  }
}

/** The sentence for a {@link Cause}. */
function describeCause(cause) {
  switch (cause.source) {
    case 'socket':
      return describeClose(cause.code, cause.reason);
    case 'http':
      return describeHttpError(cause.code, cause.reason);
    case 'token':
      return 'You are not signed in (no access token). Please sign in.';
    default:
      return cause.reason === 'upgrade_failed'
        ? 'Could not open the connection: the server refused it or could not be reached.'
        : describeHttpError(0);
  }
}

/** Whether a frame is a `message`/`event` with an id (a frame of a room's stream). */
function hasId(frame) {
  return (frame?.type === 'message' || frame?.type === 'event') && typeof frame.id === 'string';
}

function tokenCause(err) {
  return { source: 'token', code: null, reason: err.message };
}

/**
 * wsgate's base URL, ending with `/` so that `api/…` and `ws` resolve under it: a base with a path
 * prefix (wsgate mounted behind a reverse proxy) keeps it.
 */
function baseOf(baseUrl) {
  const base = new URL(baseUrl ?? globalThis.location.origin, globalThis.location?.href);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`wsgate connect(): baseUrl must be http(s), not ${base.protocol}`);
  }
  if (!base.pathname.endsWith('/')) base.pathname += '/';
  base.search = base.hash = '';
  return base;
}
