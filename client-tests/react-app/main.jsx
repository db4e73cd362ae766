/**
 * The React test page: sign in (POST /api/login), then one room at a time through client/react.js.
 * `useWsgate` owns the connection (closed when the chat unmounts, i.e. on sign-out); `useRoom` the
 * room shown (switching rooms unsubscribes the old one). Markup ids are what react.test.js reads.
 */

import { StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { useRoom, useWsgate } from '../../client/react.js';

function SignIn({ onSignedIn }) {
  const [error, setError] = useState('');
  const submit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const response = await fetch('/api/login', {
      method: 'POST',
      body: JSON.stringify({ username: form.get('username'), password: form.get('password') }),
    });
    const body = await response.json().catch(() => null);
    if (response.ok) onSignedIn(body.access_token);
    else setError(body?.message ?? `HTTP ${response.status}`);
  };
  return (
    <form id="sign-in" onSubmit={submit} aria-labelledby="sign-in-title">
      <h1 id="sign-in-title">Sign in</h1>
      <label>
        Username <input name="username" id="username" autoComplete="username" />
      </label>
      <label>
        Password <input name="password" id="password" type="password" autoComplete="current-password" />
      </label>
      <button type="submit">Sign in</button>
      {error && <p className="error" role="alert">{error}</p>}
    </form>
  );
}

function Room({ conn, room }) {
  const { messages, typing, presence, send, sendTyping, hasMore, loadOlder, subscribed, error } = useRoom(conn, room);
  const [text, setText] = useState('');
  const submit = (event) => {
    event.preventDefault();
    if (text.trim() && send(text.trim())) setText('');
  };
  return (
    <section aria-labelledby="room-title" id="room" data-room={room} data-subscribed={String(subscribed)}>
      <h2 id="room-title"># {room}</h2>
      <div className="columns">
        <div>
          {hasMore && (
            <button id="load-older" type="button" onClick={loadOlder}>
              Load older messages
            </button>
          )}
          <ol id="messages" className="messages" aria-live="polite">
            {messages.map((m) => (
              <li key={m.id} data-id={m.id} data-from={m.from}>
                <span className="from">{m.from}</span>
                <span className="text">{m.text}</span>
              </li>
            ))}
          </ol>
          <p id="typing" className="typing" aria-live="polite">
            {typing.length ? `${typing.join(', ')} ${typing.length === 1 ? 'is' : 'are'} typing…` : ''}
          </p>
          {error && (
            <p id="room-error" className="error" role="alert">
              {error.message}
            </p>
          )}
          <form id="composer" onSubmit={submit}>
            <label>
              Message
              <input
                id="composer-input"
                value={text}
                onChange={(event) => {
                  setText(event.target.value);
                  if (event.target.value.trim()) sendTyping();
                }}
                autoComplete="off"
              />
            </label>
            <button type="submit">Send</button>
          </form>
        </div>
        <aside aria-labelledby="presence-title">
          <h3 id="presence-title">Here</h3>
          <ul id="presence">
            {presence.map((name) => (
              <li key={name} data-user={name}>
                {name}
              </li>
            ))}
          </ul>
        </aside>
      </div>
    </section>
  );
}

function Chat({ token, onSignOut }) {
  const { conn, status, user } = useWsgate({ getAccessToken: async () => token });
  const [room, setRoom] = useState('lobby');
  const [draft, setDraft] = useState('lobby');
  return (
    <>
      <p id="status" className="status" data-status={status.state} role="status">
        {status.state}
        {user ? ` as ${user}` : ''}
      </p>
      <form
        id="room-form"
        onSubmit={(event) => {
          event.preventDefault();
          setRoom(draft.trim());
        }}
      >
        <label>
          Room <input id="room-input" value={draft} onChange={(event) => setDraft(event.target.value)} />
        </label>
        <button type="submit">Open</button>
        <button id="sign-out" type="button" onClick={onSignOut}>
          Sign out
        </button>
      </form>
      <Room key={room} conn={conn} room={room} />
    </>
  );
}

function App() {
  const [token, setToken] = useState(/** @type {string|null} */ (null));
  return token ? <Chat token={token} onSignOut={() => setToken(null)} /> : <SignIn onSignedIn={setToken} />;
}

createRoot(document.getElementById('root')).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
