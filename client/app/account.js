/**
 * The demo's account calls: register, login, token refresh and logout over wsgate's REST API. Every failure becomes
 * an `AccountError` whose `message` is a sentence for people (from wsgate.js's describeHttpError), so
 * the forms can show it as is. The socket side is wsgate.js's business, not this file's.
 */

import { describeHttpError } from '../wsgate.js';

/** A refused or failed account request; `message` is for people, `code` for programs. */
export class AccountError extends Error {
  /**
   * @param {number} status - HTTP status, 0 when the server could not be reached.
   * @param {string} code - the body's `error` code, e.g. `username_taken`; '' when there was none.
   * @param {string} message - the sentence to show.
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'AccountError';
    this.status = status;
    this.code = code;
  }
}

/**
 * POSTs JSON (or nothing) to wsgate and returns the parsed JSON answer (null for 204).
 *
 * @param {string} path - e.g. `/api/login`.
 * @param {{body?: object, token?: string}} request
 * @returns {Promise<any>}
 */
async function post(path, { body, token }) {
  const headers = {};
  if (body) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(path, {
      method: 'POST',
      headers,
      body: body ? JSON.stringify(body) : undefined,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    throw new AccountError(0, '', describeHttpError(0));
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.ok) return data;
  const code = typeof data?.error === 'string' ? data.error : '';
  const retryAfter = Number(response.headers.get('Retry-After')) || 0;
  throw new AccountError(response.status, code, describeHttpError(response.status, code, { retryAfter }));
}

/**
 * Creates an account.
 *
 * @param {string} username
 * @param {string} password
 * @returns {Promise<{username: string}>}
 */
export function register(username, password) {
  return post('/api/register', { body: { username, password } });
}

/**
 * A token pair from login or refresh: a short-lived access token (JWT) and the refresh token that
 * gets the next pair (rotated: each one works once).
 *
 * @typedef {{accessToken: string, refreshToken: string|null, expiresIn: number}} Tokens
 */

/** @returns {Tokens} */
function tokensOf(data) {
  if (typeof data?.access_token !== 'string') {
    throw new AccountError(200, '', 'The server answered with something unexpected instead of a sign-in.');
  }
  return {
    accessToken: data.access_token,
    refreshToken: typeof data.refresh_token === 'string' ? data.refresh_token : null,
    expiresIn: data.expires_in,
  };
}

/**
 * Signs in: starts a session.
 *
 * @param {string} username
 * @param {string} password
 * @returns {Promise<Tokens>}
 */
export async function login(username, password) {
  return tokensOf(await post('/api/login', { body: { username, password } }));
}

/**
 * Trades a refresh token for a new pair in the same session; the one presented is spent.
 *
 * @param {string} refreshToken
 * @returns {Promise<Tokens>}
 */
export async function refreshTokens(refreshToken) {
  return tokensOf(await post('/api/token/refresh', { body: { refresh_token: refreshToken } }));
}

/**
 * Ends the token's session on the server: its tokens stop working, and the server closes every
 * socket of the session.
 *
 * @param {string} token
 * @returns {Promise<void>}
 */
export async function logout(token) {
  await post('/api/logout', { token });
}
