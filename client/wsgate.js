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
 *  - plain-language sentences for every close code and HTTP error code of docs/protocol.md.
 *
 * What it does not own: the page (no DOM access), storage (the app decides where its token lives),
 * signing in (the app gets its JWT however it likes, e.g. `POST /api/login`).
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
};

/** Sentences for `{"type":"error","code":…}` frames on an authenticated socket. */
const FRAME_ERROR_SENTENCES = {
  rate_limited: 'You are sending messages too fast. Wait a second, then send it again.',
  too_long: `Messages can be at most ${MAX_MESSAGE_CHARS} characters long.`,
  bad_request: 'The server could not understand that message. It was not sent.',
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
 * @param {string} code - `rate_limited`, `too_long` or `bad_request`.
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
 *   authenticated, `auth_ok` included (its `users` is the fresh presence snapshot after every
 *   (re)connection), then `message`, `joined`, `left`, `error`, `refreshed`, `token_expiring`.
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
 *   onMessage: (frame) => { if (frame.type === 'message') show(frame.from, frame.text); },
 *   onStatus: (s) => { statusLine.textContent = s.message ?? s.state; },
 * });
 * conn.send({ type: 'message', text: 'hello' });
 *
 * @param {ConnectOptions} options
 * @returns {WsgateConnection}
 */
export function connect(options) {
  return new WsgateConnection(options);
}

/**
 * One logical connection to wsgate: a series of WebSockets, one per attempt, each with its own
 * ticket. Also an `EventTarget`: `status` and `message` events carry the same values as `onStatus`
 * and `onMessage` in `event.detail`.
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
      // The first frame proves who we are; the ticket alone only proved who minted it.
      ws.send(JSON.stringify({ type: 'auth', token }));
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
      case 'auth_ok':
        this.#onlineAt = Date.now();
        clearTimeout(this.#connectTimer);
        this.#setStatus({
          state: Status.ONLINE,
          user: frame.user,
          users: Array.isArray(frame.users) ? [...frame.users] : [],
          expiresAt: frame.expires_at,
        });
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
    this.#retryTimer = this.#connectTimer = null;
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
