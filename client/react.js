/**
 * react.js: React hooks over wsgate.js, for apps built with React. One ES module, no JSX, no build
 * step of its own.
 *
 * React is a peer: this file imports from `'react'`, a bare specifier that the app's bundler
 * (esbuild, Vite, webpack…) resolves to the app's own copy, so that the app and these hooks share one
 * React. Nothing of React is bundled here.
 *
 *  - `useWsgate(options)`: one wsgate connection for the component's lifetime (wsgate.js's
 *    `connect(options)`), its status as state, closed on unmount.
 *  - `useRoom(conn, room)`: the component is in `room` while mounted: it subscribes (and
 *    unsubscribes on unmount), and returns the room's messages (history, then live, each once), who
 *    is typing, the room's presence, and `send(text)`. The history is loaded over REST when the room
 *    is first subscribed, and again when a reconnect could not recover it (`recovered: false`);
 *    otherwise wsgate.js replays what was missed by itself.
 *
 * @example
 * import { useRoom, useWsgate } from 'wsgate/react.js';
 * function Chat({ token }) {
 *   const { conn, status } = useWsgate({ getAccessToken: async () => token });
 *   const { messages, typing, presence, send } = useRoom(conn, 'lobby');
 *   // …
 * }
 *
 * @module wsgate/react
 */

