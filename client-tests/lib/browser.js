/**
 * Debian's Chromium, headless, through playwright-core (which downloads no browser of its own), and
 * the page-level helpers the tests share: a page per user in its own context, console/page-error and
 * dialog collection, and UI steps such as "register and wait until online".
 */

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { ARTIFACTS } from './server.js';

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
    page.on('websocket', (socket) => user.sockets.push(socket));
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
