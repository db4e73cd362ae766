/**
 * The demo's conversations, as data: each room the user is in and each direct conversation has its
 * entries (messages from the socket and from history, and notices), the ids it holds (so that a
 * message shows once, however it arrived), whether older history exists, presence and who is typing.
 * No DOM and no socket here: main.js feeds frames and history pages in, chat-view.js draws.
 */

/** Oldest entries are dropped past this many, so that a long session does not grow without bound. */
export const MAX_ENTRIES = 500;
/** "… is typing" lasts this long after the user's last `typing` frame. */
export const TYPING_SHOWN_MS = 3000;

/**
 * One line of a conversation's log: a message (`frame`: a `message`, `direct` or `event` frame as
 * the server sends it, from the socket or a history page) or a notice of the page's own. `seq`
 * orders entries by arrival in this page.
 *
 * @typedef {{kind: 'message', frame: any, seq: number} | {kind: 'notice', text: string, seq: number}} Entry
 */

export class Conversation {
  /**
   * @param {'room'|'direct'} kind
   * @param {string} id - the room's id, or the other user's name (the server's spelling).
   */
  constructor(kind, id) {
    this.kind = kind;
    this.id = id;
    this.key = keyOf(kind, id);
    /** @type {Entry[]} oldest first. */
    this.entries = [];
    /** @type {Set<string>} ids of the message entries. */
    this.ids = new Set();
    this.seq = 0;
    /** The server has older messages than the oldest entry. */
    this.hasMore = false;
    this.loadingOlder = false;
    /** Bumped by every (re)load of the newest page, so that an older one's answer is ignored. */
    this.loads = 0;
    this.unread = 0;
    /** @type {Map<string, string>} presence (rooms): lower-case name → the server's spelling. */
    this.presence = new Map();
    /** @type {Map<string, {name: string, timer: ReturnType<typeof setTimeout>}>} who is typing. */
    this.typing = new Map();
    /** @type {any} the room's REST description (kind, title, owner, members), when known. */
    this.info = null;
  }

  /** The heading: `general`, or the other user's name. */
  get label() {
    return this.kind === 'room' ? `# ${this.id}` : this.id;
  }

  /**
   * Appends a message unless its id is already here. Returns the new entry, or null.
   *
   * @param {any} frame
   * @returns {Entry|null}
   */
  add(frame) {
    if (typeof frame.id === 'string') {
      if (this.ids.has(frame.id)) return null;
      this.ids.add(frame.id);
    }
    const entry = { kind: 'message', frame, seq: ++this.seq };
    this.entries.push(entry);
    return /** @type {Entry} */ (entry);
  }

  /** Appends a notice. @returns {Entry} */
  notice(text) {
    const entry = { kind: 'notice', text, seq: ++this.seq };
    this.entries.push(entry);
    return /** @type {Entry} */ (entry);
  }

  /**
   * Drops the oldest entries past MAX_ENTRIES (older messages stay reachable through "Load older").
   *
   * @returns {number} how many were dropped.
   */
  trim() {
    const excess = this.entries.length - MAX_ENTRIES;
    if (excess <= 0) return 0;
    for (const entry of this.entries.splice(0, excess)) {
      if (entry.kind === 'message' && typeof entry.frame.id === 'string') {
        this.ids.delete(entry.frame.id);
        this.hasMore = true;
      }
    }
    return excess;
  }

  /**
   * Replaces the log with the newest history page, keeping what arrived since the request was made
   * (`since`: `seq` then) and is not in the page: nothing shows twice, and nothing live is lost.
   * Everything older than the page stays reachable through "Load older".
   *
   * @param {{messages: any[], hasMore: boolean}} page
   * @param {number} since
   */
  replaceWith(page, since) {
    const later = this.entries.filter((entry) => entry.seq > since);
    this.entries = [];
    this.ids = new Set();
    for (const frame of page.messages) this.add(frame);
    for (const entry of later) {
      if (entry.kind === 'notice') this.notice(entry.text);
      else this.add(entry.frame);
    }
    this.hasMore = page.hasMore;
    this.trim();
  }

  /**
   * Puts an older page above the log. Returns the entries added (oldest first).
   *
   * @param {{messages: any[], hasMore: boolean}} page
   * @returns {Entry[]}
   */
  prependPage(page) {
    const added = [];
    for (const frame of page.messages) {
      if (typeof frame.id === 'string' && this.ids.has(frame.id)) continue;
      if (typeof frame.id === 'string') this.ids.add(frame.id);
      added.push({ kind: 'message', frame, seq: 0 });
    }
    this.entries.unshift(.../** @type {Entry[]} */ (added));
    this.hasMore = page.hasMore;
    return /** @type {Entry[]} */ (added);
  }

  /** The id to page back from: the oldest message's. */
  oldestId() {
    const first = this.entries.find((entry) => entry.kind === 'message' && typeof entry.frame.id === 'string');
    return first ? first.frame.id : null;
  }

  /** Presence from a snapshot (`auth_ok`, `subscribed`). */
  setPresence(names) {
    this.presence = new Map(names.map((name) => [name.toLowerCase(), name]));
  }

  /** `typing` from `name`: shown for TYPING_SHOWN_MS more; `onExpire` when it ends. */
  typingFrom(name, onExpire) {
    const key = name.toLowerCase();
    clearTimeout(this.typing.get(key)?.timer);
    const timer = setTimeout(() => {
      this.typing.delete(key);
      onExpire();
    }, TYPING_SHOWN_MS);
    this.typing.set(key, { name, timer });
  }

  /** Stops showing `name` as typing (their message arrived, or they left). @returns {boolean} changed */
  stopTyping(name) {
    const key = name.toLowerCase();
    const typing = this.typing.get(key);
    if (!typing) return false;
    clearTimeout(typing.timer);
    this.typing.delete(key);
    return true;
  }

  /** @returns {string[]} who is typing, in the order they started. */
  typers() {
    return [...this.typing.values()].map((typing) => typing.name);
  }

  /** Forgets every timer (the session ended). */
  dispose() {
    for (const typing of this.typing.values()) clearTimeout(typing.timer);
    this.typing.clear();
  }
}

/** A conversation's key: `room:general`, `direct:bob` (usernames are unique case-insensitively). */
export function keyOf(kind, id) {
  return kind === 'room' ? `room:${id}` : `direct:${id.toLowerCase()}`;
}
