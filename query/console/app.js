// The console: session check, hash router and the shell (header, nav).
//
// Routes: #/alerts (default), #/alerts/<id>, #/users/<tenant>/<user>,
// #/sql[?q=<sql>], #/exports[?tenant=&from=&to=&where=]. Without a session
// (GET /v1/session → 401) the sign-in page shows, whatever the hash; the
// hash is left alone, so the page it names shows after sign-in.

import { html, render, useState, useEffect, Loading, ErrorBox } from './ui.js';
import { get, del, setCsrf, setUnauthorizedHandler } from './api.js';
import { SignIn } from './signin.js';
import { Inbox } from './inbox.js';
import { AlertPage } from './alert.js';
import { UserPage } from './user.js';
import { SqlPage } from './sql.js';
import { ExportsPage } from './exports.js';

export function parseHash(hash = location.hash) {
  const raw = hash.replace(/^#/, '') || '/alerts';
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  const parts = path.split('/').filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { parts, params, raw };
}

const canExport = (s) => s && (s.role === 'auditor' || s.role === 'admin');

function page(route, session) {
  const [top, a, b] = route.parts;
  switch (top || 'alerts') {
    case 'alerts':
      return a ? html`<${AlertPage} key=${a} alertId=${a} session=${session} />` : html`<${Inbox} session=${session} />`;
    case 'users':
      if (a && b) return html`<${UserPage} key=${`${a}/${b}`} tenant=${a} user=${b} session=${session} />`;
      break;
    case 'sql':
      return html`<${SqlPage} key=${route.raw} initial=${route.params.get('q')} session=${session} />`;
    case 'exports':
      return html`<${ExportsPage} key=${route.raw} params=${route.params} session=${session} />`;
    default:
  }
  return html`<section class="page"><h1>Not found</h1><p>No page at <code>#${route.raw}</code>. <a href="#/alerts">Go to the alerts</a>.</p></section>`;
}

function Shell({ session, route, onSignOut, signOutError }) {
  const top = route.parts[0] || 'alerts';
  const nav = (name, label) => html`<a href=${`#/${name}`} data-nav=${name}
    class=${top === name ? 'active' : ''} aria-current=${top === name ? 'page' : undefined}>${label}</a>`;
  return html`<div class="shell">
    <header class="topbar">
      <a class="brand" href="#/alerts"><span class="logo" aria-hidden="true"></span>tooltrail <span class="brand-sub">console</span></a>
      <nav aria-label="main">
        ${nav('alerts', 'Alerts')}
        ${nav('sql', 'SQL')}
        ${canExport(session) ? nav('exports', 'Exports') : null}
      </nav>
      <div class="who">
        <span class="principal" title=${`tenants: ${(session.tenants || []).join(', ')}`}>${session.principal}</span>
        <span class=${`role role-${session.role}`}>${session.role}</span>
        <button id="signout" type="button" class="ghost" onClick=${onSignOut}>Sign out</button>
      </div>
    </header>
    <${ErrorBox} id="signout-error" error=${signOutError} />
    <main id="main" class="content">${page(route, session)}</main>
  </div>`;
}

function App() {
  // undefined: checking; null: signed out; object: the session.
  const [session, setSession] = useState(undefined);
  const [route, setRoute] = useState(parseHash());
  const [bootError, setBootError] = useState(null);
  const [notice, setNotice] = useState(null);
  const [signOutError, setSignOutError] = useState(null);

  useEffect(() => {
    const onHash = () => { setRoute(parseHash()); window.scrollTo(0, 0); };
    window.addEventListener('hashchange', onHash);
    setUnauthorizedHandler(() => {
      setCsrf(null);
      setSession((s) => {
        if (s) setNotice('Your session has ended; sign in again.');
        return null;
      });
    });
    check();
    return () => window.removeEventListener('hashchange', onHash);
  }, []);

  async function check() {
    setBootError(null);
    try {
      const s = await get('/v1/session', { noAuthRedirect: true });
      setCsrf(s.csrf);
      setSession(s);
    } catch (e) {
      if (e.status === 401) { setSession(null); return; }
      setBootError(e);
    }
  }

  // Sign-in again when the session expires.
  useEffect(() => {
    if (!session || !session.expires_at) return undefined;
    const ms = new Date(session.expires_at).getTime() - Date.now();
    if (!(ms > 0) || ms > 2 ** 31 - 1) return undefined;
    const t = setTimeout(() => { setNotice('Your session has expired; sign in again.'); setSession(null); }, ms + 1000);
    return () => clearTimeout(t);
  }, [session]);

  async function signOut() {
    setSignOutError(null);
    try {
      await del('/v1/session');
    } catch (e) {
      if (e.status !== 401) { setSignOutError(e); return; }
    }
    setCsrf(null);
    setNotice(null);
    setSession(null);
  }

  if (bootError) {
    return html`<main class="signin-page"><div class="signin-card">
      <h1>tooltrail console</h1>
      <${ErrorBox} id="boot-error" error=${bootError} />
      <button type="button" class="primary" onClick=${check}>Retry</button>
    </div></main>`;
  }
  if (session === undefined) return html`<${Loading} what="Checking the session" />`;
  if (session === null) {
    return html`<${SignIn} notice=${notice} onSignedIn=${(s) => { setCsrf(s.csrf); setNotice(null); setSession(s); }} />`;
  }
  return html`<${Shell} session=${session} route=${route} onSignOut=${signOut} signOutError=${signOutError} />`;
}

render(html`<${App} />`, document.getElementById('app'));
