/**
 * Starts and stops the real wsgate binary for the browser tests: a free port, a fixed JWT secret
 * (so tokens survive a restart), cheap bcrypt, relaxed per-IP limits, the repo's client/ as the
 * static folder, the server API on with a fixed key. The log goes to a file under target/browser/
 * for people to read after a failure. Also the tests' own REST calls (accounts, the server API).
 */

import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const ARTIFACTS = path.join(REPO, 'target', 'browser');

/** At least 32 bytes, fixed: a restarted server must accept the tokens of the one before. */
const JWT_SECRET = 'browser-tests-secret-browser-tests-secret-0123';

/** The server API's key (WSGATE_API_KEY, at least 32 bytes): the tests play the app's backend. */
export const API_KEY = 'browser-tests-api-key-browser-tests-api-key-0123';

/**
 * The binary: $WSGATE_BIN (set by scripts/browser-tests.sh), else the newer of target/debug and
 * target/release.
 */
export function wsgateBinary() {
  if (process.env.WSGATE_BIN) return process.env.WSGATE_BIN;
  const built = ['debug', 'release']
    .map((profile) => path.join(REPO, 'target', profile, 'wsgate'))
    .filter((file) => existsSync(file))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!built.length) throw new Error('no wsgate binary: run `cargo build --bin wsgate` (or scripts/browser-tests.sh)');
  return built[0];
}

/** A TCP port that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/**
 * The status of GET /api/health, 0 when nothing answers. Through node:http without an agent
 * (Connection: close): a pooled keep-alive socket, as fetch() keeps, holds the test process open
 * for seconds after the server is gone.
 */
function healthStatus(baseUrl) {
  return new Promise((resolve) => {
    const request = http.get(`${baseUrl}/api/health`, { agent: false, timeout: 2000 }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(0));
  });
}

export class WsgateServer {
  /**
   * @param {{port: number, env?: Record<string, string>, logName?: string}} options
   */
  constructor({ port, env = {}, logName = 'wsgate.log' }) {
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.extraEnv = env;
    mkdirSync(ARTIFACTS, { recursive: true });
    this.log = createWriteStream(path.join(ARTIFACTS, logName), { flags: 'w' });
    this.child = null;
  }

  /** Starts the binary and resolves once /api/health answers 200. */
  async start() {
    if (this.child) throw new Error('wsgate is already running');
    // Only our settings: a WSGATE_* variable of the caller's shell (a MongoDB URI…) must not leak in.
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('WSGATE_')));
    const child = spawn(wsgateBinary(), [], {
      env: {
        ...inherited,
        NO_COLOR: '1',
        RUST_LOG: 'info',
        WSGATE_ADDR: `127.0.0.1:${this.port}`,
        WSGATE_JWT_SECRET: JWT_SECRET,
        WSGATE_BCRYPT_COST: '4',
        WSGATE_RATE_REGISTER_PER_MIN: '1000',
        WSGATE_RATE_LOGIN_PER_MIN: '1000',
        WSGATE_RATE_REFRESH_PER_MIN: '1000',
        WSGATE_RATE_TICKET_PER_MIN: '1000',
        WSGATE_RATE_UPGRADE_PER_MIN: '1000',
        WSGATE_CLIENT_DIR: path.join(REPO, 'client'),
        WSGATE_API_KEY: API_KEY,
        ...this.extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stdout.pipe(this.log, { end: false });
    child.stderr.pipe(this.log, { end: false });

    const deadline = Date.now() + 15000;
    let early = null;
    this.exited.then((how) => (early = how));
    while (Date.now() < deadline) {
      if (early) throw new Error(`wsgate exited at startup (${JSON.stringify(early)}); see ${this.log.path}`);
      if ((await healthStatus(this.url)) === 200) return;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await this.stop();
    throw new Error(`wsgate did not answer /api/health within 15 s; see ${this.log.path}`);
  }

  /** SIGTERM, then waits for the exit (wsgate closes every socket with 1001 first). */
  async stop() {
    const { child } = this;
    if (!child) return;
    this.child = null;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    let timer;
    const timeout = new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), 10000)));
    const outcome = await Promise.race([this.exited, timeout]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      child.kill('SIGKILL');
      await this.exited;
      throw new Error('wsgate was still running 10 s after SIGTERM');
    }
  }

  /**
   * A REST call from the test itself (no Origin, like a backend): `{status, body}`, body parsed as
   * JSON (null when empty). `token`: a user's JWT, or `API_KEY` for the server API.
   *
   * @param {string} method
   * @param {string} route - e.g. `/api/rooms`.
   * @param {{token?: string, body?: object}} [request]
   */
  async api(method, route, { token, body } = {}) {
    const headers = { Connection: 'close' };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(`${this.url}${route}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  }

  /** Registers `username` over REST (201 expected) and signs in: resolves to an access token. */
  async account(username, password) {
    const registered = await this.api('POST', '/api/register', { body: { username, password } });
    if (registered.status !== 201 && registered.status !== 409) {
      throw new Error(`register ${username}: ${registered.status} ${JSON.stringify(registered.body)}`);
    }
    const login = await this.api('POST', '/api/login', { body: { username, password } });
    if (login.status !== 200) throw new Error(`login ${username}: ${login.status} ${JSON.stringify(login.body)}`);
    return login.body.access_token;
  }

  /** Stops for good and closes the log. */
  async dispose() {
    try {
      await this.stop();
    } finally {
      await new Promise((resolve) => this.log.end(resolve));
    }
  }
}
