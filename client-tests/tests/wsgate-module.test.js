/**
 * client/wsgate.js on its own, in Node with a fake fetch and a fake WebSocket: the paths a live
 * server does not readily show (terminal closes, backoff growth, Retry-After, a refused token, the
 * in-band refresh the server does not send yet, the exact interleavings of a room's recovery), and
 * that every close code, close reason and HTTP error code in docs/protocol.md has a sentence of its
 * own. The real-browser behaviour is chat.test.js's and rooms.test.js's.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { afterEach, describe, test } from 'node:test';

// client/ has no package.json saying "module", so Node would read wsgate.js as CommonJS: load the
// source as an ES module through a data: URL instead. The module touches no browser-only global
// when given a baseUrl, fetch and WebSocket.
const source = readFileSync(new URL('../../client/wsgate.js', import.meta.url), 'utf8');
const wsgate = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
const {
  backoffDelay,
  connect,
  describeClose,
  describeFrameError,
  describeHttpError,
  isTerminalClose,
  LOBBY,
  Status,
  TYPING_INTERVAL_MS,
  WsgateHttpError,
} = wsgate;

const protocol = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

/** A WebSocket stand-in that the test drives: `open()`, `receive(frame)`, `serverClose(code, reason)`. */
class FakeSocket {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedWith = null;
    FakeSocket.all.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code, reason) {
    this.readyState = 3;
    this.closedWith = { code, reason };
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/**
 * A fetch stand-in answering POST /api/ws-ticket from `answers` (one per call, the last repeats):
 * `{status, body, headers}` or `'network'` for a failed request.
 */
function fakeFetch(answers, rest = null) {
  const calls = [];
  let n = 0;
  const fetch = async (url, init) => {
    if (rest && !String(url).endsWith('/api/ws-ticket')) return rest(String(url), init);
    calls.push({ url: String(url), init });
    const answer = answers[Math.min(n++, answers.length - 1)];
    if (answer === 'network') throw new TypeError('Failed to fetch');
    return new Response(JSON.stringify(answer.body ?? { ticket: `ticket-${n}`, expires_in: 30 }), {
      status: answer.status ?? 201,
      headers: answer.headers ?? {},
    });
  };
  return { fetch, calls };
}

/** Every connection a test opened: closed after each test, so a failed one leaves no retry timer. */
const opened = [];
afterEach(() => opened.splice(0).forEach((conn) => conn.close()));

/** Opens a connection with fakes; `statuses` collects every status. */
function harness({
  answers = [{}],
  getAccessToken = async () => 'jwt-1',
  backoff = { initialMs: 20, maxMs: 80, jitter: 0 },
  rest = null,
} = {}) {
  FakeSocket.all = [];
  const { fetch, calls } = fakeFetch(answers, rest);
  const statuses = [];
  const frames = [];
  const errors = [];
  const conn = connect({
    baseUrl: 'https://chat.example.com/gate',
    getAccessToken,
    onStatus: (s) => statuses.push(s),
    onMessage: (f) => frames.push(f),
    onError: (e) => errors.push(e),
    backoff,
    fetch,
    WebSocket: FakeSocket,
  });
  opened.push(conn);
  const failedRecoveries = [];
  conn.addEventListener('recovery_failed', (event) => failedRecoveries.push(event.detail.room));
  return { conn, calls, statuses, frames, errors, failedRecoveries };
}

/** Resolves once `predicate()` holds (polling), or fails after `ms`. */
async function until(predicate, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${predicate}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const lastSocket = () => FakeSocket.all.at(-1);

/** A room's `message` frame as the server sends it. */
const msg = (room, id, text = `text ${id}`, from = 'bob') => ({ type: 'message', room, id, from, text, ts: 1 });

/** `[room, id]` of every message/event frame the app got, in order. */
const received = (h) => h.frames.filter((f) => f.type === 'message' || f.type === 'event').map((f) => [f.room, f.id]);

/** Drops the current socket and brings the next attempt online (auth_ok only). */
async function reconnect(h, code = 1006, authOk = {}) {
  lastSocket().serverClose(code);
  assert.equal(h.conn.status.state, Status.RECONNECTING);
  const before = FakeSocket.all.length;
  await until(() => FakeSocket.all.length > before && h.conn.status.state === Status.CONNECTING, 3000);
  await goOnline(h, 'alice', authOk);
}

/** Brings a harness's current attempt to `online`. */
async function goOnline(h, user = 'alice', extra = {}) {
  await until(() => lastSocket() && h.conn.status.state === Status.CONNECTING);
  lastSocket().open();
  lastSocket().receive({ type: 'auth_ok', user, expires_at: 2000000000, users: [user, 'bob'], ...extra });
  assert.equal(h.conn.status.state, Status.ONLINE);
}

describe('wsgate.js', () => {
  test('mints a ticket with the bearer token, opens /ws with it, and authenticates with the first frame', async () => {
    const h = harness();
    await goOnline(h);
    assert.equal(h.calls[0].url, 'https://chat.example.com/gate/api/ws-ticket');
    assert.equal(h.calls[0].init.method, 'POST');
    assert.equal(h.calls[0].init.headers.Authorization, 'Bearer jwt-1');
    assert.equal(lastSocket().url, 'wss://chat.example.com/gate/ws?ticket=ticket-1');
    assert.deepEqual(lastSocket().sent, [{ type: 'auth', token: 'jwt-1' }]);
    assert.deepEqual(
      h.statuses.map((s) => s.state),
      [Status.GETTING_TICKET, Status.CONNECTING, Status.AUTHENTICATING, Status.ONLINE],
    );
    assert.equal(h.conn.status.user, 'alice');
    assert.deepEqual(h.conn.status.users, ['alice', 'bob']);
    assert.equal(h.frames[0].type, 'auth_ok');

    assert.equal(h.conn.send({ type: 'message', text: 'hi' }), true);
    assert.deepEqual(lastSocket().sent.at(-1), { type: 'message', text: 'hi' });
    h.conn.close();
    assert.equal(h.conn.status.state, Status.CLOSED);
    assert.equal(lastSocket().closedWith.code, 1000);
    assert.equal(h.conn.send({ type: 'message', text: 'late' }), false);
  });

  test('reconnects after a server restart with a fresh ticket each time, and backs off exponentially', async () => {
    const h = harness({ answers: [{}, 'network', 'network', 'network', 'network', {}] });
    await goOnline(h);
    lastSocket().serverClose(1001, 'server_shutdown');
    const reconnecting = h.conn.status;
    assert.equal(reconnecting.state, Status.RECONNECTING);
    assert.equal(reconnecting.message, 'The server is restarting.');
    assert.deepEqual(reconnecting.cause, { source: 'socket', code: 1001, reason: 'server_shutdown' });
    assert.ok(reconnecting.retryAt >= Date.now());

    await until(() => h.calls.length === 6 && h.conn.status.state === Status.CONNECTING, 3000);
    // 20 ms, then doubling to the 80 ms cap (jitter off here).
    const waits = h.statuses.filter((s) => s.state === Status.RECONNECTING).map((s) => s.retryInMs);
    assert.deepEqual(waits, [20, 40, 80, 80, 80]);
    assert.equal(h.statuses.findLast((s) => s.state === Status.RECONNECTING).message, describeHttpError(0));
    await goOnline(h);
    const tickets = FakeSocket.all.map((s) => new URL(s.url).searchParams.get('ticket'));
    assert.equal(new Set(tickets).size, tickets.length, 'a ticket was used twice');
    h.conn.close();
  });

  test('stops, and says why, on a terminal close', async () => {
    for (const [code, reason, sentence] of [
      [4401, 'token_revoked', /signed out/],
      [4401, 'token_expired', /expired/],
      [4403, 'ticket_user_mismatch', /different user/],
      [4400, 'bad_request', /bug in the page/],
      [1002, 'protocol_error', /bug in the page/],
      [1007, 'invalid_utf8', /bug in the page/],
    ]) {
      const h = harness();
      await goOnline(h);
      lastSocket().serverClose(code, reason);
      assert.equal(h.conn.status.state, Status.OFFLINE, `${code} ${reason}`);
      assert.match(h.conn.status.message, sentence);
      await new Promise((resolve) => setTimeout(resolve, 60));
      assert.equal(h.calls.length, 1, `${code} ${reason} was retried`);
      h.conn.close();
    }
  });

  test('a refused upgrade (1006 before open) and auth_timeout are retried', async () => {
    const h = harness();
    await until(() => h.conn.status.state === Status.CONNECTING);
    lastSocket().serverClose(1006);
    assert.equal(h.conn.status.state, Status.RECONNECTING);
    assert.equal(h.conn.status.cause.source, 'network');
    await until(() => h.conn.status.state === Status.CONNECTING);
    lastSocket().open();
    lastSocket().serverClose(4408, 'auth_timeout');
    assert.equal(h.conn.status.state, Status.RECONNECTING);
    h.conn.close();
  });

  test('honours Retry-After on a 429 from the ticket endpoint', async () => {
    const h = harness({ answers: [{ status: 429, body: { error: 'rate_limited' }, headers: { 'Retry-After': '7' } }] });
    await until(() => h.conn.status.state === Status.RECONNECTING);
    assert.equal(h.conn.status.retryInMs, 7000);
    assert.match(h.conn.status.message, /Too many attempts/);
    h.conn.close();
  });

  test('a refused token gets one refresh; without a new one it stops', async () => {
    const refused = { status: 401, body: { error: 'unauthorized' } };
    const asked = [];
    const h = harness({
      answers: [refused, {}],
      getAccessToken: async ({ refresh }) => {
        asked.push(refresh);
        return refresh ? 'jwt-2' : 'jwt-1';
      },
    });
    await goOnline(h);
    assert.deepEqual(asked, [false, true]);
    assert.equal(h.calls[1].init.headers.Authorization, 'Bearer jwt-2');
    assert.deepEqual(lastSocket().sent[0], { type: 'auth', token: 'jwt-2' });
    h.conn.close();

    const stuck = harness({
      answers: [refused],
      getAccessToken: async ({ refresh }) => {
        if (refresh) throw new Error('cannot refresh');
        return 'jwt-1';
      },
    });
    await until(() => stuck.conn.status.state === Status.OFFLINE);
    assert.equal(stuck.conn.status.message, 'Your session is no longer valid. Please sign in again.');
    assert.equal(stuck.calls.length, 1);
    stuck.conn.close();
  });

  test('no token from the app: offline, not a retry loop', async () => {
    const h = harness({ getAccessToken: async () => null });
    await until(() => h.conn.status.state === Status.OFFLINE);
    assert.equal(h.conn.status.cause.source, 'token');
    assert.equal(h.calls.length, 0);
    h.conn.close();
  });

  test('token_expiring: asks the app for a new token and refreshes the live socket', async () => {
    const asked = [];
    const h = harness({
      getAccessToken: async ({ refresh }) => {
        asked.push(refresh);
        return refresh ? 'jwt-new' : 'jwt-1';
      },
    });
    await goOnline(h);
    lastSocket().receive({ type: 'token_expiring', expires_in: 60 });
    await until(() => lastSocket().sent.length === 2);
    assert.deepEqual(lastSocket().sent[1], { type: 'refresh', token: 'jwt-new' });
    assert.deepEqual(asked, [false, true]);
    lastSocket().receive({ type: 'refreshed', expires_at: 2000000900 });
    assert.equal(h.conn.status.state, Status.ONLINE);
    assert.equal(h.conn.status.expiresAt, 2000000900);
    assert.deepEqual(h.frames.map((f) => f.type), ['auth_ok', 'token_expiring', 'refreshed']);
    h.conn.close();
  });

  test('token_expiring without a new token: reported, the socket stays up until the server closes it', async () => {
    const h = harness({
      getAccessToken: async ({ refresh }) => {
        if (refresh) throw new Error('no refresh route');
        return 'jwt-1';
      },
    });
    await goOnline(h);
    lastSocket().receive({ type: 'token_expiring', expires_in: 60 });
    await until(() => h.errors.length === 1);
    assert.match(h.errors[0].message, /refresh failed: no refresh route/);
    assert.equal(h.conn.status.state, Status.ONLINE);
    assert.equal(lastSocket().sent.length, 1);
    lastSocket().serverClose(4401, 'token_expired');
    assert.equal(h.conn.status.state, Status.OFFLINE);
    assert.equal(h.conn.status.message, 'Your session has expired. Please sign in again.');
    h.conn.close();
  });

  test('refreshes never overlap: a reconnect during an in-band refresh shares it', async () => {
    let calls = 0;
    let release;
    const h = harness({
      answers: [{}, { status: 401, body: { error: 'unauthorized' } }, {}],
      getAccessToken: async ({ refresh }) => {
        if (!refresh) return 'jwt-1';
        calls += 1;
        await new Promise((resolve) => (release = resolve));
        return 'jwt-2';
      },
    });
    await goOnline(h);
    lastSocket().receive({ type: 'token_expiring', expires_in: 60 });
    await until(() => release);
    // The socket drops while the refresh is still running; the reconnect's ticket is refused.
    lastSocket().serverClose(1013, 'slow_consumer');
    await until(() => h.calls.length === 2, 3000);
    await new Promise((resolve) => setTimeout(resolve, 20));
    release();
    await until(() => h.conn.status.state === Status.CONNECTING && FakeSocket.all.length === 2);
    assert.equal(calls, 1, 'getAccessToken({refresh: true}) ran twice at once');
    assert.equal(h.calls[2].init.headers.Authorization, 'Bearer jwt-2');
  });

  test('a callback that throws does not break the connection', async () => {
    FakeSocket.all = [];
    const errors = [];
    const conn = connect({
      baseUrl: 'http://127.0.0.1:1',
      getAccessToken: () => 'jwt',
      onStatus: () => {
        throw new Error('app bug');
      },
      onError: (e) => errors.push(e),
      fetch: fakeFetch([{}]).fetch,
      WebSocket: FakeSocket,
    });
    opened.push(conn);
    await until(() => conn.status.state === Status.CONNECTING);
    assert.equal(lastSocket().url, 'ws://127.0.0.1:1/ws?ticket=ticket-1');
    assert.ok(errors.length >= 2 && errors.every((e) => e.message === 'app bug'));
    conn.close();
  });

  test('backoff: about 1 s, doubling, capped at 30 s, with jitter below the cap', () => {
    assert.equal(backoffDelay(0, {}, () => 0), 1000);
    assert.equal(backoffDelay(1, {}, () => 0), 2000);
    assert.equal(backoffDelay(4, {}, () => 0), 16000);
    assert.equal(backoffDelay(5, {}, () => 0), 30000);
    assert.equal(backoffDelay(500, {}, () => 0), 30000);
    assert.equal(backoffDelay(0, {}, () => 0.999999), 750);
    for (let i = 0; i < 100; i++) {
      const wait = backoffDelay(i % 8);
      assert.ok(wait >= 750 && wait <= 30000, String(wait));
    }
  });

  test('every close code and reason of docs/protocol.md has its own sentence', () => {
    const pairs = [...protocol.matchAll(/^\| (\d{4}) \| `([a-z_]+)` \|/gm)].map((m) => [Number(m[1]), m[2]]);
    assert.ok(pairs.length >= 14, `found only ${pairs.length} close rows in docs/protocol.md`);
    for (const [code, reason] of pairs) {
      const sentence = describeClose(code, reason);
      assert.doesNotMatch(sentence, /unexpectedly/, `${code} ${reason}`);
      assert.match(sentence, /^[A-Z].*\.$/, `${code} ${reason}: ${sentence}`);
    }
    assert.equal(isTerminalClose(4401), true);
    assert.equal(isTerminalClose(4403), true);
    assert.equal(isTerminalClose(4400), true);
    assert.equal(isTerminalClose(1002), true, 'protocol error: a client bug');
    assert.equal(isTerminalClose(1007), true, 'invalid UTF-8: a client bug');
    for (const code of [1001, 1006, 1009, 1011, 1012, 1013, 4408, 4429]) assert.equal(isTerminalClose(code), false, String(code));
    assert.match(describeClose(1006), /connection was lost/);
  });

  test('every HTTP error code of docs/protocol.md has its own sentence', () => {
    const routes = protocol.split('\n').filter((line) => /^\| (`(POST|GET|PUT|DELETE) |anything else)/.test(line));
    const codes = new Set(routes.flatMap((line) => [...line.split(/(?<!\\)\|/)[3].matchAll(/`([a-z_]+)`/g)].map((m) => m[1])));
    for (const code of ['payload_too_large', 'rate_limited', 'internal', 'shutting_down']) codes.add(code);
    assert.ok(codes.size >= 17, `found only ${codes.size} error codes in docs/protocol.md`);
    for (const code of codes) {
      const sentence = describeHttpError(400, code);
      assert.doesNotMatch(sentence, /refused the request \(HTTP/, code);
      assert.match(sentence, /^[A-Z].*\.$/, `${code}: ${sentence}`);
    }
    assert.match(describeHttpError(429, 'rate_limited', { retryAfter: 3 }), /wait 3 s/);
    assert.match(describeHttpError(0), /could not be reached/);
    // v2's codes, whether or not docs/protocol.md lists them in a route's row yet.
    for (const code of ['invalid_room', 'room_exists', 'unknown_room', 'not_room_owner', 'unknown_user', 'unavailable']) {
      assert.doesNotMatch(describeHttpError(400, code), /refused the request \(HTTP/, code);
    }
    for (const code of [
      'rate_limited',
      'too_long',
      'bad_request',
      'unknown_room',
      'too_many_rooms',
      'not_subscribed',
      'unknown_user',
      'unavailable',
      'store_unavailable',
    ]) {
      assert.doesNotMatch(describeFrameError(code), /refused that message/, code);
      assert.match(describeFrameError(code), /^[A-Z].*\.$/, code);
    }
  });
});

describe('wsgate.js rooms (contract v2)', () => {
  test('subscribe, sendMessage, typing and sendDirect send the v2 frames; the last id per room is kept', async () => {
    const h = harness();
    const early = h.conn.subscribe('general');
    assert.equal(early, false, 'not online yet: sent once online');
    await goOnline(h);
    // The lobby is the server's doing at auth: only `general` is subscribed by the connection.
    assert.deepEqual(lastSocket().sent.slice(1), [{ type: 'subscribe', room: 'general' }]);
    lastSocket().receive({ type: 'subscribed', room: 'general', users: ['alice', 'bob'] });
    assert.deepEqual(h.frames.at(-1), { type: 'subscribed', room: 'general', users: ['alice', 'bob'] }, 'passed on as is');
    assert.deepEqual(h.conn.rooms, [LOBBY, 'general']);

    assert.equal(h.conn.sendMessage('general', 'hi'), true);
    assert.equal(h.conn.sendDirect('bob', 'psst'), true);
    assert.deepEqual(lastSocket().sent.slice(2), [
      { type: 'message', room: 'general', text: 'hi' },
      { type: 'direct', to: 'bob', text: 'psst' },
    ]);
    // Ids are strings past 2^53: kept exactly, never as numbers.
    lastSocket().receive(msg('general', '18446744073709551615'));
    lastSocket().receive(msg(LOBBY, '9007199254740993'));
    assert.equal(h.conn.lastMessageId('general'), '18446744073709551615');
    assert.equal(h.conn.lastMessageId(LOBBY), '9007199254740993');
    assert.equal(h.conn.lastMessageId('nowhere'), null);

    // Typing: once per room per TYPING_INTERVAL_MS, only in a subscribed room.
    assert.equal(TYPING_INTERVAL_MS, 2000);
    assert.equal(h.conn.typing('general'), true);
    assert.equal(h.conn.typing('general'), false);
    assert.equal(h.conn.typing(LOBBY), true);
    assert.equal(h.conn.typing('elsewhere'), false);
    assert.deepEqual(lastSocket().sent.slice(4), [
      { type: 'typing', room: 'general' },
      { type: 'typing', room: LOBBY },
    ]);
    h.conn.close();
  });

  test('a duplicate id in a room (or among direct messages) reaches the app once', async () => {
    const h = harness();
    await goOnline(h);
    for (const frame of [msg(LOBBY, '5'), msg(LOBBY, '5'), msg(LOBBY, '6')]) lastSocket().receive(frame);
    const direct = { type: 'direct', id: '77', from: 'bob', to: 'alice', text: 'hey', ts: 1 };
    lastSocket().receive(direct);
    lastSocket().receive(direct);
    // The same id in another room is another message.
    h.conn.subscribe('general');
    lastSocket().receive({ type: 'subscribed', room: 'general', users: [] });
    lastSocket().receive(msg('general', '5'));
    assert.deepEqual(received(h), [[LOBBY, '5'], [LOBBY, '6'], ['general', '5']]);
    assert.equal(h.frames.filter((f) => f.type === 'direct').length, 1);
    h.conn.close();
  });

  test('a reconnect recovers lobby in the auth frame and resubscribes every other room with since = its last id', async () => {
    const h = harness();
    await goOnline(h);
    assert.deepEqual(lastSocket().sent[0], { type: 'auth', token: 'jwt-1' }, 'nothing to recover on the first socket');
    h.conn.subscribe('general');
    lastSocket().receive({ type: 'subscribed', room: 'general', users: ['alice'] });
    lastSocket().receive(msg(LOBBY, '10'));
    lastSocket().receive(msg('general', '11'));
    lastSocket().receive(msg('general', '12'));

    await reconnect(h, 1006, { recovered: true });
    assert.equal(h.conn.status.state, Status.ONLINE);
    // lobby: the server subscribes the socket as it authenticates, so its `since` rides in the auth frame.
    assert.deepEqual(lastSocket().sent, [
      { type: 'auth', token: 'jwt-1', since: '10' },
      { type: 'subscribe', room: 'general', since: '12' },
    ]);
    assert.equal(h.frames.filter((f) => f.type === 'auth_ok').at(-1).recovered, true);
    // lobby's replay follows auth_ok; then general's reply, its replay (a duplicate dropped), live.
    for (const id of ['13', '15']) lastSocket().receive(msg(LOBBY, id));
    lastSocket().receive({ type: 'subscribed', room: 'general', users: ['alice'], recovered: true });
    lastSocket().receive(msg('general', '14'));
    lastSocket().receive(msg('general', '14')); // defensively: a duplicate is dropped
    lastSocket().receive(msg(LOBBY, '15')); // and this one too
    lastSocket().receive(msg('general', '16'));

    assert.deepEqual(received(h), [
      [LOBBY, '10'],
      ['general', '11'],
      ['general', '12'],
      [LOBBY, '13'],
      [LOBBY, '15'],
      ['general', '14'],
      ['general', '16'],
    ]);
    const replies = h.frames.filter((f) => f.type === 'subscribed').slice(1);
    assert.deepEqual(replies.map((f) => [f.room, f.recovered]), [['general', true]]);
    assert.deepEqual(h.failedRecoveries, []);
    assert.equal(h.conn.lastMessageId('general'), '16');
    assert.equal(h.conn.lastMessageId(LOBBY), '15');

    // And again: the cursors moved on.
    await reconnect(h, 1001, { recovered: true });
    assert.deepEqual(lastSocket().sent, [
      { type: 'auth', token: 'jwt-1', since: '15' },
      { type: 'subscribe', room: 'general', since: '16' },
    ]);
    h.conn.close();
  });

  test('recovered:false (or nothing to recover from): the app is told to reload', async () => {
    const h = harness();
    await goOnline(h);
    h.conn.subscribe('quiet');
    lastSocket().receive({ type: 'subscribed', room: 'quiet', users: [] });
    h.conn.subscribe('busy');
    lastSocket().receive({ type: 'subscribed', room: 'busy', users: [] });
    lastSocket().receive(msg('busy', '20'));
    lastSocket().receive(msg(LOBBY, '10'));

    await reconnect(h, 1006, { recovered: false });
    // `quiet` never had a message: there is no id to give, so it cannot be recovered.
    assert.deepEqual(lastSocket().sent, [
      { type: 'auth', token: 'jwt-1', since: '10' },
      { type: 'subscribe', room: 'quiet' },
      { type: 'subscribe', room: 'busy', since: '20' },
    ]);
    assert.equal(h.frames.filter((f) => f.type === 'auth_ok').at(-1).recovered, false);
    lastSocket().receive({ type: 'subscribed', room: 'quiet', users: [] });
    // A frame of a room before its reply (a server does not send one; wsgate.js holds it back anyway):
    // not replayed, so it is delivered after the reply, while the app reloads the history.
    lastSocket().receive(msg('busy', '30'));
    lastSocket().receive({ type: 'subscribed', room: 'busy', users: [], recovered: false });
    lastSocket().receive(msg('busy', '31'));

    const replies = h.frames.filter((f) => f.type === 'subscribed').slice(2);
    assert.deepEqual(replies.map((f) => [f.room, f.recovered]), [['quiet', false], ['busy', false]]);
    assert.deepEqual(h.failedRecoveries, [LOBBY, 'quiet', 'busy']);
    const order = h.frames.slice(h.frames.findLastIndex((f) => f.type === 'subscribed')).map((f) => f.id ?? f.type);
    assert.deepEqual(order, ['subscribed', '30', '31']);
    assert.deepEqual(received(h), [['busy', '20'], [LOBBY, '10'], ['busy', '30'], ['busy', '31']]);

    // No lobby message seen at all: the auth frame has no `since`, and lobby cannot be recovered.
    const fresh = harness();
    await goOnline(fresh);
    await reconnect(fresh);
    assert.deepEqual(lastSocket().sent, [{ type: 'auth', token: 'jwt-1' }]);
    assert.equal(fresh.frames.at(-1).recovered, false);
    assert.deepEqual(fresh.failedRecoveries, [LOBBY]);
    h.conn.close();
    fresh.conn.close();
  });

  test('subscribe(lobby) before the first connect gets its reply like any room', async () => {
    const h = harness();
    h.conn.subscribe(LOBBY);
    await goOnline(h);
    assert.deepEqual(lastSocket().sent.slice(1), [{ type: 'subscribe', room: LOBBY }]);
    lastSocket().receive({ type: 'subscribed', room: LOBBY, users: ['alice'] });
    assert.equal(h.frames.at(-1).type, 'subscribed');
    assert.equal(h.frames.at(-1).recovered, undefined, 'a first subscription, not a recovery');
    h.conn.close();
  });

  test('the first subscribe is not a recovery; subscribe(room, {since}) asks for one', async () => {
    const h = harness();
    await goOnline(h);
    h.conn.subscribe('general', { since: '40' });
    assert.deepEqual(lastSocket().sent.at(-1), { type: 'subscribe', room: 'general', since: '40' });
    lastSocket().receive({ type: 'subscribed', room: 'general', users: [], recovered: true });
    lastSocket().receive(msg('general', '41'));
    h.conn.subscribe('other');
    lastSocket().receive({ type: 'subscribed', room: 'other', users: [] });
    assert.equal(h.frames.at(-1).recovered, undefined);
    assert.deepEqual(h.failedRecoveries, []);
    assert.equal(h.conn.lastMessageId('general'), '41');
    // Asked again while in the room: the server replays nothing then, so nothing is held back either.
    h.conn.subscribe('general', { since: '41' });
    lastSocket().receive(msg('general', '42'));
    assert.deepEqual(received(h).at(-1), ['general', '42']);
    lastSocket().receive({ type: 'subscribed', room: 'general', users: [], recovered: true });
    assert.deepEqual(received(h).slice(-2), [['general', '41'], ['general', '42']]);
    h.conn.close();
  });

  test('after unsubscribe nothing of the room reaches the app; a left lobby is left again after a reconnect', async () => {
    const h = harness();
    await goOnline(h);
    h.conn.subscribe('general');
    lastSocket().receive({ type: 'subscribed', room: 'general', users: [] });
    assert.equal(h.conn.unsubscribe('general'), true);
    assert.equal(h.conn.unsubscribe(LOBBY), true);
    assert.deepEqual(lastSocket().sent.slice(-2), [
      { type: 'unsubscribe', room: 'general' },
      { type: 'unsubscribe', room: LOBBY },
    ]);
    // Frames already in flight when the app left are dropped.
    lastSocket().receive(msg('general', '1'));
    lastSocket().receive(msg(LOBBY, '2'));
    lastSocket().receive({ type: 'typing', room: 'general', user: 'bob' });
    lastSocket().receive({ type: 'unsubscribed', room: 'general', reason: 'requested' });
    lastSocket().receive({ type: 'unsubscribed', room: LOBBY, reason: 'requested' });
    assert.deepEqual(received(h), []);
    assert.equal(h.frames.filter((f) => f.type === 'unsubscribed').length, 2, 'the replies to the app are the app’s');
    assert.deepEqual(h.conn.rooms, []);
    assert.equal(h.conn.typing('general'), false);

    await reconnect(h);
    // The server put the new socket in lobby again: the connection leaves it, and keeps the reply to itself.
    assert.deepEqual(lastSocket().sent, [{ type: 'auth', token: 'jwt-1' }, { type: 'unsubscribe', room: LOBBY }]);
    assert.equal(h.frames.at(-1).recovered, undefined, 'lobby is not the app’s: no recovery to report');
    lastSocket().receive(msg(LOBBY, '3'));
    lastSocket().receive({ type: 'unsubscribed', room: LOBBY, reason: 'requested' });
    assert.equal(h.frames.filter((f) => f.type === 'unsubscribed').length, 2);
    assert.deepEqual(received(h), []);

    // Coming back to lobby is a fresh subscription.
    h.conn.subscribe(LOBBY);
    assert.deepEqual(lastSocket().sent.at(-1), { type: 'subscribe', room: LOBBY });
    lastSocket().receive({ type: 'subscribed', room: LOBBY, users: ['alice'] });
    lastSocket().receive(msg(LOBBY, '4'));
    assert.deepEqual(received(h), [[LOBBY, '4']]);
    h.conn.close();
  });

  test('removed from a room (or the room deleted): forgotten, not resubscribed', async () => {
    const h = harness();
    await goOnline(h);
    h.conn.subscribe('secret');
    lastSocket().receive({ type: 'subscribed', room: 'secret', users: [] });
    lastSocket().receive({ type: 'unsubscribed', room: 'secret', reason: 'removed' });
    assert.equal(h.frames.at(-1).reason, 'removed');
    assert.deepEqual(h.conn.rooms, [LOBBY]);
    await reconnect(h);
    assert.deepEqual(lastSocket().sent.slice(1), [], 'secret is not asked for again');
    h.conn.close();
  });

  test('a refused subscribe: unknown_room forgets the room, rate_limited is retried quietly', async () => {
    const h = harness();
    await goOnline(h);
    h.conn.subscribe('hidden');
    lastSocket().receive({ type: 'error', code: 'unknown_room', message: 'unknown room', room: 'hidden' });
    assert.equal(h.frames.at(-1).code, 'unknown_room', 'the app sees why');
    assert.deepEqual(h.conn.rooms, [LOBBY]);

    h.conn.subscribe('busy');
    const sent = lastSocket().sent.length;
    lastSocket().receive({ type: 'error', code: 'rate_limited', message: 'slow down', room: 'busy' });
    assert.notEqual(h.frames.at(-1).code, 'rate_limited', 'the connection’s own retry: not the app’s business');
    await until(() => lastSocket().sent.length === sent + 1, 3000);
    assert.deepEqual(lastSocket().sent.at(-1), { type: 'subscribe', room: 'busy' });
    lastSocket().receive({ type: 'subscribed', room: 'busy', users: [] });
    assert.deepEqual(h.conn.rooms, [LOBBY, 'busy']);
    h.conn.close();
  });

  test('a message to a room whose subscription is being renewed waits for the reply', async () => {
    const h = harness();
    await goOnline(h);
    h.conn.subscribe('general');
    lastSocket().receive({ type: 'subscribed', room: 'general', users: [] });
    lastSocket().receive(msg('general', '1'));
    await reconnect(h);
    assert.equal(h.conn.sendMessage('general', 'right after the reconnect'), true);
    assert.equal(lastSocket().sent.some((f) => f.type === 'message'), false, 'not before the server has it subscribed');
    lastSocket().receive({ type: 'subscribed', room: 'general', users: [], recovered: true });
    assert.deepEqual(lastSocket().sent.at(-1), { type: 'message', room: 'general', text: 'right after the reconnect' });
    h.conn.close();
  });

  test('many rooms are resubscribed at a pace below the server’s per-socket rate limit', async () => {
    const h = harness();
    await goOnline(h);
    const rooms = Array.from({ length: 11 }, (_, i) => `room-${i}`);
    for (const room of rooms) h.conn.subscribe(room);
    await until(() => lastSocket().sent.length === 12, 3000);
    for (const room of rooms) lastSocket().receive({ type: 'subscribed', room, users: [] });
    await reconnect(h);
    const started = Date.now();
    // 11 rooms: 5 at once, then one every 200 ms.
    assert.equal(lastSocket().sent.length, 1 + 5);
    await until(() => lastSocket().sent.length === 12, 5000);
    assert.ok(Date.now() - started >= 1200, `11 subscribes in ${Date.now() - started} ms`);
    assert.deepEqual(lastSocket().sent.slice(1).map((f) => f.room), rooms);
    h.conn.close();
  });

  test('1012 reconnect is not terminal: it reconnects soon and recovers', async () => {
    const h = harness({ answers: ['network', 'network', {}], backoff: { initialMs: 20, maxMs: 5000, jitter: 0 } });
    await until(() => h.calls.length === 3 && h.conn.status.state === Status.CONNECTING, 3000);
    await goOnline(h);
    assert.equal(h.conn.status.failures, 2);
    lastSocket().receive(msg(LOBBY, '7'));
    // Failures piled up before do not make the server's "reconnect" wait long (80 ms here otherwise).
    lastSocket().serverClose(1012, 'reconnect');
    assert.equal(h.conn.status.state, Status.RECONNECTING);
    assert.equal(h.conn.status.message, 'The server asked this page to reconnect.');
    assert.equal(h.conn.status.retryInMs, 20);
    await until(() => h.conn.status.state === Status.CONNECTING && FakeSocket.all.length === 2);
    await goOnline(h, 'alice', { recovered: true });
    assert.deepEqual(lastSocket().sent, [{ type: 'auth', token: 'jwt-1', since: '7' }]);
    h.conn.close();
  });

  test('history() and request(): the app’s token, sentences for refusals, one refresh on a 401', async () => {
    const requests = [];
    let expired = true;
    const rest = async (url, init) => {
      requests.push({ url, method: init.method, auth: init.headers.Authorization, body: init.body });
      const { pathname } = new URL(url);
      if (pathname.endsWith('/api/rooms') && init.method === 'POST') {
        if (expired && init.headers.Authorization === 'Bearer jwt-1') {
          return new Response(JSON.stringify({ error: 'unauthorized', message: 'expired' }), { status: 401 });
        }
        return new Response(JSON.stringify({ error: 'room_exists', message: 'exists' }), { status: 409 });
      }
      if (pathname.includes('/members/')) return new Response(null, { status: 204 });
      return new Response(
        JSON.stringify({ messages: [msg(LOBBY, '20'), msg(LOBBY, '21')], has_more: true }),
        { status: 200 },
      );
    };
    const asked = [];
    const h = harness({
      rest,
      getAccessToken: async ({ refresh }) => {
        asked.push(refresh);
        return refresh ? 'jwt-2' : 'jwt-1';
      },
    });
    await goOnline(h);
    const page = await h.conn.history(LOBBY, { before: '99', limit: 2 });
    assert.equal(requests[0].url, 'https://chat.example.com/gate/api/rooms/lobby/messages?before=99&limit=2');
    assert.equal(requests[0].auth, 'Bearer jwt-1');
    assert.deepEqual(page.messages.map((m) => m.id), ['20', '21']);
    assert.equal(page.hasMore, true);
    assert.equal(h.conn.lastMessageId(LOBBY), null, 'an older page moves no cursor');

    // The newest page counts as seen: the same ids live are duplicates, and recovery starts after them.
    await h.conn.history(LOBBY);
    assert.equal(requests[1].url, 'https://chat.example.com/gate/api/rooms/lobby/messages');
    assert.equal(h.conn.lastMessageId(LOBBY), '21');
    lastSocket().receive(msg(LOBBY, '21'));
    lastSocket().receive(msg(LOBBY, '22'));
    assert.deepEqual(received(h), [[LOBBY, '22']]);

    await assert.rejects(h.conn.request('POST', '/api/rooms', { id: 'general', kind: 'public' }), (err) => {
      assert.ok(err instanceof WsgateHttpError);
      assert.equal(err.status, 409);
      assert.equal(err.code, 'room_exists');
      assert.equal(err.message, 'A room with that name already exists. Choose another name.');
      return true;
    });
    // A 401 got one refresh and one retry with the new token.
    assert.deepEqual(requests.slice(2).map((r) => r.auth), ['Bearer jwt-1', 'Bearer jwt-2']);
    assert.equal(requests[3].body, JSON.stringify({ id: 'general', kind: 'public' }));
    assert.deepEqual(asked, [false, false, false, false, true]);
    assert.equal(await h.conn.request('PUT', 'api/rooms/secret/members/bob'), null);
    assert.equal(requests.at(-1).method, 'PUT');
    h.conn.close();
  });
});
