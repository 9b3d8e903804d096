// The SQL page: example investigations, the editor (Ctrl/Cmd+Enter runs),
// results paged 100 rows at a time, CSV/Parquet downloads, and the last 20
// queries in localStorage.

import { html, useState, useEffect, useRef, ErrorBox, DataTable, Time, useTitle } from './ui.js';
import { get, post, request, saveBlob } from './api.js';
import { cell } from './alert.js';
import { num } from './format.js';

const PAGE = 100;
const HISTORY = 'tooltrail.sqlHistory';
const HISTORY_MAX = 20;
const DRAFT = 'tooltrail.sqlDraft';

function readHistory() {
  try {
    const h = JSON.parse(localStorage.getItem(HISTORY));
    return Array.isArray(h) ? h.filter((e) => e && typeof e.sql === 'string') : [];
  } catch { return []; }
}

function remember(sql) {
  const h = [{ sql, at: new Date().toISOString() }, ...readHistory().filter((e) => e.sql !== sql)].slice(0, HISTORY_MAX);
  try { localStorage.setItem(HISTORY, JSON.stringify(h)); } catch { /* full or disabled */ }
  return h;
}

const firstLine = (sql) => {
  const lines = sql.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('--'));
  const s = lines.join(' ');
  return s.length > 140 ? `${s.slice(0, 140)}…` : s || sql.slice(0, 140);
};

export function SqlPage({ initial }) {
  useTitle('SQL');
  const [sql, setSql] = useState(() => initial || sessionStorage.getItem(DRAFT) || '');
  const [examples, setExamples] = useState([]);
  const [exampleError, setExampleError] = useState(null);
  const [picked, setPicked] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  const [running, setRunning] = useState(false);
  const [downloading, setDownloading] = useState('');
  const [page, setPage] = useState(0);
  const [history, setHistory] = useState(readHistory);
  const editor = useRef(null);

  useEffect(() => {
    get('/v1/queries').then((r) => setExamples(r.queries || []), setExampleError);
    if (editor.current) editor.current.focus();
  }, []);
  useEffect(() => { try { sessionStorage.setItem(DRAFT, sql); } catch { /* ignore */ } }, [sql]);

  const example = examples.find((q) => q.name === picked);

  function pick(name) {
    setPicked(name);
    const q = examples.find((e) => e.name === name);
    if (q) {
      setSql(q.sql);
      setError(null);
      if (editor.current) editor.current.focus();
    }
  }

  async function run() {
    const text = sql.trim();
    if (!text) { setError(new Error('Write a query first.')); return; }
    setRunning(true);
    setError(null);
    const t0 = performance.now();
    try {
      const r = await post('/v1/sql', { sql: text, format: 'json' });
      r.elapsed = (performance.now() - t0) / 1000;
      setResult(r);
      setPage(0);
      setHistory(remember(text));
    } catch (e) {
      setError(e);
    }
    setRunning(false);
  }

  async function download(format) {
    const text = sql.trim();
    if (!text) { setError(new Error('Write a query first.')); return; }
    setDownloading(format);
    setError(null);
    try {
      const res = await request('POST', '/v1/sql', { sql: text, format }, { raw: true });
      saveBlob(await res.blob(), `result.${format}`);
      setHistory(remember(text));
    } catch (e) {
      setError(e);
    }
    setDownloading('');
  }

  const onKey = (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run(); }
  };

  const rows = result ? result.rows || [] : [];
  const total = rows.length;
  const pages = Math.max(1, Math.ceil(total / PAGE));
  const from = page * PAGE;
  const shown = rows.slice(from, from + PAGE);
  const placeholders = [...new Set((sql.match(/\{\{\s*[\w.-]+\s*\}\}/g) || []))];

  return html`<section class="page sql-page">
    <div class="page-head"><h1>SQL</h1><span class="spacer"></span>
      <span class="muted">Read-only SQL over <code>events</code>, <code>alerts</code> and the other tables. <kbd>Ctrl</kbd>/<kbd>⌘</kbd>+<kbd>Enter</kbd> runs.</span>
    </div>
    <div class="sql-grid">
      <div class="sql-main">
        <div class="field">
          <label for="examples">Example investigations</label>
          <select id="examples" value=${picked} onChange=${(e) => pick(e.target.value)}>
            <option value="">${examples.length ? 'Pick an example…' : 'No examples loaded'}</option>
            ${examples.map((q) => html`<option value=${q.name}>${q.title || q.name}</option>`)}
          </select>
          <${ErrorBox} id="examples-error" error=${exampleError} />
        </div>
        ${example && example.description ? html`<p class="example-desc muted" id="example-description">${example.description}</p>` : null}
        <label for="sql-editor">Query</label>
        <textarea id="sql-editor" ref=${editor} class="editor" rows="12" spellcheck="false" autocapitalize="off"
          autocomplete="off" value=${sql} onInput=${(e) => setSql(e.target.value)} onKeyDown=${onKey}
          placeholder="SELECT tool, count(*) AS calls FROM events GROUP BY tool ORDER BY calls DESC LIMIT 20"></textarea>
        ${placeholders.length ? html`<p class="hint" id="sql-placeholders">Replace the placeholders before running: ${placeholders.map((p) => html`<code class="tag">${p}</code> `)}</p>` : null}
        <div class="row actions">
          <button id="run-sql" type="button" class="primary" disabled=${running} onClick=${run}>${running ? 'Running…' : 'Run'}</button>
          <button id="download-csv" type="button" disabled=${!!downloading} onClick=${() => download('csv')}>${downloading === 'csv' ? 'Preparing…' : 'Download CSV'}</button>
          <button id="download-parquet" type="button" disabled=${!!downloading} onClick=${() => download('parquet')}>${downloading === 'parquet' ? 'Preparing…' : 'Download Parquet'}</button>
        </div>
        <${ErrorBox} id="sql-error" error=${error} />
      </div>
      <aside class="sql-side" aria-label="query history">
        <h2>Recent queries</h2>
        <ul id="sql-history" class="history-list">
          ${history.length ? history.map((h) => html`<li><button type="button" class="linkish" title=${h.sql}
            onClick=${() => { setSql(h.sql); setPicked(''); if (editor.current) editor.current.focus(); }}>
            <span class="mono-s">${firstLine(h.sql)}</span></button><span class="muted small"><${Time} iso=${h.at} rel /></span></li>`)
            : html`<li class="muted">Queries you run appear here.</li>`}
        </ul>
      </aside>
    </div>

    ${result ? html`<div class="result" id="sql-result-area">
      <div class="pager">
        <span id="sql-count">${total ? `rows ${num(from + 1)}–${num(Math.min(from + PAGE, total))} of ${num(total)}` : 'no rows'}</span>
        <span class="muted">· ${(result.columns || []).length} columns · ${result.elapsed.toFixed(2)} s</span>
        ${result.truncated ? html`<span class="warn" id="sql-truncated">The result was truncated at ${num(result.row_count != null ? result.row_count : total)} rows; add a LIMIT or aggregate, or download it.</span>` : null}
        <span class="spacer"></span>
        <button id="sql-prev" type="button" disabled=${page === 0} onClick=${() => setPage(page - 1)} aria-label="previous page">‹ Prev</button>
        <span class="muted">page ${page + 1} of ${pages}</span>
        <button id="sql-next" type="button" disabled=${page >= pages - 1} onClick=${() => setPage(page + 1)} aria-label="next page">Next ›</button>
      </div>
      <${DataTable} id="sql-result" label="query result" columns=${result.columns || []} rows=${shown} cell=${cell} />
    </div>` : null}
  </section>`;
}
