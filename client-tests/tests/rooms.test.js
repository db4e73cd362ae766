/**
 * Contract v2 end to end: the demo chat's rooms, direct messages, typing, recovery and history, in
 * Debian's headless Chromium against the real wsgate binary.
 *
 * One server (embedded store, the server API on, a per-socket message rate high enough for the
 * history test, a recovery window of 20 messages per room so that both outcomes of a recovery can
 * be shown) and one browser for the file; each user is a page in its own context. The steps build
 * on each other like a session (alice, bob and carol sign up, a private room, a conversation, a
 * reconnect), so a failure early on explains later ones. Nothing waits a fixed time except to watch
 * a timer of the page itself ("… is typing" for 3 s); the rest waits on the DOM.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { dropAndHold, launchBrowser, UserPage } from '../lib/browser.js';
import { freePort, WsgateServer } from '../lib/server.js';

const PASSWORD = 'correct horse battery';
/** WSGATE_RECOVERY_MESSAGES of this server: more messages than this while away cannot be replayed. */
const RECOVERY_MESSAGES = 20;

/** @type {WsgateServer} */ let server;
/** @type {import('playwright-core').Browser} */ let browser;
/** @type {UserPage} */ let alice;
/** @type {UserPage} */ let bob;
/** @type {UserPage} */ let carol;
const pages = [];

async function openUser(name) {
  const user = await UserPage.open(browser, server.url, { name });
  pages.push(user);
  await user.goto();
  await user.register(name, PASSWORD);
  return user;
}

/** A test body that leaves a screenshot of every page when it fails (target/browser/failed-rooms-*). */
function step(name, body) {
  test(name, async () => {
    try {
      await body();
    } catch (err) {
      const slug = name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40);
      for (const user of pages) await user.screenshot(`failed-rooms-${slug}-${user.name}.png`).catch(() => {});
      throw err;
    }
  });
}

async function assertClean(users) {
  for (const user of users) {
    const unexpected = await user.unexpectedErrors();
    user.errors.length = 0;
    assert.deepEqual(unexpected, [], `${user.name}'s page reported errors`);
    assert.deepEqual(user.dialogs, [], `${user.name}'s page opened dialogs`);
  }
}

/** Fails if the texts shown have a duplicate id, or if `expected` is not exactly the end of them, in order. */
async function assertEndsWith(user, expected, what) {
  const entries = await user.messageEntries();
  const ids = entries.map(([, , id]) => id);
  assert.equal(new Set(ids).size, ids.length, `${user.name} shows a message twice (${what})`);
  const texts = entries.map(([, text]) => text);
  assert.deepEqual(texts.slice(-expected.length), expected, `${user.name}'s ${what}`);
  assert.equal(texts.filter((text) => expected.includes(text)).length, expected.length, `${user.name}'s ${what}: a text shows twice`);
}

/**
 * How each room came back after frame number `from` of `user`'s sockets, as `[room, recovered]`:
 * lobby from the auth frame's `since` (`auth_ok.recovered`), every other room from its `subscribe`
 * with `since` (`subscribed.recovered`). Also checks that the page asked for exactly that.
 */
function recoveries(user, from) {
  const frames = user.received.slice(from);
  const auth = user.sent.findLast((frame) => frame.type === 'auth');
  assert.equal(typeof auth.since, 'string', 'the auth frame carries lobby’s last id');
  return [
    ...frames.filter((frame) => frame.type === 'auth_ok').map((frame) => ['lobby', frame.recovered]),
    ...frames.filter((frame) => frame.type === 'subscribed').map((frame) => [frame.room, frame.recovered]),
  ];
}

