/**
 * client/wsgate.js on its own, in Node with a fake fetch and a fake WebSocket: the paths a live
 * server does not readily show (terminal closes, backoff growth, Retry-After, a refused token, the
 * in-band refresh the server does not send yet), and that every close code, close reason and HTTP
 * error code in docs/protocol.md has a sentence of its own. The real-browser behaviour is
 * chat.test.js's.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { afterEach, describe, test } from 'node:test';

// client/ has no package.json saying "module", so Node would read wsgate.js as CommonJS: load the
// source as an ES module through a data: URL instead. The module touches no browser-only global
// when given a baseUrl, fetch and WebSocket.
const source = readFileSync(new URL('../../client/wsgate.js', import.meta.url), 'utf8');
const wsgate = await import(`data:text/javascript;base64,${Buffer.from(source).toString('base64')}`);
const { backoffDelay, connect, describeClose, describeFrameError, describeHttpError, isTerminalClose, Status } = wsgate;

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
function fakeFetch(answers) {
  const calls = [];
  let n = 0;
  const fetch = async (url, init) => {
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
function harness({ answers = [{}], getAccessToken = async () => 'jwt-1', backoff = { initialMs: 20, maxMs: 80, jitter: 0 } } = {}) {
  FakeSocket.all = [];
  const { fetch, calls } = fakeFetch(answers);
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
  return { conn, calls, statuses, frames, errors };
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

/** Brings a harness's current attempt to `online`. */
async function goOnline(h, user = 'alice') {
  await until(() => lastSocket() && h.conn.status.state === Status.CONNECTING);
  lastSocket().open();
  lastSocket().receive({ type: 'auth_ok', user, expires_at: 2000000000, users: [user, 'bob'] });
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
    for (const code of [1001, 1006, 1009, 1011, 1013, 4408, 4429]) assert.equal(isTerminalClose(code), false, String(code));
    assert.match(describeClose(1006), /connection was lost/);
  });

  test('every HTTP error code of docs/protocol.md has its own sentence', () => {
    const routes = protocol.split('\n').filter((line) => /^\| (`(POST|GET) |anything else)/.test(line));
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
    for (const code of ['rate_limited', 'too_long', 'bad_request']) {
      assert.doesNotMatch(describeFrameError(code), /refused that message/, code);
    }
  });
});
