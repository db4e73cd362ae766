/**
 * The demo chat through nginx (deploy/nginx.conf, as it is) in front of three wsgate nodes on one
 * Redis and one MongoDB-wire server, in Debian's headless Chromium. alice's page goes through nginx;
 * bob's page talks to another node directly, so every message between them crosses nodes. Then the
 * node that holds alice's socket is killed with SIGKILL: her page reconnects through nginx to a
 * live node and recovers exactly what bob said meanwhile (once), and the chat goes on.
 *
 * Which node holds a socket is read from the nodes' own logs ("socket authenticated" with the
 * user); everything else waits on the DOM. Nothing waits a fixed time.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { launchBrowser, NETWORK_NOISE, UserPage } from '../lib/browser.js';
import { ARTIFACTS, freePort, REPO, WsgateServer } from '../lib/server.js';

const PASSWORD = 'correct horse battery';
const suffix = Date.now().toString(36).slice(-5);
const ALICE = `alice_${suffix}`;
const BOB = `bob_${suffix}`;

/** @type {import('node:child_process').ChildProcess} */ let redis;
/** @type {import('node:child_process').ChildProcess} */ let nginx;
/** @type {WsgateServer[]} */ const nodes = [];
/** @type {import('playwright-core').Browser} */ let browser;
/** @type {UserPage} */ let alice;
/** @type {UserPage} */ let bob;
let front;

/** Resolves once something on `port` answers PING with PONG. */
async function redisReady(port) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const pong = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('connect', () => socket.write('PING\r\n'));
      socket.on('data', (data) => {
        socket.destroy();
        resolve(String(data).startsWith('+PONG'));
      });
      socket.on('error', () => resolve(false));
    });
    if (pong) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('redis-server did not answer');
}

/** Resolves once GET /api/health through nginx answers 200. */
async function frontReady(url) {
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const status = await fetch(`${url}/api/health`, { headers: { Connection: 'close' } })
      .then((response) => response.status)
      .catch(() => 0);
    if (status === 200) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('nginx did not come up');
}

/** The node whose log says it authenticated a socket of `user` (the newest such node). */
async function nodeOf(user, skip = []) {
  // `user=NAME` as a whole field: quoted, or followed by a space or the end of the line.
  const field = new RegExp(`user=(?:"${user}"|${user}(?:\\s|$))`);
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const found = nodes.findIndex(
      (node, at) =>
        !skip.includes(at) &&
        readFileSync(node.log.path, 'utf8')
          .split('\n')
          .some((line) => line.includes('socket authenticated') && field.test(line)),
    );
    if (found >= 0) return found;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`no node logged ${user}'s socket`);
}

describe('the demo chat through nginx in front of three nodes', { concurrency: false }, () => {
  before(async () => {
    const redisPort = await freePort();
    redis = spawn(process.env.WSGATE_TEST_REDIS_SERVER ?? 'redis-server', [
      '--bind', '127.0.0.1', '--port', String(redisPort), '--save', '', '--appendonly', 'no',
    ], { stdio: 'ignore' });
    await redisReady(redisPort);

    const frontPort = await freePort();
    front = `http://127.0.0.1:${frontPort}`;
    const ports = [await freePort(), await freePort(), await freePort()];
    const origins = [front, ...ports.map((port) => `http://127.0.0.1:${port}`)].join(',');
    const db = `browser_cluster_${suffix}`;
    for (const [at, port] of ports.entries()) {
      const node = new WsgateServer({
        port,
        logName: `cluster-node-${at}.log`,
        env: {
          WSGATE_REDIS_URL: `redis://127.0.0.1:${redisPort}`,
          WSGATE_MONGODB_URI: process.env.WSGATE_BROWSER_MONGODB_URI,
          WSGATE_MONGODB_DB: db,
          WSGATE_TRUSTED_PROXIES: '127.0.0.1',
          WSGATE_ALLOWED_ORIGINS: origins,
          WSGATE_NODE_TIMEOUT_SECS: '2',
        },
      });
      await node.start();
      nodes.push(node);
    }

    const dir = path.join(ARTIFACTS, 'nginx');
    mkdirSync(dir, { recursive: true });
    copyFileSync(path.join(REPO, 'deploy', 'nginx.conf'), path.join(dir, 'nginx.conf'));
    writeFileSync(path.join(dir, 'wsgate-listen.conf'), `listen 127.0.0.1:${frontPort};\n`);
    writeFileSync(path.join(dir, 'wsgate-upstreams.conf'), ports.map((port) => `server 127.0.0.1:${port};\n`).join(''));
    nginx = spawn(process.env.WSGATE_TEST_NGINX ?? 'nginx', ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], {
      stdio: 'ignore',
    });
    await frontReady(front);
    browser = await launchBrowser();
  });

  after(async () => {
    for (const user of [alice, bob]) await user?.close().catch(() => {});
    await browser?.close();
    nginx?.kill('SIGKILL');
    for (const node of nodes) await node.stop().catch(() => {});
    redis?.kill('SIGKILL');
  });

  test('messages cross nodes, and a killed node’s user reconnects through nginx and recovers exactly', async () => {
    alice = await UserPage.open(browser, front, { name: 'alice' });
    await alice.goto();
    await alice.register(ALICE, PASSWORD);
    const aliceNode = await nodeOf(ALICE);
    const bobNode = (aliceNode + 1) % nodes.length;
    bob = await UserPage.open(browser, nodes[bobNode].url, { name: 'bob' });
    await bob.goto();
    await bob.register(BOB, PASSWORD);
    await alice.waitForOnline([ALICE, BOB]);
    await bob.waitForOnline([ALICE, BOB]);

    await bob.say('Hello from another node');
    await alice.waitForMessage('Hello from another node', BOB);
    await alice.say('Hello back through nginx');
    await bob.waitForMessage('Hello back through nginx', ALICE);

    // SIGKILL the node under alice's socket: no close frame, no goodbye.
    const killed = nodes[aliceNode];
    const child = killed.child;
    killed.child = null;
    child.kill('SIGKILL');
    await killed.exited;
    await bob.say('Said while you were away');
    await alice.waitForStatus('online', 30000);
    assert.notEqual(await nodeOf(ALICE, [aliceNode]), aliceNode);
    await alice.waitForMessage('Said while you were away', BOB);
    const texts = (await alice.messageEntries()).map(([, text]) => text);
    assert.deepEqual(
      texts.filter((text) => text.startsWith('Said while')),
      ['Said while you were away'],
      'recovered once',
    );
    const ids = (await alice.messageEntries()).map(([, , id]) => id);
    assert.equal(new Set(ids).size, ids.length, 'no message shows twice');

    // The dead node's user is reported gone, back on a live node, and the chat goes on.
    await bob.waitForOnline([ALICE, BOB]);
    await alice.say('Back, on a live node');
    await bob.waitForMessage('Back, on a live node', ALICE);
    assert.deepEqual(await bob.unexpectedErrors(), []);
    assert.deepEqual(await alice.unexpectedErrors(NETWORK_NOISE), []);
  });
});
