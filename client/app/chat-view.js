/**
 * The chat's DOM: the open conversation's log (messages and notices, the "Load older messages"
 * button, "… is typing"), its heading, and the list of users beside it (who is online, or who is in
 * the open room). Everything user-supplied goes through `el()` (textContent only). Knows nothing of
 * sockets: main.js feeds it a conversation (conversations.js) and tells it what changed.
 */

import { el, byId } from './dom.js';

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
export function hueOf(name) {
  let hash = 0;
  for (const char of name.toLowerCase()) hash = (hash * 31 + char.codePointAt(0)) % 360;
  return hash;
}

/**
 * "alice is typing…", "alice and bob are typing…", "alice, bob and 2 others are typing…".
 *
 * @param {string[]} names
 * @returns {string}
 */
export function typingSentence(names) {
  if (names.length === 0) return '';
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  const others = names.length - 2;
  return `${names[0]}, ${names[1]} and ${others} other${others === 1 ? '' : 's'} are typing…`;
}

export class ChatView {
  /**
   * @param {{onDirect: (user: string) => void, onLoadOlder: () => void}} actions - `onDirect`: the
   *   "Message" button of a user in the list; `onLoadOlder`: the "Load older messages" button.
   */
  constructor({ onDirect, onLoadOlder }) {
    this.scroller = byId('messages-scroller');
    this.list = byId('messages');
    this.empty = byId('messages-empty');
    this.older = /** @type {HTMLButtonElement} */ (byId('load-older'));
    this.typingLine = byId('typing');
    this.title = byId('messages-title');
    this.sub = byId('conversation-sub');
    this.usersPane = byId('users-pane');
    this.usersLabel = byId('users-label');
    this.usersStale = byId('users-stale');
    this.users = byId('users');
    this.usersCount = byId('users-count');
    this.onDirect = onDirect;
    /** @type {string[]} the names in the users list, in the server's spelling. */
    this.shownUsers = [];
    this.me = '';
    /** Whether the reader is at the bottom of the log: new entries and resizes keep them there. */
    this.pinned = true;
    this.scroller.addEventListener('scroll', () => {
      const { scrollHeight, scrollTop, clientHeight } = this.scroller;
      this.pinned = scrollHeight - scrollTop - clientHeight < STICKY_BOTTOM_PX;
    });
    this.older.addEventListener('click', onLoadOlder);
    // A phone's keyboard opening, or a rotation, shrinks the log: keep the latest message in view.
    new ResizeObserver(() => this.#stickToBottom()).observe(this.scroller);
  }

  /** Empties everything for a new session of `me`. */
  reset(me) {
    this.me = me;
    this.pinned = true;
    this.list.replaceChildren();
    this.empty.hidden = false;
    this.older.hidden = true;
    this.setTyping([]);
    this.setUsers([], 'Online');
  }

  /** The signed-in user, in the server's spelling (from auth_ok). */
  setMe(me) {
    this.me = me;
    this.#renderUsers();
  }

  isMe(name) {
    return name.toLowerCase() === this.me.toLowerCase();
  }

  /**
   * Shows a conversation from scratch: heading, every entry, the "Load older" button, and the log
   * scrolled to its end.
   *
   * @param {import('./conversations.js').Conversation} conversation
   * @param {string} subtitle - the line under the heading.
   */
  show(conversation, subtitle) {
    this.title.textContent = conversation.label;
    this.title.dataset.conversation = conversation.key;
    this.sub.textContent = subtitle;
    this.pinned = true;
    this.renderEntries(conversation);
  }

  /** Re-renders every entry of the conversation (after a reload), keeping the reader's place. */
  renderEntries(conversation) {
    this.list.replaceChildren(...conversation.entries.map((entry) => this.#item(entry)));
    this.empty.hidden = conversation.entries.length > 0;
    this.setOlder(conversation);
    this.#stickToBottom();
  }

  /** Appends one entry; scrolls to it if the reader was at the bottom, or for own messages. */
  append(entry) {
    const item = this.#item(entry);
    const own = entry.kind === 'message' && this.isMe(entry.frame.from);
    this.empty.hidden = true;
    this.list.append(item);
    if (own) this.pinned = true;
    this.#stickToBottom();
  }

  /** Removes the oldest rendered entries, past `count` (the conversation dropped them). */
  trim(count) {
    while (this.list.childElementCount > count) this.list.firstElementChild.remove();
  }

  /**
   * Puts older entries above the others, keeping what the reader looks at in place.
   *
   * @param {import('./conversations.js').Entry[]} entries - oldest first.
   * @param {import('./conversations.js').Conversation} conversation
   */
  prepend(entries, conversation) {
    const fromBottom = this.scroller.scrollHeight - this.scroller.scrollTop;
    this.list.prepend(...entries.map((entry) => this.#item(entry)));
    this.empty.hidden = this.list.childElementCount > 0;
    this.setOlder(conversation);
    this.scroller.scrollTop = this.scroller.scrollHeight - fromBottom;
  }

  /** The "Load older messages" button: shown while the server has more, disabled while loading. */
  setOlder(conversation) {
    this.older.hidden = !conversation.hasMore;
    this.older.disabled = conversation.loadingOlder;
    this.older.textContent = conversation.loadingOlder ? 'Loading older messages…' : 'Load older messages';
  }

  /** "… is typing" under the log; empty (and so invisible) when nobody is. */
  setTyping(names) {
    const text = typingSentence(names);
    if (this.typingLine.textContent !== text) this.typingLine.textContent = text;
    this.typingLine.dataset.users = names.join(',');
  }

  /**
   * Replaces the users list: who is online (lobby, direct messages) or in the open room.
   *
   * @param {string[]} names
   * @param {string} label - the list's heading, e.g. "Online" or "In general".
   */
  setUsers(names, label) {
    this.shownUsers = [...names];
    this.usersLabel.textContent = label;
    this.#renderUsers();
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

  #renderUsers() {
    // Yourself first, then everyone else alphabetically (case-insensitively).
    const names = [...this.shownUsers].sort((a, b) => {
      if (this.isMe(a) !== this.isMe(b)) return this.isMe(a) ? -1 : 1;
      return a.localeCompare(b, undefined, { sensitivity: 'base' });
    });
    this.usersCount.textContent = `(${names.length})`;
    this.users.replaceChildren(
      ...names.map((name) => {
        const own = this.isMe(name);
        const avatar = el('span', { className: 'avatar', text: name.slice(0, 1).toUpperCase(), attrs: { 'aria-hidden': 'true' } });
        avatar.style.setProperty('--hue', String(hueOf(name)));
        let action = null;
        if (!own) {
          action = el('button', {
            className: 'button button-quiet button-small user-dm',
            text: 'Message',
            attrs: { type: 'button', 'aria-label': `Message ${name}` },
          });
          action.addEventListener('click', () => this.onDirect(name));
        }
        return el(
          'li',
          { className: own ? 'user own' : 'user', attrs: { 'data-user': name } },
          avatar,
          el('span', { className: 'user-name', text: name }),
          own && el('span', { className: 'badge', text: 'you' }),
          action,
        );
      }),
    );
  }

  /** @param {import('./conversations.js').Entry} entry */
  #item(entry) {
    if (entry.kind === 'notice') return el('li', { className: 'notice-line', text: entry.text });
    const { frame } = entry;
    if (frame.type === 'event') {
      // A server-API publish: the backend's JSON, shown as text.
      return el('li', {
        className: 'notice-line event-line',
        text: `Event: ${JSON.stringify(frame.data)}`,
        attrs: { 'data-id': String(frame.id ?? '') },
      });
    }
    return this.#messageItem(frame);
  }

  /** @param {{id: string, from: string, text: string, ts: number}} frame */
  #messageItem({ id, from, text, ts }) {
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
    return el(
      'li',
      {
        className: own ? 'message own' : 'message',
        attrs: { 'data-id': String(id), 'data-from': from, 'data-own': String(own) },
      },
      meta,
      el('p', { className: 'message-text', text }),
    );
  }

  #stickToBottom() {
    if (this.pinned) this.scroller.scrollTop = this.scroller.scrollHeight;
  }
}
