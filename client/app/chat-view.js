/**
 * The chat's DOM: the message log (messages and presence notices) and the list of users online.
 * Everything user-supplied goes through `el()` (textContent only). Knows nothing of sockets: main.js
 * feeds it frames' contents.
 */

import { el, byId } from './dom.js';

/** Oldest entries are dropped past this many, so that a long session does not grow without bound. */
const MAX_LOG_ENTRIES = 500;
/** Within this many pixels of the bottom, a new entry scrolls the log; further up, the reader stays put. */
const STICKY_BOTTOM_PX = 64;

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

/**
 * A stable hue per username, so that each sender keeps a colour across the page (set through
 * element.style, which the CSP allows, unlike style="" in markup).
 *
 * @param {string} name
 * @returns {number} 0..359
 */
function hueOf(name) {
  let hash = 0;
  for (const char of name.toLowerCase()) hash = (hash * 31 + char.codePointAt(0)) % 360;
  return hash;
}

export class ChatView {
  constructor() {
    this.scroller = byId('messages-scroller');
    this.list = byId('messages');
    this.empty = byId('messages-empty');
    this.usersPane = byId('users-pane');
    this.usersStale = byId('users-stale');
    this.users = byId('users');
    this.usersCount = byId('users-count');
    /** Usernames are unique case-insensitively (docs/protocol.md); the server's spelling is shown. */
    this.online = new Map();
    this.me = '';
    /** Whether the reader is at the bottom of the log: new entries and resizes keep them there. */
    this.pinned = true;
    this.scroller.addEventListener('scroll', () => {
      const { scrollHeight, scrollTop, clientHeight } = this.scroller;
      this.pinned = scrollHeight - scrollTop - clientHeight < STICKY_BOTTOM_PX;
    });
    // A phone's keyboard opening, or a rotation, shrinks the log: keep the latest message in view.
    new ResizeObserver(() => this.#stickToBottom()).observe(this.scroller);
  }

  /** Empties everything for a new session of `me`. */
  reset(me) {
    this.me = me;
    this.pinned = true;
    this.list.replaceChildren();
    this.empty.hidden = false;
    this.setUsers([]);
  }

  /** The signed-in user, in the server's spelling (from auth_ok). */
  setMe(me) {
    this.me = me;
    this.renderUsers();
  }

  isMe(name) {
    return name.toLowerCase() === this.me.toLowerCase();
  }

  /**
   * Appends a chat message.
   *
   * @param {{id: string, from: string, text: string, ts: number}} message
   */
  addMessage({ id, from, text, ts }) {
    const own = this.isMe(from);
    const when = new Date(ts);
    const name = el('span', { className: 'message-from', text: from });
    name.style.setProperty('--hue', String(hueOf(from)));
    const meta = el(
      'p',
      { className: 'message-meta' },
      name,
      own && el('span', { className: 'badge', text: 'you' }),
      el('time', {
        className: 'message-time',
        text: timeFormat.format(when),
        attrs: { datetime: when.toISOString(), title: fullFormat.format(when) },
      }),
    );
    const item = el(
      'li',
      {
        className: own ? 'message own' : 'message',
        attrs: { 'data-id': String(id), 'data-from': from, 'data-own': String(own) },
      },
      meta,
      el('p', { className: 'message-text', text }),
    );
    this.#append(item, own);
  }

  /**
   * Appends a line about the chat itself (presence, reconnection): not a message of anyone's.
   *
   * @param {string} text
   */
  addNotice(text) {
    this.#append(el('li', { className: 'notice-line', text }), false);
  }

  /** Replaces the presence list with a snapshot (auth_ok's `users`). */
  setUsers(users) {
    this.online = new Map(users.map((name) => [name.toLowerCase(), name]));
    this.renderUsers();
  }

  /**
   * Marks the presence list as out of date (while not connected, nobody tells us who comes and goes)
   * or current again (the next auth_ok brings a fresh snapshot).
   *
   * @param {boolean} stale
   */
  setPresenceStale(stale) {
    this.usersPane.dataset.stale = String(stale);
    this.usersStale.hidden = !stale;
  }

  /** `joined`: the user's first socket authenticated. */
  userJoined(name) {
    const known = this.online.has(name.toLowerCase());
    this.online.set(name.toLowerCase(), name);
    this.renderUsers();
    if (!known) this.addNotice(`${name} joined.`);
  }

  /** `left`: the user's last socket closed. */
  userLeft(name) {
    if (!this.online.delete(name.toLowerCase())) return;
    this.renderUsers();
    this.addNotice(`${name} left.`);
  }

  renderUsers() {
    const names = [...this.online.values()].sort((a, b) => a.localeCompare(b));
    this.usersCount.textContent = `(${names.length})`;
    this.users.replaceChildren(
      ...names.map((name) => {
        const own = this.isMe(name);
        const avatar = el('span', { className: 'avatar', text: name.slice(0, 1).toUpperCase(), attrs: { 'aria-hidden': 'true' } });
        avatar.style.setProperty('--hue', String(hueOf(name)));
        return el(
          'li',
          { className: own ? 'user own' : 'user', attrs: { 'data-user': name } },
          avatar,
          el('span', { className: 'user-name', text: name }),
          own && el('span', { className: 'badge', text: 'you' }),
        );
      }),
    );
  }

  /** Appends to the log; scrolls to it if the reader was at the bottom, or `forceScroll` (own messages). */
  #append(item, forceScroll) {
    this.empty.hidden = true;
    this.list.append(item);
    while (this.list.childElementCount > MAX_LOG_ENTRIES) this.list.firstElementChild.remove();
    if (forceScroll) this.pinned = true;
    this.#stickToBottom();
  }

  #stickToBottom() {
    if (this.pinned) this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
