/**
 * Session lifecycle end to end, in Chromium against the real binary: with access tokens of a few
 * seconds, the server warns each socket (`token_expiring`), the page refreshes its tokens over REST
 * (POST /api/token/refresh, rotating the refresh token) and hands the new access token to the live
 * socket (`refresh` → `refreshed`). The same socket stays online across several token lifetimes,
 * without a reconnect. Its own server, because short tokens would disturb chat.test.js's scenario.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, UserPage } from '../lib/browser.js';
import { freePort, WsgateServer } from '../lib/server.js';

const TOKEN_TTL_SECS = 6;

describe('token refresh on a live socket', () => {
  /** @type {WsgateServer} */ let server;
  /** @type {import('playwright-core').Browser} */ let browser;

  before(async () => {
    server = new WsgateServer({
      port: await freePort(),
      logName: 'wsgate-refresh.log',
      env: {
        WSGATE_JWT_TTL_SECS: String(TOKEN_TTL_SECS),
        WSGATE_TOKEN_EXPIRING_SECS: '4',
        WSGATE_JWT_LEEWAY_SECS: '0',
      },
    });
    await server.start();
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    await server?.dispose();
  });

  test('the page refreshes its token in band and stays online past several expiries', async () => {
    const dana = await UserPage.open(browser, server.url, { name: 'dana' });
    const refreshes = [];
    dana.page.on('request', (request) => {
      if (request.url().endsWith('/api/token/refresh')) refreshes.push(request.postDataJSON().refresh_token);
    });
    const frames = [];
    dana.page.on('websocket', (socket) => {
      socket.on('framesent', ({ payload }) => frames.push(['sent', JSON.parse(payload).type]));
      socket.on('framereceived', ({ payload }) => frames.push(['received', JSON.parse(payload).type]));
    });

    await dana.goto();
    await dana.register('dana', 'correct horse battery');
    // Two token lifetimes and then some: without refreshes the socket would have closed 4401.
    await dana.page.waitForTimeout((2 * TOKEN_TTL_SECS + 1) * 1000);

    assert.equal(await dana.status().getAttribute('data-status'), 'online');
    assert.equal(dana.sockets.length, 1, 'the page reconnected instead of refreshing in band');
    assert.ok(!dana.sockets[0].isClosed());
    assert.ok(refreshes.length >= 2, `only ${refreshes.length} refreshes`);
    assert.equal(new Set(refreshes).size, refreshes.length, 'a refresh token was presented twice');
    const refreshFrames = frames.filter(([, type]) => type === 'refresh' || type === 'refreshed' || type === 'token_expiring');
    assert.deepEqual(refreshFrames.slice(0, 3), [['received', 'token_expiring'], ['sent', 'refresh'], ['received', 'refreshed']]);

    await dana.say('still here');
    await dana.waitForMessage('still here', 'dana');
    assert.deepEqual(await dana.unexpectedErrors(), []);
    await dana.close();
  });
});
