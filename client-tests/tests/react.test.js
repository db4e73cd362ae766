/**
 * client/react.js in Chromium: the React test page (client-tests/react-app/, built here with
 * esbuild from npm, with React as the app's own dependency) served by the real wsgate binary as its
 * static folder, so that it runs under wsgate's CSP, same-origin with the API. Two users' pages:
 * `useWsgate` connects and closes on unmount, `useRoom` subscribes and unsubscribes, and gives the
 * room's history, live messages (each once, also across a reconnect), presence and typing.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { dropAndHold, launchBrowser, UserPage } from '../lib/browser.js';
import { buildReactApp, REACT_APP_DIR } from '../lib/react-build.js';
import { freePort, REPO, WsgateServer } from '../lib/server.js';

const PASSWORD = 'correct horse battery';

/** @type {WsgateServer} */ let server;
/** @type {import('playwright-core').Browser} */ let browser;
/** @type {import('esbuild').Metafile} */ let metafile;
/** @type {UserPage} */ let rhea;
/** @type {UserPage} */ let remy;
const tokens = {};

/** A page of `name` on the React app, signed in and online. */
async function signIn(name) {
  const user = await UserPage.open(browser, server.url, { name });
  const response = await user.page.goto(`${server.url}/`);
  assert.equal(response.status(), 200);
  await user.page.fill('#username', name);
  await user.page.fill('#password', PASSWORD);
  await user.page.click('#sign-in button[type="submit"]');
  await user.waitForStatus('online');
  return user;
}

/** The `[from, text]` of the messages the React page shows. */
function shown(user) {
  return user.page.$$eval('#messages li', (items) =>
    items.map((item) => [item.dataset.from, item.querySelector('.text').textContent]),
  );
}

function waitForShown(user, text) {
  return user.page.locator('#messages li', { hasText: text }).first().waitFor();
}

function waitForPresence(user, names) {
  return user.page.waitForFunction(
    (expected) => JSON.stringify([...document.querySelectorAll('#presence li')].map((li) => li.dataset.user)) === expected,
    JSON.stringify([...names].sort()),
  );
}

async function say(user, text) {
  await user.page.fill('#composer-input', text);
  await user.page.press('#composer-input', 'Enter');
}

async function assertClean(users) {
  for (const user of users) {
    const unexpected = await user.unexpectedErrors();
    user.errors.length = 0;
    assert.deepEqual(unexpected, [], `${user.name}'s page reported errors`);
  }
}

