/**
 * The connection status as people see it: the pill in the header (with a countdown while
 * reconnecting), the banner above the chat that says why the connection is down and offers
 * "Reconnect now" or "Sign in again", and the polite announcements for screen readers.
 * `#status[data-status]` always holds the current state (tests and CSS key on it).
 */

import { byId, showText } from './dom.js';

const LABELS = {
  signed_out: 'Signed out',
  getting_ticket: 'Getting a ticket…',
  connecting: 'Connecting…',
  authenticating: 'Authenticating…',
  online: 'Online',
  reconnecting: 'Reconnecting',
  offline: 'Offline',
};

export class StatusView {
  /**
   * @param {{onRetry: () => void, onSignInAgain: () => void}} actions
   */
  constructor({ onRetry, onSignInAgain }) {
    this.pill = byId('status');
    this.label = byId('status-text');
    this.countdown = byId('status-countdown');
    this.banner = byId('connection-banner');
    this.bannerText = byId('banner-text');
    this.retryButton = byId('banner-retry');
    this.signInButton = byId('banner-sign-in');
    this.announcer = byId('announcer');
    this.retryButton.addEventListener('click', onRetry);
    this.signInButton.addEventListener('click', onSignInAgain);
    this.state = 'signed_out';
    /** Why the connection went down, kept while attempts come and go, cleared when online again. */
    this.problem = '';
    this.retryAt = 0;
    this.timer = null;
  }

  /**
   * Shows a state: one of wsgate.js's (`status.state`), or the page's own `signed_out`.
   *
   * @param {string} state
   * @param {{message?: string, retryAt?: number}} [details]
   */
  show(state, { message, retryAt } = {}) {
    const previous = this.state;
    const hadProblem = Boolean(this.problem);
    this.state = state;
    this.pill.dataset.status = state;
    this.label.textContent = LABELS[state] ?? state;
    this.retryAt = state === 'reconnecting' ? retryAt ?? 0 : 0;
    if (message && (state === 'reconnecting' || state === 'offline')) this.problem = message;
    if (state === 'online' || state === 'signed_out') this.problem = '';

    if (state === 'reconnecting' && !hadProblem) {
      this.announce(`Connection lost. ${this.problem} Reconnecting.`);
    } else if (state === 'offline') {
      this.announce(`Offline. ${this.problem}`);
    } else if (state === 'online' && previous !== 'online') {
      this.announce('Online.');
    }

    this.banner.dataset.kind = state === 'offline' ? 'offline' : 'reconnecting';
    this.banner.hidden = !this.problem;
    this.retryButton.hidden = state !== 'reconnecting';
    this.signInButton.hidden = state !== 'offline';
    this.#tick();
    clearInterval(this.timer);
    this.timer = state === 'reconnecting' ? setInterval(() => this.#tick(), 250) : null;
  }

  /** Says `text` once to screen readers, politely. */
  announce(text) {
    // Re-setting identical text is not re-announced; clearing first makes every call count.
    this.announcer.textContent = '';
    requestAnimationFrame(() => {
      this.announcer.textContent = text;
    });
  }

  #tick() {
    let wait = '';
    if (this.state === 'reconnecting') {
      const seconds = Math.max(0, Math.ceil((this.retryAt - Date.now()) / 1000));
      wait = seconds > 0 ? `in ${seconds} s` : 'now';
    }
    this.countdown.textContent = wait;
    if (!this.problem) return;
    let next = '';
    if (this.state === 'reconnecting') next = ` Trying again ${wait}.`;
    else if (isAttempt(this.state)) next = ' Trying again now…';
    showText(this.bannerText, `${this.problem}${next}`);
  }
}

function isAttempt(state) {
  return state === 'getting_ticket' || state === 'connecting' || state === 'authenticating';
}
