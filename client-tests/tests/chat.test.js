/**
 * End to end: the demo chat in Debian's headless Chromium against the real wsgate binary.
 *
 * One server and one browser for the whole file; each user is a page in its own browser context.
 * The tests run in order and build on each other like a session would (alice and bob sign up, chat,
 * live through a server restart, then bob signs out), so a failure early on explains later ones.
 * Every test ends by checking its pages for console errors, uncaught exceptions, CSP violations
 * and dialogs; the only console errors ever tolerated are the browser's own network messages, and
 * only in the tests that make requests fail on purpose.
 */

import assert from 'node:assert/strict';
import { readdirSync, rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, NETWORK_NOISE, UserPage } from '../lib/browser.js';
import { ARTIFACTS, freePort, WsgateServer } from '../lib/server.js';

const CSP =
  "default-src 'self'; connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const PASSWORD = 'correct horse battery';
const ALICE = 'alice';
const BOB = 'Bob_2';

/** @type {WsgateServer} */ let server;
/** @type {import('playwright-core').Browser} */ let browser;
/** @type {UserPage} */ let alice;
/** @type {UserPage} */ let bob;
/** Every page opened, so that a failure leaves a screenshot of each. */
const pages = [];

async function openUser(name, options = {}) {
  const user = await UserPage.open(browser, server.url, { name, ...options });
  pages.push(user);
  return user;
}

/**
 * Runs a test body; on failure saves a screenshot of every open page (target/browser/failed-*.png)
 * before reporting, so that what the browser showed can be looked at.
 */
function step(name, body) {
  test(name, async () => {
    try {
      await body();
    } catch (err) {
      const slug = name.replace(/[^a-z0-9]+/gi, '-').slice(0, 40);
      for (const user of pages) await user.screenshot(`failed-${slug}-${user.name}.png`).catch(() => {});
      throw err;
    }
  });
}

/** Fails on anything the pages reported since the last check (then starts afresh). */
async function assertClean(users, allowed = []) {
  for (const user of users) {
    const unexpected = await user.unexpectedErrors(allowed);
    user.errors.length = 0;
    assert.deepEqual(unexpected, [], `${user.name}'s page reported errors`);
    assert.deepEqual(user.dialogs, [], `${user.name}'s page opened dialogs`);
  }
}

