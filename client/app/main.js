/**
 * The demo chat's controller: signing in and out, the session, and the wiring between wsgate.js's
 * connection and the views (status-view.js, chat-view.js). Started by index.html as a module.
 *
 * Where the tokens live: in this module's memory only (`session.token`, `session.refreshToken`),
 * never in localStorage or sessionStorage, which every script of the origin can read (and the
 * refresh token is worth days of access). The price is that a reload signs the user out; for a demo
 * whose accounts vanish with the server anyway, that is the right trade.
 */

import { connect, describeFrameError, MAX_MESSAGE_CHARS, Status } from '../wsgate.js';
import { AccountError, login, logout, refreshTokens, register } from './account.js';
import { ChatView } from './chat-view.js';
import { byId, showText } from './dom.js';
import { StatusView } from './status-view.js';
import { initThemeToggle } from './theme.js';

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
};

/**
 * The signed-in session. `conn` is the current wsgate connection: callbacks of an older one (after
 * a sign-out) compare themselves with it and fall silent.
 *
 * @type {{token: string|null, refreshToken: string|null, user: string,
 *         conn: import('../wsgate.js').WsgateConnection|null, everOnline: boolean, lastSent: string}}
 */
const session = { token: null, refreshToken: null, user: '', conn: null, everOnline: false, lastSent: '' };

const chat = new ChatView();
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
  chat.reset(user);
  chat.setPresenceStale(false);
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
  Object.assign(session, { token: null, refreshToken: null, user: '', conn: null });
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
    case 'auth_ok':
      // After a reconnection the snapshot replaces the list: presence is not replayed.
      chat.setUsers(frame.users ?? []);
      if (session.everOnline) chat.addNotice('Back online. Messages sent while you were offline are not shown.');
      session.everOnline = true;
      break;
    case 'message':
      chat.addMessage(frame);
      break;
    case 'joined':
      chat.userJoined(frame.user);
      break;
    case 'left':
      chat.userLeft(frame.user);
      break;
    case 'error':
      showText(ui.composerError, describeFrameError(frame.code));
      // The refused text was cleared from the box when it was sent: give it back.
      if (frame.code !== 'bad_request' && ui.input.value === '' && session.lastSent) {
        ui.input.value = session.lastSent;
        updateCounter();
      }
      break;
    default:
      break; // token_expiring, refreshed: wsgate.js handles them (through getAccessToken)
  }
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
  if (!session.conn?.send({ type: 'message', text })) {
    showText(ui.composerError, 'You are offline: the message was not sent. It is still in the box; send it again once you are back online.');
    return;
  }
  session.lastSent = text;
  ui.input.value = '';
  updateCounter();
  showText(ui.composerError, '');
});

initThemeToggle(/** @type {HTMLButtonElement} */ (byId('theme-toggle')));