describe('client/react.js: useWsgate and useRoom on a React page', () => {
  before(async () => {
    metafile = await buildReactApp();
    server = new WsgateServer({
      port: await freePort(),
      logName: 'wsgate-react.log',
      env: { WSGATE_CLIENT_DIR: REACT_APP_DIR },
    });
    await server.start();
    browser = await launchBrowser();
    for (const name of ['rhea', 'remy']) tokens[name] = await server.account(name, PASSWORD);
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('the page is built from client/react.js with the app’s React, which react.js does not carry', async () => {
    const inputs = Object.keys(metafile.inputs);
    assert.ok(inputs.includes('client/react.js') && inputs.includes('client/wsgate.js'), inputs.join(' '));
    // One React, the app's (client-tests/node_modules), reached through react.js's bare import too.
    const reacts = inputs.filter((file) => /node_modules\/react\/index\.js$/.test(file));
    assert.deepEqual(reacts, ['client-tests/node_modules/react/index.js']);
    const imports = metafile.inputs['client/react.js'].imports.map((i) => i.path);
    assert.ok(imports.includes('client-tests/node_modules/react/index.js'), imports.join(' '));
    const source = readFileSync(path.join(REPO, 'client', 'react.js'), 'utf8');
    assert.match(source, /^import \{[^}]+\} from 'react';$/m);
    assert.doesNotMatch(source, /react-dom|createElement|jsx/);
  });

  test('two pages: presence, messages each once on both sides, typing for 3 s', async () => {
    rhea = await signIn('rhea');
    remy = await signIn('remy');
    await waitForPresence(rhea, ['remy', 'rhea']);
    await waitForPresence(remy, ['remy', 'rhea']);
    assert.equal(await rhea.page.getAttribute('#room', 'data-subscribed'), 'true');

    await say(rhea, 'Hello from React');
    // Remy answers what he has read: two pages' frames have no order between them otherwise.
    await waitForShown(remy, 'Hello from React');
    await say(remy, 'Hello back');
    for (const user of [rhea, remy]) await waitForShown(user, 'Hello back');
    for (const user of [rhea, remy]) {
      assert.deepEqual(await shown(user), [
        ['rhea', 'Hello from React'],
        ['remy', 'Hello back'],
      ]);
    }

    // useRoom's typing: shown on the other page, gone after the page's 3 s timer.
    await remy.page.waitForTimeout(2100); // remy's last typing frame (as he wrote) must be 2 s old to send another
    await rhea.recordText('#typing');
    await remy.page.type('#composer-input', 'typ');
    await rhea.page.locator('#typing', { hasText: 'remy is typing…' }).waitFor();
    const lasted = await rhea.shownFor('remy is typing…');
    assert.ok(lasted >= 2900 && lasted <= 4500, `typing shown for ${lasted} ms`);
    assert.equal(await rhea.page.textContent('#typing'), '');
    await remy.page.fill('#composer-input', '');
    await assertClean([rhea, remy]);
  });

  test('a page opened later gets the room’s history from useRoom', async () => {
    const late = await signIn('remy'); // remy's second page
    await waitForShown(late, 'Hello back');
    assert.deepEqual(await shown(late), [
      ['rhea', 'Hello from React'],
      ['remy', 'Hello back'],
    ]);
    await assertClean([late]);
    await late.close();
  });

  test('recovery: dropped by the server, the page shows what it missed once and in order', async () => {
    const release = await dropAndHold(server, rhea);
    const away = ['while you were away 1', 'while you were away 2', 'while you were away 3'];
    for (const text of away) {
      await say(remy, text);
      await waitForShown(remy, text);
    }
    await release();
    await say(remy, 'welcome back');
    await waitForShown(rhea, 'welcome back');
    const texts = (await shown(rhea)).map(([, text]) => text);
    assert.deepEqual(texts, ['Hello from React', 'Hello back', ...away, 'welcome back']);
    const auth = rhea.sent.findLast((frame) => frame.type === 'auth');
    assert.equal(typeof auth.since, 'string', 'lobby was recovered from its last id');
    assert.equal(rhea.received.findLast((frame) => frame.type === 'auth_ok').recovered, true);
    await assertClean([rhea, remy]);
  });

  test('another room: useRoom unsubscribes the old one; sign-out unmounts useWsgate, which closes', async () => {
    const created = await server.api('POST', '/api/rooms', {
      token: tokens.rhea,
      body: { id: 'react-room', kind: 'public', title: 'Hooks' },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await rhea.page.fill('#room-input', 'react-room');
    await rhea.page.click('#room-form button[type="submit"]');
    await rhea.page.locator('#room[data-room="react-room"][data-subscribed="true"]').waitFor();
    // rhea's only socket left lobby: remy sees her go.
    await waitForPresence(remy, ['remy']);
    const sent = rhea.sent.map((frame) => `${frame.type} ${frame.room ?? ''}`);
    assert.ok(sent.includes('unsubscribe lobby') && sent.includes('subscribe react-room'), sent.join(', '));
    await say(rhea, 'a room of my own');
    await waitForShown(rhea, 'a room of my own');
    assert.deepEqual(await shown(rhea), [['rhea', 'a room of my own']]);

    const socket = rhea.sockets.at(-1);
    await rhea.page.click('#sign-out');
    await rhea.page.locator('#sign-in').waitFor();
    if (!socket.isClosed()) await socket.waitForEvent('close', { timeout: 5000 });
    // Closed for good: no reconnect follows (give one a chance to show up).
    const count = rhea.sockets.length;
    await rhea.page.waitForTimeout(1500);
    assert.equal(rhea.sockets.length, count);
    await assertClean([rhea, remy]);
  });
});