describe('rooms, direct messages, typing, recovery and history in the demo chat', () => {
  before(async () => {
    server = new WsgateServer({
      port: await freePort(),
      logName: 'wsgate-rooms.log',
      env: { WSGATE_RATE_MESSAGES_PER_SEC: '1000', WSGATE_RECOVERY_MESSAGES: String(RECOVERY_MESSAGES) },
    });
    await server.start();
    browser = await launchBrowser();
    alice = await openUser('alice');
    bob = await openUser('bob');
    carol = await openUser('carol');
    await alice.waitForOnline(['alice', 'bob', 'carol']);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  step('a private room is invisible to a non-member, and readable by the members the owner adds', async () => {
    // Alice creates it with the form; she is its owner and first member, and is taken into it.
    await alice.page.click('#room-create summary');
    await alice.page.fill('#room-create-id', 'secret-plans');
    await alice.page.fill('#room-create-title', 'Surprise party');
    await alice.page.check('#room-create-private');
    await alice.page.click('#room-create-form button[type="submit"]');
    await alice.page.locator('#messages-title[data-conversation="room:secret-plans"]').waitFor();
    await alice.page.locator('#conversation-sub', { hasText: 'Surprise party · Private room · owner alice' }).waitFor();
    await alice.say('Only members can read this.');
    await alice.waitForMessage('Only members can read this.', 'alice');

    // Not a member: not listed, and over REST the same 404 as a room that does not exist.
    assert.ok(!(await bob.refreshRooms()).includes('secret-plans'));
    assert.ok(!(await carol.refreshRooms()).includes('secret-plans'));
    const carolToken = await server.account('carol', PASSWORD);
    const hidden = await server.api('GET', '/api/rooms/secret-plans', { token: carolToken });
    const missing = await server.api('GET', '/api/rooms/no-such-room', { token: carolToken });
    assert.equal(hidden.status, 404);
    assert.deepEqual(hidden.body, missing.body, 'a hidden room is told apart from a missing one');
    assert.equal(hidden.body.error, 'unknown_room');
    assert.equal((await server.api('GET', '/api/rooms/secret-plans/messages', { token: carolToken })).status, 404);
    const listed = await server.api('GET', '/api/rooms', { token: carolToken });
    assert.ok(!listed.body.rooms.some((room) => room.id === 'secret-plans'));

    // The owner adds bob: now he sees it, and reads what was said before he came.
    await alice.page.fill('#member-user', 'bob');
    await alice.page.click('#member-form button[type="submit"]');
    await alice.page.locator('#messages li.notice-line', { hasText: 'bob is now a member of this room.' }).waitFor();
    await alice.page.locator('#conversation-sub', { hasText: 'members: alice, bob' }).waitFor();
    assert.ok((await bob.refreshRooms()).includes('secret-plans'));
    await bob.openRoom('secret-plans');
    await bob.waitForMessage('Only members can read this.', 'alice');
    // And what is said from now on, live.
    await alice.waitForOnline(['alice', 'bob']); // the room's presence
    await bob.say('Got it, I will bring the cake.');
    await alice.waitForMessage('Got it, I will bring the cake.', 'bob');
    await alice.say('Perfect.');
    await bob.waitForMessage('Perfect.', 'alice');
    assert.deepEqual(await bob.messages(), [
      ['alice', 'Only members can read this.'],
      ['bob', 'Got it, I will bring the cake.'],
      ['alice', 'Perfect.'],
    ]);

    // Carol's page never got a frame of it, nor a sign of it in its list.
    assert.ok(!(await carol.refreshRooms()).includes('secret-plans'));
    assert.equal(carol.received.filter((frame) => JSON.stringify(frame).includes('secret-plans')).length, 0);
    assert.equal(await carol.page.locator('text=Only members can read this.').count(), 0);
    await assertClean([alice, bob, carol]);
  });

  step('a direct conversation between two users, out of everyone else’s sight', async () => {
    for (const user of [alice, bob]) await user.openRoom('lobby');
    // Alice starts it from the Online list.
    await alice.page.click('#users li[data-user="bob"] .user-dm');
    await alice.page.locator('#messages-title[data-conversation="direct:bob"]').waitFor();
    await alice.say('Bob, can you keep a secret?');
    await alice.waitForMessage('Bob, can you keep a secret?', 'alice');

    // Bob, in the lobby, sees a new conversation with one unread message, and opens it.
    const unread = bob.page.locator('#directs button[data-user="alice"] .unread');
    await unread.waitFor();
    assert.equal(await unread.textContent(), '1');
    await bob.page.click('#directs button[data-user="alice"]');
    await bob.page.locator('#messages-title[data-conversation="direct:alice"]').waitFor();
    await bob.waitForMessage('Bob, can you keep a secret?', 'alice');
    assert.equal(await unread.count(), 0);
    await bob.say('Always.');
    // Each socket gets its own copy of a direct message; bob's may come after alice's.
    await Promise.all([alice.waitForMessage('Always.', 'bob'), bob.waitForMessage('Always.', 'bob')]);
    const conversation = [
      ['alice', 'Bob, can you keep a secret?'],
      ['bob', 'Always.'],
    ];
    assert.deepEqual(await alice.messages(), conversation);
    assert.deepEqual(await bob.messages(), conversation);
    // The lobby did not get them, and carol got no direct frame at all.
    await alice.openRoom('lobby');
    assert.equal(await alice.page.locator('#messages li.message', { hasText: 'keep a secret' }).count(), 0);
    assert.equal(carol.received.filter((frame) => frame.type === 'direct').length, 0);
    await assertClean([alice, bob, carol]);
  });

  step('"… is typing" shows while the other user types, and goes 3 s after', async () => {
    await bob.openRoom('lobby');
    await alice.openRoom('lobby');
    assert.equal(await alice.page.textContent('#typing'), '');
    await alice.recordText('#typing');
    // One burst of keys: one `typing` frame (the next may go 2 s later; this takes a fraction of that).
    await bob.page.type('#composer-input', 'I am typ', { delay: 20 });
    await alice.page.locator('#typing', { hasText: 'bob is typing…' }).waitFor();
    // Only the others see it; the server relays nobody's own typing.
    assert.equal(await bob.page.textContent('#typing'), '');
    assert.equal(await carol.page.textContent('#typing'), 'bob is typing…');
    // The page's own 3 s timer runs out, measured in the page (a loaded machine may fire it late).
    const lasted = await alice.shownFor('bob is typing…');
    assert.ok(lasted >= 2900 && lasted <= 4500, `the indicator lasted ${lasted} ms`);
    assert.equal(await alice.page.textContent('#typing'), '');
    await bob.page.fill('#composer-input', '');
    await assertClean([alice, bob, carol]);
  });

  step('recovery: dropped by the server, away while others talk, back with every message once and in order', async () => {
    // Bob opens a public room; alice is in it too, but looks at the lobby.
    await bob.page.click('#room-create summary');
    await bob.page.fill('#room-create-id', 'general');
    await bob.page.click('#room-create-form button[type="submit"]');
    await bob.page.locator('#messages-title[data-conversation="room:general"]').waitFor();
    assert.ok((await alice.refreshRooms()).includes('general'));
    await alice.openRoom('general');
    await bob.say('general: before');
    await alice.waitForMessage('general: before', 'bob');
    await alice.openRoom('lobby');
    await bob.openRoom('lobby');
    await bob.say('lobby: before');
    await alice.waitForMessage('lobby: before', 'bob');

    // Within the recovery window: the server replays what alice missed, in both rooms.
    const framesBefore = alice.received.length;
    let release = await dropAndHold(server, alice);
    const lobbyAway = Array.from({ length: 5 }, (_, i) => `lobby: while away ${i + 1}`);
    const generalAway = Array.from({ length: 4 }, (_, i) => `general: while away ${i + 1}`);
    await bob.sendAll(lobbyAway);
    await bob.openRoom('general');
    await bob.sendAll(generalAway);
    await release();
    await alice.waitForMessage(lobbyAway.at(-1), 'bob');
    // Live messages after the reconnect come after the replayed ones.
    await bob.openRoom('lobby');
    await bob.say('lobby: after');
    await alice.waitForMessage('lobby: after', 'bob');
    await assertEndsWith(alice, ['lobby: before', ...lobbyAway, 'lobby: after'], 'lobby');
    await alice.openRoom('general');
    await assertEndsWith(alice, ['general: before', ...generalAway], 'general room');
    assert.deepEqual(
      recoveries(alice, framesBefore),
      [['lobby', true], ['secret-plans', true], ['general', true]],
      'every room was recovered, not reloaded',
    );

    // Past the window (more than WSGATE_RECOVERY_MESSAGES): not replayable, so the page reloads the
    // room's history over REST instead; the result is the same, every message once and in order.
    await alice.openRoom('lobby');
    const framesBefore2 = alice.received.length;
    release = await dropAndHold(server, alice);
    const many = Array.from({ length: RECOVERY_MESSAGES + 5 }, (_, i) => `lobby: a lot while away ${i + 1}`);
    await bob.sendAll(many);
    await release();
    await alice.waitForMessage(many.at(-1), 'bob');
    await alice.page.locator('#messages li.notice-line', { hasText: 'The latest messages were reloaded.' }).waitFor();
    await bob.say('lobby: after the reload');
    await alice.waitForMessage('lobby: after the reload', 'bob');
    await assertEndsWith(alice, [...many, 'lobby: after the reload'], 'lobby after a reload');
    assert.deepEqual(recoveries(alice, framesBefore2), [['lobby', false], ['secret-plans', true], ['general', true]]);
    await assertClean([alice, bob, carol]);
  });

  step('history: "Load older messages" pages back, and every message shows once, in order', async () => {
    await bob.page.click('#room-create summary');
    await bob.page.fill('#room-create-id', 'archive');
    await bob.page.click('#room-create-form button[type="submit"]');
    await bob.page.locator('#messages-title[data-conversation="room:archive"]').waitFor();
    const texts = Array.from({ length: 120 }, (_, i) => `archived ${String(i + 1).padStart(3, '0')}`);
    await bob.sendAll(texts);

    // Carol comes in afterwards: the newest 50, then two pages back, to the first message.
    assert.ok((await carol.refreshRooms()).includes('archive'));
    await carol.openRoom('archive');
    await carol.waitForMessage(texts.at(-1), 'bob');
    assert.deepEqual((await carol.messages()).map(([, text]) => text), texts.slice(-50));
    const older = carol.page.locator('#load-older');
    for (const shown of [100, 120]) {
      await older.click();
      await carol.page.waitForFunction((n) => document.querySelectorAll('#messages li.message').length === n, shown);
    }
    assert.deepEqual((await carol.messages()).map(([, text]) => text), texts);
    const ids = (await carol.messageEntries()).map(([, , id]) => id);
    assert.equal(new Set(ids).size, texts.length);
    // The start of the room is reached: no more button.
    await older.waitFor({ state: 'hidden' });
    await assertClean([alice, bob, carol]);
  });
});
