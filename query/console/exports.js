// Exports (auditors and admins): the list, a form to create one (pre-filled
// from #/exports?tenant=&from=&to=&where=), status polling every 2 s while
// queued or running, file links, and the manifest's signing key, with an
// optional in-browser Ed25519 check of manifest.json against its .sig.

import { html, useState, useEffect, useRef, ErrorBox, Loading, Time, Status, useTitle } from './ui.js';
import { get, post, request, aborted } from './api.js';
import { localInputToRfc3339, rfc3339ToLocalInput, num, bytes, utcDay } from './format.js';

const FORMATS = [['parquet', 'Parquet'], ['csv', 'CSV'], ['ndjson', 'NDJSON'], ['ocsf', 'OCSF (NDJSON)']];
const ACTIVE = new Set(['queued', 'running']);
const DETAILS_EAGER = 10;

const hexBytes = (hex) => new Uint8Array((hex.match(/../g) || []).map((b) => parseInt(b, 16)));

/** Checks manifest.json against manifest.json.sig with the key of that id. */
async function verifySignature(view, keys) {
  const m = view.manifest;
  const key = keys.find((k) => k.key_id === m.key_id);
  if (!key) return { ok: false, text: `key ${m.key_id} is not among the server's published keys` };
  if (!(window.crypto && crypto.subtle)) return { ok: null, text: 'this browser context has no WebCrypto (needs HTTPS or localhost)' };
  const files = view.links.files;
  const [mres, sres] = await Promise.all([
    request('GET', files['manifest.json'], undefined, { raw: true }),
    request('GET', files['manifest.json.sig'], undefined, { raw: true }),
  ]);
  const [manifest, sig] = [await mres.arrayBuffer(), await sres.arrayBuffer()];
  let pub;
  try {
    pub = await crypto.subtle.importKey('raw', hexBytes(key.public_key_hex), { name: 'Ed25519' }, false, ['verify']);
  } catch {
    return { ok: null, text: 'this browser cannot check Ed25519 signatures; use `tooltrail export verify`' };
  }
  const ok = await crypto.subtle.verify({ name: 'Ed25519' }, pub, sig, manifest);
  return ok
    ? { ok: true, text: `signature valid (key ${key.key_id}${key.current ? ', current' : ', previous'})` }
    : { ok: false, text: 'signature does NOT match manifest.json' };
}

function Files({ view, keys }) {
  const [check, setCheck] = useState(null);
  const files = (view.links && view.links.files) || {};
  const names = Object.keys(files);
  const m = view.manifest;
  if (!names.length) return null;
  const key = m && keys ? keys.find((k) => k.key_id === m.key_id) : null;
  async function verify() {
    setCheck({ ok: null, text: 'checking…' });
    try { setCheck(await verifySignature(view, keys || [])); } catch (e) { setCheck({ ok: false, text: e.message }); }
  }
  return html`<div class="export-files">
    <span class="muted small">Files:</span>
    <ul class="files">${names.map((n) => html`<li><a href=${files[n]} download=${n}>${n}</a>${
      m && m.parts ? (() => { const p = m.parts.find((x) => x.name === n); return p ? html` <span class="muted small">${num(p.rows)} rows · ${bytes(p.bytes)}</span>` : null; })() : null}</li>`)}</ul>
    ${view.verification ? html`<div class="small" data-verification>
      <span class=${view.verification.ok ? 'ok' : 'warn'} role="status">${view.verification.ok
        ? 'Verified by the server: the signature and every part match'
        : `Does NOT verify: ${view.verification.findings.join('; ')}`}</span></div>` : null}
    ${m ? html`<div class="sig small" data-signature>
      <span>Signed ${m.signature_algorithm || ''} by key <code>${m.key_id}</code></span>
      ${keys ? html` <span class=${key ? (key.current ? 'ok' : 'muted') : 'warn'}>${key ? (key.current ? '(the server\'s current key)' : '(a previous, still trusted key)') : '(not a key the server publishes)'}</span>` : null}
      ${m.sql_sha256 ? html`<div class="muted">sql sha256 <code>${m.sql_sha256.slice(0, 16)}…</code> · query ${m.query_id || ''}</div>` : null}
      <div><button type="button" class="small-btn" onClick=${verify} data-verify>Check signature in the browser</button>
        ${check ? html` <span class=${check.ok === true ? 'ok' : check.ok === false ? 'warn' : 'muted'} role="status">${check.text}</span>` : null}</div>
    </div>` : null}
  </div>`;
}