import { useCallback, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import { connect, LOBBY, Status } from './wsgate.js';

/** "… is typing" lasts this long after a user's last `typing` frame. */
export const TYPING_SHOWN_MS = 3000;

/** Messages per history page. */
const PAGE_SIZE = 50;

/**
 * @typedef {import('./wsgate.js').ConnectOptions & {enabled?: boolean}} UseWsgateOptions - the
 *   options of wsgate.js's `connect()`; callbacks may change between renders (the latest ones are
 *   called). A new connection is made when `baseUrl` or `enabled` changes. `enabled: false` (e.g.
 *   while signed out) makes none.
 */

/**
 * One wsgate connection, for as long as the component is mounted (and `enabled`).
 *
 * @param {UseWsgateOptions} options
 * @returns {{conn: import('./wsgate.js').WsgateConnection|null,
 *            status: import('./wsgate.js').ConnectionStatus, online: boolean, user: string|null}}
 *   `conn` is null until the connection exists (the first render) and while disabled.
 */
export function useWsgate(options) {
  const latest = useRef(options);
  useEffect(() => {
    latest.current = options;
  });
  const [conn, setConn] = useState(/** @type {import('./wsgate.js').WsgateConnection|null} */ (null));
  const [status, setStatus] = useState(
    /** @type {import('./wsgate.js').ConnectionStatus} */ ({ state: Status.GETTING_TICKET, failures: 0 }),
  );
  const enabled = options.enabled !== false;
  const { baseUrl } = options;

  useEffect(() => {
    if (!enabled) {
      setConn(null);
      return undefined;
    }
    const current = () => latest.current;
    const connection = connect({
      ...current(),
      baseUrl,
      getAccessToken: (request) => current().getAccessToken(request),
      onStatus: (s) => {
        setStatus(s);
        current().onStatus?.(s);
      },
      onMessage: (frame) => current().onMessage?.(frame),
      onError: (err) => (current().onError ?? ((e) => console.warn(e.message)))(err),
    });
    setConn(connection);
    setStatus(connection.status);
    return () => connection.close();
  }, [baseUrl, enabled]);

  return { conn, status, online: status.state === Status.ONLINE, user: status.user ?? null };
}

/**
 * @typedef {object} RoomState
 * @property {object[]} messages - `message` and `event` frames of the room, oldest first, each once.
 * @property {string[]} typing - who is typing now (each shown for TYPING_SHOWN_MS after their last
 *   `typing` frame, or until their message arrives).
 * @property {string[]} presence - who is in the room (sorted as the server sorts).
 * @property {boolean} subscribed - the server has confirmed the subscription.
 * @property {boolean} hasMore - older history exists: call `loadOlder()`.
 * @property {boolean} loading - a history page is being loaded.
 * @property {{code: string, message: string}|null} error - the last refusal about this room (an
 *   `error` frame naming it, removal from it, or a failed history request).
 * @property {(text: string) => boolean} send - sends a message to the room (false while offline).
 * @property {() => boolean} sendTyping - "I am typing" (at most one frame per 2 s is sent).
 * @property {() => Promise<void>} loadOlder - prepends the previous page of history.
 */

const initialRoom = {
  entries: /** @type {{frame: any, seq: number}[]} */ ([]),
  typing: /** @type {string[]} */ ([]),
  presence: /** @type {string[]} */ ([]),
  subscribed: false,
  hasMore: false,
  loading: false,
  error: /** @type {{code: string, message: string}|null} */ (null),
};

function idsOf(entries) {
  return new Set(entries.map((entry) => entry.frame.id).filter((id) => typeof id === 'string'));
}

function sortedNames(names) {
  return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** @param {typeof initialRoom} state */
function roomReducer(state, action) {
  switch (action.type) {
    case 'reset':
      return initialRoom;
    case 'subscribed':
      return { ...state, subscribed: true, presence: sortedNames(action.users), error: null };
    case 'presence':
      return { ...state, presence: sortedNames(action.users) };
    case 'joined':
      return state.presence.some((name) => name.toLowerCase() === action.user.toLowerCase())
        ? state
        : { ...state, presence: sortedNames([...state.presence, action.user]) };
    case 'left':
      return {
        ...state,
        presence: state.presence.filter((name) => name.toLowerCase() !== action.user.toLowerCase()),
        typing: state.typing.filter((name) => name.toLowerCase() !== action.user.toLowerCase()),
      };
    case 'message': {
      const { frame } = action;
      if (typeof frame.id === 'string' && state.entries.some((entry) => entry.frame.id === frame.id)) return state;
      const from = typeof frame.from === 'string' ? frame.from.toLowerCase() : null;
      return {
        ...state,
        entries: [...state.entries, { frame, seq: action.seq }],
        typing: from ? state.typing.filter((name) => name.toLowerCase() !== from) : state.typing,
      };
    }
    case 'loading':
      return { ...state, loading: true };
    case 'latest': {
      // The newest page replaces the list; what arrived since the request was made stays.
      const ids = idsOf(action.page.messages.map((frame) => ({ frame })));
      const later = state.entries.filter((entry) => entry.seq > action.since && !ids.has(entry.frame.id));
      return {
        ...state,
        loading: false,
        hasMore: action.page.hasMore,
        entries: [...action.page.messages.map((frame) => ({ frame, seq: 0 })), ...later],
      };
    }
    case 'older': {
      const ids = idsOf(state.entries);
      const older = action.page.messages.filter((frame) => !ids.has(frame.id)).map((frame) => ({ frame, seq: 0 }));
      return { ...state, loading: false, hasMore: action.page.hasMore, entries: [...older, ...state.entries] };
    }
    case 'typing':
      return state.typing.some((name) => name.toLowerCase() === action.user.toLowerCase())
        ? state
        : { ...state, typing: [...state.typing, action.user] };
    case 'typing_over':
      return { ...state, typing: state.typing.filter((name) => name.toLowerCase() !== action.user.toLowerCase()) };
    case 'error':
      return { ...state, loading: false, error: action.error };
    case 'removed':
      return { ...state, subscribed: false, presence: [], typing: [], error: action.error };
    default:
      return state;
  }
}

/**
 * Being in a room while mounted: subscribes to `room` on `conn` (from {@link useWsgate}),
 * unsubscribes on unmount or when `room` changes.
 *
 * @param {import('./wsgate.js').WsgateConnection|null} conn
 * @param {string|null} room - null: in no room.
 * @returns {RoomState}
 */
export function useRoom(conn, room) {
  const [state, dispatch] = useReducer(roomReducer, initialRoom);
  /** Arrival order of live messages, so that a history page that was requested before keeps them. */
  const seq = useRef(0);
  /** Bumped per (conn, room): an answer for an earlier room is dropped. */
  const generation = useRef(0);

  useEffect(() => {
    generation.current += 1;
    dispatch({ type: 'reset' });
    if (!conn || !room) return undefined;
    let active = true;
    let loads = 0;
    const timers = new Map();

    const loadLatest = async () => {
      const load = ++loads;
      const since = seq.current;
      dispatch({ type: 'loading' });
      try {
        const page = await conn.history(room, { limit: PAGE_SIZE });
        if (active && load === loads) dispatch({ type: 'latest', page, since });
      } catch (err) {
        if (active && load === loads) dispatch({ type: 'error', error: { code: err.code ?? '', message: err.message } });
      }
    };
    const stopTyping = (user) => {
      const key = user.toLowerCase();
      clearTimeout(timers.get(key));
      timers.delete(key);
    };
    const ours = (frame) => (typeof frame.room === 'string' ? frame.room === room : room === LOBBY && frame.type !== 'event');

    const onMessage = (/** @type {CustomEvent} */ event) => {
      const frame = event.detail;
      if (!frame || !active) return;
      if (frame.type === 'auth_ok') {
        if (room !== LOBBY) return;
        dispatch({ type: 'presence', users: frame.users ?? [] });
        // A reconnect recovers lobby through the auth frame (wsgate.js): reload when it could not.
        if (frame.recovered === false) loadLatest();
        return;
      }
      if (frame.type === 'error') {
        if (frame.room === room) dispatch({ type: 'error', error: { code: frame.code, message: frame.message ?? '' } });
        return;
      }
      if (!ours(frame)) return;
      switch (frame.type) {
        case 'subscribed':
          dispatch({ type: 'subscribed', users: frame.users ?? [] });
          // A first subscription, or a reconnect that could not recover: the history says what happened.
          if (frame.recovered !== true) loadLatest();
          break;
        case 'unsubscribed':
          if (frame.reason !== 'requested') {
            dispatch({ type: 'removed', error: { code: frame.reason, message: `unsubscribed: ${frame.reason}` } });
          }
          break;
        case 'message':
        case 'event':
          seq.current += 1;
          if (typeof frame.from === 'string') stopTyping(frame.from);
          dispatch({ type: 'message', frame, seq: seq.current });
          break;
        case 'joined':
          dispatch({ type: 'joined', user: frame.user });
          break;
        case 'left':
          stopTyping(frame.user);
          dispatch({ type: 'left', user: frame.user });
          break;
        case 'typing': {
          const key = frame.user.toLowerCase();
          clearTimeout(timers.get(key));
          timers.set(
            key,
            setTimeout(() => {
              timers.delete(key);
              if (active) dispatch({ type: 'typing_over', user: frame.user });
            }, TYPING_SHOWN_MS),
          );
          dispatch({ type: 'typing', user: frame.user });
          break;
        }
        default:
          break;
      }
    };

    conn.addEventListener('message', onMessage);
    conn.subscribe(room);
    return () => {
      active = false;
      conn.removeEventListener('message', onMessage);
      for (const timer of timers.values()) clearTimeout(timer);
      conn.unsubscribe(room);
    };
  }, [conn, room]);

  const send = useCallback((text) => (conn && room ? conn.sendMessage(room, text) : false), [conn, room]);
  const sendTyping = useCallback(() => (conn && room ? conn.typing(room) : false), [conn, room]);
  const oldest = state.entries.find((entry) => typeof entry.frame.id === 'string')?.frame.id ?? null;
  const loadOlder = useCallback(async () => {
    if (!conn || !room || !oldest) return;
    const mine = generation.current;
    dispatch({ type: 'loading' });
    try {
      const page = await conn.history(room, { before: oldest, limit: PAGE_SIZE });
      if (mine === generation.current) dispatch({ type: 'older', page });
    } catch (err) {
      if (mine === generation.current) dispatch({ type: 'error', error: { code: err.code ?? '', message: err.message } });
    }
  }, [conn, room, oldest]);
  const messages = useMemo(() => state.entries.map((entry) => entry.frame), [state.entries]);

  return {
    messages,
    typing: state.typing,
    presence: state.presence,
    subscribed: state.subscribed,
    hasMore: state.hasMore,
    loading: state.loading,
    error: state.error,
    send,
    sendTyping,
    loadOlder,
  };
}
