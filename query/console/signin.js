// The sign-in page: an API token exchanged for a session cookie.

import { html, useState, useRef, useEffect, ErrorBox, useTitle } from './ui.js';
import { post } from './api.js';

export function SignIn({ onSignedIn, notice }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const input = useRef(null);
  useTitle('Sign in');
  useEffect(() => { if (input.current) input.current.focus(); }, []);

  async function submit(e) {
    e.preventDefault();
    if (!token.trim()) { setError(new Error('Enter an API token.')); return; }
    setBusy(true);
    setError(null);
    try {
      const session = await post('/v1/session', { token: token.trim() }, { noAuthRedirect: true });
      setToken('');
      onSignedIn(session);
    } catch (err) {
      setError(err.status === 401 ? new Error(err.message || 'That token was not accepted.') : err);
      setBusy(false);
    }
  }

  return html`<main class="signin-page">
    <div class="signin-card">
      <div class="brand brand-dark"><span class="logo" aria-hidden="true"></span>tooltrail <span class="brand-sub">console</span></div>
      <h1>Sign in</h1>
      <p class="muted">Use an API token of an analyst, auditor or admin. The console keeps a session cookie; the token is not stored.</p>
      ${notice ? html`<p class="notice">${notice}</p>` : null}
      <form id="signin" onSubmit=${submit} novalidate>
        <label for="token">API token</label>
        <input id="token" ref=${input} type="password" autocomplete="off" spellcheck="false"
          value=${token} onInput=${(e) => setToken(e.target.value)} />
        <${ErrorBox} id="signin-error" error=${error} />
        <button type="submit" class="primary" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </div>
  </main>`;
}