describe('the wsgate demo chat in Chromium', () => {
  before(async () => {
    // Screenshots of an earlier run's failures would only mislead.
    mkdirSync(ARTIFACTS, { recursive: true }); // a fresh clone has no target/ yet
    for (const file of readdirSync(ARTIFACTS)) if (file.startsWith('failed-')) rmSync(path.join(ARTIFACTS, file));
    // The restart step needs accounts and sessions to survive a restart, as they do in production:
    // wsgate binds every token to its account, and the embedded store forgets accounts on restart.
    // So this suite runs on the MongoDB backend (SecantusDB, started by scripts/browser-tests.sh).
    const mongo = process.env.WSGATE_BROWSER_MONGODB_URI;
    assert.ok(mongo, 'WSGATE_BROWSER_MONGODB_URI is not set: run scripts/browser-tests.sh');
    server = new WsgateServer({
      port: await freePort(),
      env: { WSGATE_MONGODB_URI: mongo, WSGATE_MONGODB_DB: `browser_chat_${process.pid}_${Date.now()}` },
    });
    await server.start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  step('loads under the CSP with no console errors, and its theme follows the system', async () => {
    const visitor = await openUser('visitor');
    const response = await visitor.goto();
    assert.equal(response.status(), 200);
    assert.equal(response.headers()['content-security-policy'], CSP);
    const page = visitor.page;

    // Nothing inline for the CSP to block: every script and style is a file.
    const inline = await page.evaluate(() => ({
      scripts: [...document.scripts].filter((s) => !s.src).length,
      styles: document.querySelectorAll('style, [style]').length,
      handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).length,
    }));
    assert.deepEqual(inline, { scripts: 0, styles: 0, handlers: 0 });
    assert.equal(await page.locator('#login-form').isVisible(), true);
    assert.equal(await page.locator('#chat-view').isVisible(), false);

    // Light by default here (the context emulates a light system); the toggle switches to dark and
    // back, and going back to the system's choice drops the override.
    const background = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const light = await background();
    await page.click('#theme-toggle');
    assert.equal(await page.getAttribute('html', 'data-theme'), 'dark');
    assert.equal(await page.getAttribute('#theme-toggle', 'aria-pressed'), 'true');
    assert.notEqual(await background(), light);
    await page.click('#theme-toggle');
    assert.equal(await page.getAttribute('html', 'data-theme'), null);
    assert.equal(await background(), light);
    await page.emulateMedia({ colorScheme: 'dark' });
    // The system's change reaches the page as a matchMedia event: wait for the toggle to follow.
    await page.locator('#theme-toggle[aria-pressed="true"]').waitFor();
    assert.notEqual(await background(), light);

    await assertClean([visitor]);
    await visitor.close();
  });

  step("the forms show the server's errors as sentences, and work from the keyboard", async () => {
    const carol = await openUser('carol');
    await carol.goto();
    const page = carol.page;

    await page.fill('#register-username', 'no spaces please');
    await page.fill('#register-password', PASSWORD);
    await page.click('#register-form button[type="submit"]');
    await page.locator('#register-error', { hasText: 'Usernames are 3 to 32 characters' }).waitFor();
    assert.equal(await page.getAttribute('#register-username', 'aria-invalid'), 'true');

    await page.fill('#register-username', 'carol');
    await page.fill('#register-password', 'short');
    await page.click('#register-form button[type="submit"]');
    await page.locator('#register-error', { hasText: 'Passwords are 8 to 72 bytes' }).waitFor();

    await carol.register('carol', PASSWORD);
    await page.click('#sign-out');
    await carol.waitForStatus('signed_out');

    await page.fill('#register-username', 'CAROL');
    await page.fill('#register-password', PASSWORD);
    await page.click('#register-form button[type="submit"]');
    await page.locator('#register-error', { hasText: 'That username is already taken' }).waitFor();

    await page.fill('#login-username', 'carol');
    await page.fill('#login-password', 'wrong password');
    await page.press('#login-password', 'Enter');
    await page.locator('#login-error', { hasText: 'Unknown username or wrong password.' }).waitFor();

    // Keyboard only: after a reload, Tab from the top of the page to the sign-in form, type, Enter.
    await page.reload();
    await carol.waitForStatus('signed_out');
    for (let i = 0; i < 10 && (await page.evaluate(() => document.activeElement?.id)) !== 'login-username'; i++) {
      await page.keyboard.press('Tab');
    }
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'login-username');
    await page.keyboard.type('carol');
    await page.keyboard.press('Tab');
    await page.keyboard.type(PASSWORD);
    await page.keyboard.press('Enter');
    await carol.waitForStatus('online');
    // Signed in, the focus is in the message box, ready to type.
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'composer-input');
    await page.click('#sign-out');
    await carol.waitForStatus('signed_out');

    // The refused requests above make Chromium log "Failed to load resource: … 4xx": expected here.
    await assertClean([carol], NETWORK_NOISE);
    await carol.close();
  });

  step('two users sign up, see each other online, and their messages cross both ways in order', async () => {
    alice = await openUser('alice');
    bob = await openUser('bob');
    await Promise.all([alice.goto(), bob.goto()]);
    await alice.register(ALICE, PASSWORD);
    await bob.register(BOB, PASSWORD);
    await alice.waitForOnline([ALICE, BOB]);
    await bob.waitForOnline([ALICE, BOB]);
    await alice.page.locator('#messages li.notice-line', { hasText: `${BOB} joined.` }).waitFor();

    const conversation = [
      [ALICE, 'Hi Bob! Did the restart go well?'],
      [BOB, 'Hello Alice. It did: my page reconnected by itself.'],
      [ALICE, 'Nice. Tickets are single-use, so it minted a fresh one.'],
      [BOB, 'And the JWT never went into the URL.'],
      [ALICE, 'Multi-line works too:\nShift+Enter makes a new line.'],
    ];
    for (const [from, text] of conversation) {
      const user = from === ALICE ? alice : bob;
      if (text.includes('\n')) {
        const [first, second] = text.split('\n');
        await user.page.fill('#composer-input', first);
        await user.page.press('#composer-input', 'Shift+Enter');
        await user.page.type('#composer-input', second);
        await user.page.press('#composer-input', 'Enter');
      } else {
        await user.say(text);
      }
      // Wait for the echo before the other side answers: the order is then the conversation's.
      await Promise.all([alice.waitForMessage(text, from), bob.waitForMessage(text, from)]);
    }
    assert.deepEqual(await alice.messages(), conversation);
    assert.deepEqual(await bob.messages(), conversation);

    // Own messages are marked, on each side its own.
    const owners = (user) => user.page.$$eval('#messages li.message', (items) => items.map((i) => i.dataset.own === 'true'));
    assert.deepEqual(await alice.page.$$eval('#messages li.message.own', (items) => items.length), 3);
    assert.deepEqual(await owners(bob), conversation.map(([from]) => from === BOB));
    // Local time on every message, with the machine-readable instant.
    const time = await alice.page.$eval('#messages li.message time', (node) => [node.textContent, node.getAttribute('datetime')]);
    assert.match(time[0], /^\d{2}:\d{2}$/);
    assert.ok(!Number.isNaN(Date.parse(time[1])));
    // The message box is emptied after sending, and the counter with it.
    assert.equal(await alice.page.inputValue('#composer-input'), '');
    assert.equal(await alice.page.textContent('#composer-counter'), '0 / 2000');

    await assertClean([alice, bob]);
  });

  step('a message that looks like HTML shows as literal text and runs nothing', async () => {
    const attack = '<img src=x onerror=alert(1)><script>alert(2)</script>';
    await bob.say(attack);
    await Promise.all([alice.waitForMessage(attack, BOB), bob.waitForMessage(attack, BOB)]);
    for (const user of [alice, bob]) {
      assert.equal(await user.page.locator('#messages img, #messages script').count(), 0);
      const shown = await user.page.locator('#messages li.message .message-text').last().textContent();
      assert.equal(shown, attack);
    }
    // Give a broken image time to fire its onerror, had one been created.
    await alice.page.waitForTimeout(300);
    assert.deepEqual(alice.dialogs, []);
    assert.deepEqual(bob.dialogs, []);
    await assertClean([alice, bob]);
  });

  step('screenshots of the chat with both users (light, dark, phone)', async () => {
    await alice.screenshot('chat-two-users.png');
    await alice.page.emulateMedia({ colorScheme: 'dark' });
    await alice.screenshot('chat-two-users-dark.png');
    await alice.page.emulateMedia({ colorScheme: 'light' });
    await bob.page.setViewportSize({ width: 390, height: 760 });
    await bob.screenshot('chat-phone.png');
    // Readable on a phone: nothing sticks out sideways.
    const overflow = await bob.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone's viewport`);
    await bob.page.setViewportSize({ width: 1100, height: 720 });
    await assertClean([alice, bob]);
  });

  step('the message box counts to 2000 and shows too-long and rate-limit errors inline', async () => {
    const page = bob.page;
    const before = (await bob.messages()).length;
    await page.fill('#composer-input', 'x'.repeat(2001));
    assert.equal(await page.textContent('#composer-counter'), '2001 / 2000');
    assert.equal(await page.getAttribute('#composer-counter', 'data-over'), 'true');
    await page.press('#composer-input', 'Enter');
    await page.locator('#composer-error', { hasText: 'at most 2000 characters' }).waitFor();
    // Refused before sending: the text stays in the box, nothing reached the chat.
    assert.equal((await page.inputValue('#composer-input')).length, 2001);

    // 2000 characters exactly is fine; emoji count as one character each, as the server counts.
    await page.fill('#composer-input', '🙂'.repeat(2000));
    assert.equal(await page.textContent('#composer-counter'), '2000 / 2000');
    await page.press('#composer-input', 'Enter');
    await bob.waitForMessage('🙂'.repeat(2000), BOB);
    assert.equal((await bob.messages()).length, before + 1);

    // Over the server's per-socket rate (10 messages per second, also the burst): send 25 at once.
    await page.evaluate(() => {
      const input = document.getElementById('composer-input');
      const form = document.getElementById('composer');
      for (let i = 0; i < 25; i++) {
        input.value = `burst ${i}`;
        form.requestSubmit();
      }
    });
    await page.locator('#composer-error', { hasText: 'You are sending messages too fast' }).waitFor();
    // The refused text is given back rather than lost.
    assert.match(await page.inputValue('#composer-input'), /^burst \d+$/);
    await bob.waitForMessage('burst 0', BOB);
    await page.fill('#composer-input', '');
    // Let the socket's allowance refill before the next test sends again.
    await page.waitForTimeout(1100);
    assert.equal(await bob.status().getAttribute('data-status'), 'online');
    await assertClean([alice, bob]);
  });

  step('after a server restart both pages reconnect by themselves and chat on without a reload', async () => {
    for (const user of [alice, bob]) await user.page.evaluate(() => (window.__sameDocument = true));
    await server.stop();

    for (const user of [alice, bob]) {
      // Reconnecting, with the reason and a countdown to the next attempt.
      await user.page.waitForFunction(
        () =>
          document.getElementById('status').dataset.status === 'reconnecting' &&
          /^in \d+ s$/.test(document.getElementById('status-countdown').textContent),
        null,
        { timeout: 10000 },
      );
      await user.page.locator('#banner-text', { hasText: 'The server is restarting.' }).waitFor();
      // Presence while disconnected is a memory, and shown as one.
      assert.equal(await user.page.getAttribute('#users-pane', 'data-stale'), 'true');
    }

    await server.start(); // same port, secret and database: the pages' tokens are still good
    await Promise.all([alice.waitForStatus('online', 30000), bob.waitForStatus('online', 30000)]);
    for (const user of [alice, bob]) {
      assert.equal(await user.page.evaluate(() => window.__sameDocument), true, `${user.name}'s page reloaded`);
      assert.equal(await user.page.locator('#connection-banner').isVisible(), false);
      assert.equal(await user.page.getAttribute('#users-pane', 'data-stale'), 'false');
    }
    await alice.waitForOnline([ALICE, BOB]);
    await bob.waitForOnline([ALICE, BOB]);

    await alice.say('Still here after the restart?');
    await bob.waitForMessage('Still here after the restart?', ALICE);
    await bob.say('Yes, no reload needed.');
    await alice.waitForMessage('Yes, no reload needed.', BOB);

    // While the server was down Chromium logged the refused connections: expected here only.
    await assertClean([alice, bob], NETWORK_NOISE);
  });

  step('signing out closes the socket, and the other user sees them leave', async () => {
    const socket = bob.sockets.at(-1);
    assert.ok(socket && !socket.isClosed(), "bob's page has an open socket");
    await bob.page.click('#sign-out');
    await bob.waitForStatus('signed_out');
    await bob.page.locator('#auth-notice', { hasText: 'You have signed out.' }).waitFor();
    assert.equal(await bob.page.locator('#login-form').isVisible(), true);
    if (!socket.isClosed()) await socket.waitForEvent('close', { timeout: 5000 });

    await alice.waitForOnline([ALICE]);
    await alice.page.locator('#messages li.notice-line', { hasText: `${BOB} left.` }).waitFor();

    // Signed out means staying out: no reconnect attempt follows.
    const opened = bob.sockets.length;
    await bob.page.waitForTimeout(1500);
    assert.equal(bob.sockets.length, opened);
    assert.equal(await alice.status().getAttribute('data-status'), 'online');
    await assertClean([alice, bob]);
  });
});
