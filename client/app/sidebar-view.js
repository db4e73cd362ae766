/**
 * The conversations pane: the rooms this user can see (GET /api/rooms) and their direct
 * conversations, each a button (the open one has `aria-current`), with unread counts; the "New room"
 * form and the "Message a user" form. Knows nothing of sockets: main.js hands it lists and actions.
 */

import { el, byId, showText } from './dom.js';

/** The server's rule for room ids (docs/protocol.md); checked here first to say so at once. */
const ROOM_ID = /^[a-z0-9][a-z0-9_-]{2,31}$/;

/**
 * @typedef {{id: string, kind: string, title: string, joined: boolean, unread: number}} RoomRow
 * @typedef {{key: string, user: string, unread: number}} DirectRow
 */

export class SidebarView {
  /**
   * @param {{
   *   onOpenRoom: (id: string) => void,
   *   onOpenDirect: (user: string) => Promise<void>,
   *   onCreateRoom: (room: {id: string, title: string, kind: string}) => Promise<void>,
   *   onRefresh: () => void,
   * }} actions - `onOpenDirect` and `onCreateRoom` reject with an Error whose message is for people.
   */
  constructor(actions) {
    this.actions = actions;
    this.rooms = byId('rooms');
    this.roomsError = byId('rooms-error');
    this.directs = byId('directs');
    this.createDetails = /** @type {HTMLDetailsElement} */ (byId('room-create'));
    this.createForm = /** @type {HTMLFormElement} */ (byId('room-create-form'));
    this.createError = byId('room-create-error');
    this.directForm = /** @type {HTMLFormElement} */ (byId('direct-form'));
    this.directError = byId('direct-error');
    this.directInput = /** @type {HTMLInputElement} */ (byId('direct-user'));
    byId('rooms-refresh').addEventListener('click', () => actions.onRefresh());
    this.createForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#create();
    });
    this.directForm.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#openDirect();
    });
  }

  /** Empties the pane for a new session. */
  reset() {
    this.rooms.replaceChildren();
    this.directs.replaceChildren();
    showText(this.roomsError, '');
    showText(this.createError, '');
    showText(this.directError, '');
    this.createForm.reset();
    this.directForm.reset();
    this.createDetails.open = false;
  }

  /** The room list is drawn from a fresh GET /api/rooms: `#rooms[data-loads]` counts them (tests wait on it). */
  loaded() {
    this.rooms.dataset.loads = String(Number(this.rooms.dataset.loads ?? 0) + 1);
  }

  /** A sentence about the room list (it could not be loaded), or '' to hide it. */
  setRoomsError(text) {
    showText(this.roomsError, text);
  }

  /**
   * @param {RoomRow[]} rows
   * @param {string} currentKey - the open conversation's key.
   */
  setRooms(rows, currentKey) {
    this.#keepingFocus(this.rooms, () => this.#renderRooms(rows, currentKey));
  }

  #renderRooms(rows, currentKey) {
    this.rooms.replaceChildren(
      ...rows.map((row) => {
        const button = this.#button(`room:${row.id}`, currentKey, row.unread, [
          el('span', { className: 'conversation-name', text: `# ${row.id}` }),
          row.kind === 'private' && el('span', { className: 'badge', text: 'private' }),
          row.title && el('span', { className: 'conversation-detail', text: row.title }),
        ]);
        button.dataset.room = row.id;
        button.dataset.joined = String(row.joined);
        button.addEventListener('click', () => this.actions.onOpenRoom(row.id));
        return el('li', {}, button);
      }),
    );
  }

  /**
   * @param {DirectRow[]} rows
   * @param {string} currentKey
   */
  setDirects(rows, currentKey) {
    this.#keepingFocus(this.directs, () => this.#renderDirects(rows, currentKey));
  }

  #renderDirects(rows, currentKey) {
    this.directs.replaceChildren(
      ...rows.map((row) => {
        const button = this.#button(row.key, currentKey, row.unread, [
          el('span', { className: 'conversation-name', text: row.user }),
        ]);
        button.dataset.user = row.user;
        button.addEventListener('click', () => this.#openDirect(row.user));
        return el('li', {}, button);
      }),
    );
  }

  /** Redraws a list; a keyboard user whose focus was on one of its buttons keeps it there. */
  #keepingFocus(list, render) {
    const focused = list.contains(document.activeElement) ? document.activeElement?.getAttribute('data-key') : null;
    render();
    if (focused) list.querySelector(`button[data-key="${CSS.escape(focused)}"]`)?.focus();
  }

  #button(key, currentKey, unread, children) {
    const button = el(
      'button',
      { className: 'conversation', attrs: { type: 'button', 'data-key': key } },
      ...children,
      unread > 0 && el('span', { className: 'unread', text: String(unread), attrs: { 'aria-hidden': 'true' } }),
      unread > 0 && el('span', { className: 'visually-hidden', text: `, ${unread} unread` }),
    );
    if (key === currentKey) button.setAttribute('aria-current', 'true');
    return button;
  }

  async #create() {
    const { id, title, kind } = /** @type {any} */ (this.createForm.elements);
    const name = id.value.trim();
    id.removeAttribute('aria-invalid');
    if (!ROOM_ID.test(name)) {
      showText(this.createError, 'A room name is 3 to 32 characters: lowercase letters, digits, "-" or "_", starting with a letter or digit.');
      id.setAttribute('aria-invalid', 'true');
      id.focus();
      return;
    }
    showText(this.createError, '');
    const button = this.createForm.querySelector('button[type="submit"]');
    button.disabled = true;
    this.createForm.setAttribute('aria-busy', 'true');
    try {
      await this.actions.onCreateRoom({ id: name, title: title.value.trim(), kind: kind.value });
      this.createForm.reset();
      this.createDetails.open = false;
    } catch (err) {
      showText(this.createError, err.message);
      if (err.code === 'room_exists' || err.code === 'invalid_room') {
        id.setAttribute('aria-invalid', 'true');
        id.focus();
      }
    } finally {
      button.disabled = false;
      this.createForm.removeAttribute('aria-busy');
    }
  }

  /** Opens the conversation with `user` (the form's, when not given). */
  async #openDirect(user) {
    const name = user ?? this.directInput.value.trim();
    if (!name) {
      showText(this.directError, 'Enter the username of the person to message.');
      this.directInput.focus();
      return;
    }
    showText(this.directError, '');
    try {
      await this.actions.onOpenDirect(name);
      if (!user) this.directForm.reset();
    } catch (err) {
      showText(this.directError, err.message);
    }
  }
}