function ExportRow({ view, keys, onExpand }) {
  const r = view.request || {};
  const p = view.progress || {};
  const done = view.status === 'done';
  const main = html`<tr key=${view.id} data-export-id=${view.id} class=${`st-row-${view.status}`}>
    <td class="mono-s nowrap" title=${view.id}>${view.id.length > 14 ? `${view.id.slice(0, 14)}…` : view.id}</td>
    <td>${r.tenant_id}</td>
    <td class="nowrap small"><${Time} iso=${r.from} seconds=${false} /> → <${Time} iso=${r.to} seconds=${false} />
      ${r.where ? html`<div class="mono-s where" title=${r.where}>${r.where}</div>` : null}</td>
    <td>${r.format}</td>
    <td class="status"><${Status} value=${view.status} />${view.error ? html`<div class="warn small">${view.error}</div>` : null}</td>
    <td class="nowrap small">${num(p.rows)} rows · ${num(p.parts)} parts · ${bytes(p.bytes)}
      ${ACTIVE.has(view.status) ? html`<span class="spinner" aria-hidden="true"></span>` : null}</td>
    <td class="nowrap small"><${Time} iso=${view.requested_at} rel />${view.requested_by ? html`<div class="muted">by ${view.requested_by.principal}</div>` : null}</td>
    <td>${done && !view.manifest ? html`<button type="button" class="small-btn" onClick=${() => onExpand(view.id)}>Show files</button>` : null}</td>
  </tr>`;
  if (!(done && view.manifest)) return main;
  return [main, html`<tr key=${`${view.id}-files`} class="export-detail" data-export-files=${view.id}>
    <td colspan="8"><${Files} view=${view} keys=${keys} /></td></tr>`];
}

