/**
 * Debian's Chromium, headless, through playwright-core (which downloads no browser of its own), and
 * the page-level helpers the tests share: a page per user in its own context, console/page-error and
 * dialog collection, and UI steps such as "register and wait until online".
 */

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { API_KEY, ARTIFACTS } from './server.js';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/**
 * Launches Chromium. `launch()` gives the browser a fresh temporary user-data dir of its own and
 * deletes it on close; each user then gets its own context (separate storage, like two browsers).
 */
export function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
}

/**
 * Messages Chromium itself logs as console errors when a request fails at the network level or gets
 * an HTTP error status. They are expected exactly where a test makes requests fail on purpose (a
 * stopped server, a wrong password), and nowhere else.
 */
export const NETWORK_NOISE = [
  /^Failed to load resource: net::ERR_CONNECTION_REFUSED$/,
  /^Failed to load resource: the server responded with a status of 4\d\d /,
  /^WebSocket connection to 'ws:\/\/[^']+' failed: /,
];

/**
 * A user's page in its own browser context, with everything that would reveal a broken page
 * collected: console errors, uncaught exceptions, CSP violations and dialogs (which are dismissed).
 */
export class UserPage {
  /**
   * @param {import('playwright-core').Browser} browser
   * @param {string} baseUrl
   * @param {{name: string, viewport?: {width: number, height: number}, colorScheme?: 'light'|'dark'}} options
   */
  static async open(browser, baseUrl, { name, viewport = { width: 1100, height: 720 }, colorScheme = 'light' }) {
    const context = await browser.newContext({ viewport, colorScheme, locale: 'en-GB', timezoneId: 'Europe/Paris' });
    const page = await context.newPage();
    const user = new UserPage(name, context, page, baseUrl);
    page.on('console', (message) => {
      if (message.type() === 'error') user.errors.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => user.errors.push(`pageerror: ${error.message}`));
    page.on('dialog', (dialog) => {
      user.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
      dialog.dismiss().catch(() => {});
    });
    page.on('websocket', (socket) => {
      user.sockets.push(socket);
      socket.on('framesent', ({ payload }) => {
        try {
          user.sent.push(JSON.parse(String(payload)));
        } catch {
          user.sent.push({ type: '(not JSON)' });
        }
      });
      socket.on('framereceived', ({ payload }) => {
        try {
          user.received.push(JSON.parse(String(payload)));
        } catch {
          user.received.push({ type: '(not JSON)', payload: String(payload) });
        }
      });
    });
    // Collected in the page from the very start: a CSP violation is a bug even if nothing breaks.
    await page.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener('securitypolicyviolation', (event) => {
        window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    return user;
  }

  constructor(name, context, page, baseUrl) {
    this.name = name;
    this.context = context;
    this.page = page;
    this.baseUrl = baseUrl;
    /** @type {string[]} */ this.errors = [];
    /** @type {string[]} */ this.dialogs = [];
    /** @type {import('playwright-core').WebSocket[]} */ this.sockets = [];
    /** @type {any[]} every frame the page's sockets received, parsed, in order. */ this.received = [];
    /** @type {any[]} and every frame they sent. */ this.sent = [];
  }

  /** Loads the demo; returns the main document's response. */
  async goto() {
    const response = await this.page.goto(`${this.baseUrl}/`);
    await this.page.locator('#status[data-status="signed_out"]').waitFor();
    return response;
  }

  status() {
    return this.page.locator('#status');
  }

  /** Waits until `#status[data-status]` is `state`. */
  async waitForStatus(state, timeout = 10000) {
    await this.page.locator(`#status[data-status="${state}"]`).waitFor({ timeout });
  }

  /** Registers through the form (which signs in at once) and waits until online. */
  async register(username, password) {
    await this.page.fill('#register-username', username);
    await this.page.fill('#register-password', password);
    await this.page.click('#register-form button[type="submit"]');
    await this.waitForStatus('online');
  }

  /** Signs in through the form, pressing Enter in the password field, and waits until online. */
  async signIn(username, password) {
    await this.page.fill('#login-username', username);
    await this.page.fill('#login-password', password);
    await this.page.press('#login-password', 'Enter');
    await this.waitForStatus('online');
  }

  /** Types a message and sends it with Enter. */
  async say(text) {
    await this.page.fill('#composer-input', text);
    await this.page.press('#composer-input', 'Enter');
  }

  /** `[from, text]` of every message in the log, in order. */
  messages() {
    return this.page.$$eval('#messages li.message', (items) =>
      items.map((item) => [item.dataset.from, item.querySelector('.message-text').textContent]),
    );
  }

  /** Waits until the log holds a message with exactly this text (from `from`, if given). */
  async waitForMessage(text, from) {
    await this.page.waitForFunction(
      ([wanted, sender]) =>
        [...document.querySelectorAll('#messages li.message')].some(
          (item) => item.querySelector('.message-text').textContent === wanted && (!sender || item.dataset.from === sender),
        ),
      [text, from],
    );
  }

  /** The usernames in the "Online" list. */
  onlineUsers() {
    return this.page.$$eval('#users li', (items) => items.map((item) => item.dataset.user));
  }

  /** Waits until the "Online" list is exactly `names` (sorted). */
  async waitForOnline(names) {
    const wanted = [...names].sort();
    await this.page.waitForFunction(
      (expected) => JSON.stringify([...document.querySelectorAll('#users li')].map((li) => li.dataset.user).sort()) === expected,
      JSON.stringify(wanted),
    );
  }

  /** `[from, text, id]` of every message shown in the open conversation, in order. */
  messageEntries() {
    return this.page.$$eval('#messages li.message', (items) =>
      items.map((item) => [item.dataset.from, item.querySelector('.message-text').textContent, item.dataset.id]),
    );
  }

  /** The key of the conversation on screen: `room:lobby`, `direct:bob`. */
  conversation() {
    return this.page.getAttribute('#messages-title', 'data-conversation');
  }

  /** Opens a room from the conversations pane and waits until it is on screen. */
  async openRoom(id) {
    await this.page.click(`#rooms button[data-room="${id}"]`);
    await this.page.locator(`#messages-title[data-conversation="room:${id}"]`).waitFor();
  }

  /** The room ids listed in the conversations pane, after a click on "Refresh" has been answered. */
  async refreshRooms() {
    // `#rooms[data-loads]` counts the answered GET /api/rooms: wait for this click's.
    const before = Number((await this.page.getAttribute('#rooms', 'data-loads')) ?? 0);
    await this.page.click('#rooms-refresh');
    await this.page.waitForFunction((n) => Number(document.getElementById('rooms').dataset.loads ?? 0) > n, before);
    return this.page.$$eval('#rooms button[data-room]', (buttons) => buttons.map((b) => b.dataset.room));
  }

  /**
   * Sends each text through the composer of the open conversation, one right after the other (not
   * typed: the page's own submit path), then waits until the last one is back from the server.
   */
  async sendAll(texts) {
    await this.page.evaluate((all) => {
      const input = document.getElementById('composer-input');
      const form = document.getElementById('composer');
      for (const text of all) {
        input.value = text;
        form.requestSubmit();
      }
    }, texts);
    await this.waitForMessage(texts.at(-1), undefined);
  }

  /**
   * Starts recording, in the page, every change of the text of `selector` with its time, so that
   * how long a page's own timer showed something is measured where it happens, not by polling.
   */
  async recordText(selector) {
    await this.page.evaluate((sel) => {
      const node = document.querySelector(sel);
      window.__textTimeline = [[performance.now(), node.textContent]];
      new MutationObserver(() => window.__textTimeline.push([performance.now(), node.textContent])).observe(node, {
        childList: true,
        characterData: true,
        subtree: true,
      });
    }, selector);
  }

  /**
   * How long the recorded text was `text` the first time it showed (ms), once it has changed again.
   *
   * @param {string} text
   * @param {number} [timeout]
   */
  async shownFor(text, timeout = 10000) {
    const handle = await this.page.waitForFunction(
      (wanted) => {
        const timeline = window.__textTimeline;
        const start = timeline.findIndex(([, t]) => t === wanted);
        const end = start < 0 ? -1 : timeline.findIndex(([, t], i) => i > start && t !== wanted);
        return end > 0 ? timeline[end][0] - timeline[start][0] : false;
      },
      text,
      { timeout },
    );
    return handle.jsonValue();
  }

  /** Errors not explained by `allowed` patterns (see NETWORK_NOISE), plus CSP violations. */
  async unexpectedErrors(allowed = []) {
    const violations = await this.page.evaluate(() => window.__cspViolations ?? []).catch(() => []);
    return [
      ...this.errors.filter((line) => !allowed.some((pattern) => pattern.test(line.replace(/^console: /, '')))),
      ...violations.map((violation) => `csp: ${violation}`),
    ];
  }

  /** Saves a screenshot under target/browser/. */
  async screenshot(file) {
    mkdirSync(ARTIFACTS, { recursive: true });
    const target = path.join(ARTIFACTS, file);
    await this.page.screenshot({ path: target });
    return target;
  }

  close() {
    return this.context.close();
  }
}

/**
 * Drops every socket of `user` through the server API (`POST /api/server/users/{U}/disconnect`:
 * close 1012 `reconnect`) and keeps the page from coming back (its next ticket request is held)
 * until the returned `release()` is called: what is sent in between is sent while the page is away,
 * however fast its reconnect would be. `release()` resolves once the page is online again.
 *
 * @param {import('./server.js').WsgateServer} server
 * @param {UserPage} user - its `name` is the account's.
 * @returns {Promise<() => Promise<void>>}
 */
export async function dropAndHold(server, user) {
  let release;
  const gate = new Promise((resolve) => (release = resolve));
  await user.page.route('**/api/ws-ticket', async (route) => {
    await gate;
    await route.continue();
  });
  const socket = user.sockets.at(-1);
  const dropped = await server.api('POST', `/api/server/users/${user.name}/disconnect`, { token: API_KEY });
  if (dropped.status !== 204) throw new Error(`disconnect ${user.name}: ${dropped.status} ${JSON.stringify(dropped.body)}`);
  if (!socket.isClosed()) await socket.waitForEvent('close', { timeout: 5000 });
  // Reconnecting (not offline: 1012 is not final), then stuck at its ticket.
  await user.waitForStatus('getting_ticket', 5000);
  return async () => {
    release();
    await user.waitForStatus('online', 10000);
    await user.page.unroute('**/api/ws-ticket');
  };
}