export function ExportsPage({ session, params }) {
  useTitle('Exports');
  const allowed = session.role === 'auditor' || session.role === 'admin';
  const tenants = (session.tenants || []).filter((t) => t !== '*');
  const today = utcDay(new Date().toISOString(), 0);
  const [form, setForm] = useState(() => ({
    tenant_id: params.get('tenant') || (tenants.length === 1 ? tenants[0] : ''),
    from: rfc3339ToLocalInput(params.get('from') || utcDay(today, -1)),
    to: rfc3339ToLocalInput(params.get('to') || utcDay(today, 1)),
    where: params.get('where') || '',
    format: params.get('format') || 'parquet',
  }));
  const [list, setList] = useState(null);
  const [error, setError] = useState(null);
  const [createError, setCreateError] = useState(null);
  const [creating, setCreating] = useState(false);
  const [keys, setKeys] = useState(null);
  const listRef = useRef(null);
  listRef.current = list;

  const merge = (view) => setList((l) => (l ? l.map((v) => (v.id === view.id ? { ...v, ...view } : v)) : l));
  const details = async (id) => {
    try { merge(await get(`/v1/exports/${encodeURIComponent(id)}`)); } catch (e) { if (!aborted(e)) setError(e); }
  };

  useEffect(() => {
    if (!allowed) return;
    get('/v1/exports').then((r) => {
      const views = r.exports || [];
      setList(views);
      views.filter((v) => v.status === 'done').slice(0, DETAILS_EAGER).forEach((v) => details(v.id));
    }, setError);
    get('/v1/keys', { noAuthRedirect: true }).then((r) => setKeys(r.keys || []), () => setKeys(null));
  }, []);

  // Poll the queued and running exports every 2 s.
  useEffect(() => {
    if (!allowed) return undefined;
    const t = setInterval(async () => {
      const active = (listRef.current || []).filter((v) => ACTIVE.has(v.status));
      for (const v of active) await details(v.id);
    }, 2000);
    return () => clearInterval(t);
  }, []);

  if (!allowed) {
    return html`<section class="page"><h1>Exports</h1>
      <p role="alert" class="error">Exports need the auditor or admin role; you are signed in as ${session.role}.</p></section>`;
  }

  const set = (k) => (e) => setForm({ ...form, [k]: e.target.value });
  async function create(e) {
    e.preventDefault();
    setCreateError(null);
    const body = {
      tenant_id: form.tenant_id.trim(), from: localInputToRfc3339(form.from), to: localInputToRfc3339(form.to), format: form.format,
    };
    if (form.where.trim()) body.where = form.where.trim();
    if (!body.tenant_id) { setCreateError(new Error('tenant_id: enter a tenant.')); return; }
    if (!body.from || !body.to) { setCreateError(new Error('from/to: enter both times.')); return; }
    setCreating(true);
    try {
      const view = await post('/v1/exports', body);
      setList((l) => [view, ...(l || []).filter((v) => v.id !== view.id)]);
    } catch (err) {
      setCreateError(err);
    }
    setCreating(false);
  }

  return html`<section class="page exports-page">
    <div class="page-head"><h1>Exports</h1><span class="spacer"></span>
      <span class="muted">Signed, verifiable extracts of one tenant's events. Verify a download with <code>tooltrail export verify DIR</code>.</span></div>
    <form id="new-export" class="panel export-form" onSubmit=${create} aria-label="new export">
      <h2>New export</h2>
      <div class="form-grid">
        <div class="field"><label for="export-tenant">Tenant</label>
          <input id="export-tenant" type="text" list="export-tenants" value=${form.tenant_id} onInput=${set('tenant_id')} spellcheck="false" required />
          <datalist id="export-tenants">${tenants.map((t) => html`<option value=${t}></option>`)}</datalist></div>
        <div class="field"><label for="export-from">From (local time, inclusive)</label>
          <input id="export-from" type="datetime-local" step="1" value=${form.from} onInput=${set('from')} required /></div>
        <div class="field"><label for="export-to">To (exclusive)</label>
          <input id="export-to" type="datetime-local" step="1" value=${form.to} onInput=${set('to')} required /></div>
        <div class="field"><label for="export-format">Format</label>
          <select id="export-format" value=${form.format} onChange=${set('format')}>
            ${FORMATS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}</select></div>
        <div class="field wide"><label for="export-where">Where (optional SQL predicate over <code>events</code>)</label>
          <input id="export-where" type="text" class="mono" value=${form.where} onInput=${set('where')} spellcheck="false"
            placeholder="e.g. user_id = 'u1' AND decision = 'deny'" /></div>
        <div class="field field-actions"><button id="create-export" type="submit" class="primary" disabled=${creating}>${creating ? 'Creating…' : 'Create export'}</button></div>
      </div>
      <${ErrorBox} id="export-error" error=${createError} />
    </form>
    <${ErrorBox} id="exports-error" error=${error} />
    ${list === null ? (error ? null : html`<${Loading} what="Loading exports" />`) : html`<div class="table-wrap">
      <table id="exports" class="data" aria-label="exports">
        <thead><tr><th>ID</th><th>Tenant</th><th>Range</th><th>Format</th><th>Status</th><th>Progress</th><th>Requested</th><th><span class="sr-only">Files</span></th></tr></thead>
        <tbody>${list.length ? list.map((v) => html`<${ExportRow} key=${v.id} view=${v} keys=${keys} onExpand=${details} />`)
          : html`<tr class="empty-row"><td colspan="8">No exports yet.</td></tr>`}</tbody>
      </table></div>`}
  </section>`;
}
