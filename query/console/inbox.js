// The alert inbox: filters, the table with keyboard navigation and
// selection, bulk triage, "load more", and live refresh over SSE.

import {
  html, useState, useEffect, useRef, useCallback, AlertTable, ErrorBox, Loading, useTitle,
} from './ui.js';
import { get, post, query, aborted } from './api.js';
import { localInputToRfc3339, CLOSE_REASONS, links } from './format.js';

const PAGE = 50;
const STATUS_CHOICES = [
  ['open,acknowledged', 'Open + acknowledged'],
  ['open', 'Open'],
  ['acknowledged', 'Acknowledged'],
  ['closed', 'Closed'],
  ['', 'All statuses'],
];
const SEVERITIES = ['critical', 'high', 'medium', 'low'];
const DEFAULTS = {
  status: 'open,acknowledged', severity: [], detector: '', tenant: '', user: '', from: '', to: '', sort: 'newest',
};
const STORE = 'tooltrail.inboxFilters';

function loadFilters() {
  try {
    const f = JSON.parse(sessionStorage.getItem(STORE));
    if (f && typeof f === 'object') return { ...DEFAULTS, ...f };
  } catch { /* ignore */ }
  return { ...DEFAULTS };
}

function listUrl(f, limit, cursor) {
  const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);
  return `/v1/alerts${query({
    status: f.status, severity: f.severity, detector: list(f.detector), tenant: f.tenant.trim(),
    user: f.user.trim(), from: localInputToRfc3339(f.from), to: localInputToRfc3339(f.to),
    sort: f.sort, limit, cursor,
  })}`;
}

const typing = (t) => t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName));

export function Inbox({ session }) {
  useTitle('Alerts');
  const [filters, setFilters] = useState(loadFilters);
  const [alerts, setAlerts] = useState(null);
  const [cursor, setCursor] = useState(null);
  const [error, setError] = useState(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const [selected, setSelected] = useState(() => new Set());
  const [focusedId, setFocusedId] = useState(null);
  const [newIds, setNewIds] = useState(() => new Set());
  const [live, setLive] = useState('connecting');
  const [bulkReason, setBulkReason] = useState('');
  const [bulkError, setBulkError] = useState(null);
  const [bulkNote, setBulkNote] = useState('');
  const [busy, setBusy] = useState(false);
  const readOnly = session.role === 'auditor';

  // Refs the event handlers read, so they always see the latest state.
  const st = useRef({});
  st.current = { alerts, filters, focusedId, selected, cursor };
  const firstFilter = useRef(null);
  const closeSelect = useRef(null);
  const seq = useRef(0);

  /** Loads the first page (or as many rows as are shown, when refreshing). */
  const refresh = useCallback(async ({ highlight = false, keepCount = false } = {}) => {
    const my = ++seq.current;
    const { alerts: prev, filters: f } = st.current;
    const limit = keepCount && prev ? Math.min(Math.max(PAGE, prev.length), 500) : PAGE;
    try {
      const res = await get(listUrl(f, limit));
      if (my !== seq.current) return;
      const list = res.alerts || [];
      if (highlight && prev) {
        const before = new Set(prev.map((a) => a.alert_id));
        const fresh = new Set(list.filter((a) => !before.has(a.alert_id)).map((a) => a.alert_id));
        if (fresh.size) {
          setNewIds(fresh);
          setTimeout(() => setNewIds((cur) => (cur === fresh ? new Set() : cur)), 4000);
        }
      }
      setAlerts(list);
      setCursor(res.next_cursor || null);
      setError(null);
      const ids = new Set(list.map((a) => a.alert_id));
      setSelected((s) => new Set([...s].filter((id) => ids.has(id))));
      const { focusedId: fid } = st.current;
      if (fid && !ids.has(fid)) {
        const idx = prev ? prev.findIndex((a) => a.alert_id === fid) : -1;
        const next = list[Math.min(Math.max(idx, 0), list.length - 1)];
        setFocusedId(next ? next.alert_id : null);
      }
    } catch (e) {
      if (!aborted(e) && my === seq.current) setError(e);
    }
  }, []);

  useEffect(() => {
    sessionStorage.setItem(STORE, JSON.stringify(filters));
    setAlerts(null);
    setSelected(new Set());
    refresh();
  }, [filters]);

  // Live updates.
  useEffect(() => {
    let es = null;
    let timer = null;
    let retry = null;
    let closed = false;
    const connect = () => {
      es = new EventSource('/v1/alerts/stream');
      es.onopen = () => setLive('live');
      es.onerror = () => {
        setLive('reconnecting');
        if (es.readyState === EventSource.CLOSED && !closed) {
          // The browser gave up (e.g. a 401): check the session, then retry.
          retry = setTimeout(() => { get('/v1/session').then(connect, () => {}); }, 5000);
        }
      };
      es.addEventListener('changed', () => {
        setLive('live');
        clearTimeout(timer);
        timer = setTimeout(() => refresh({ highlight: true, keepCount: true }), 250);
      });
    };
    connect();
    return () => { closed = true; clearTimeout(timer); clearTimeout(retry); if (es) es.close(); };
  }, []);

  const setFilter = (k, v) => setFilters((f) => ({ ...f, [k]: v }));

  async function loadMore() {
    setLoadingMore(true);
    try {
      const res = await get(listUrl(filters, PAGE, cursor));
      const have = new Set(alerts.map((a) => a.alert_id));
      setAlerts([...alerts, ...(res.alerts || []).filter((a) => !have.has(a.alert_id))]);
      setCursor(res.next_cursor || null);
    } catch (e) {
      setError(e);
    }
    setLoadingMore(false);
  }

  const toggle = (id) => setSelected((s) => {
    const n = new Set(s);
    if (n.has(id)) n.delete(id); else n.add(id);
    return n;
  });

  async function bulk(status, reason) {
    const { selected: sel, focusedId: fid } = st.current;
    const ids = sel.size ? [...sel] : (fid ? [fid] : []);
    setBulkNote('');
    if (!ids.length) { setBulkError(new Error('Select alerts first (x or the checkboxes).')); return; }
    if (readOnly) { setBulkError(new Error('Auditors may read alerts but not triage them.')); return; }
    if (status === 'closed' && !reason) {
      setBulkError(new Error('Pick a close reason first.'));
      if (closeSelect.current) closeSelect.current.focus();
      return;
    }
    setBulkError(null);
    setBusy(true);
    try {
      const body = { alert_ids: ids.slice(0, 500), status };
      if (reason) body.close_reason = reason;
      const res = await post('/v1/alerts/triage', body);
      const n = (res.triaged || []).length;
      const missing = (res.not_found || []).length;
      setBulkNote(`${status === 'closed' ? 'Closed' : 'Acknowledged'} ${n} alert${n === 1 ? '' : 's'}${
        missing ? `; ${missing} not found` : ''}.`);
      setSelected(new Set());
      await refresh({ keepCount: true });
    } catch (e) {
      setBulkError(e);
    }
    setBusy(false);
  }

  // Keyboard: j/k, arrows, Enter/o, x, a, c, /.
  useEffect(() => {
    const onKey = (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
      const { alerts: list, focusedId: fid } = st.current;
      if (e.key === '/') {
        e.preventDefault();
        if (firstFilter.current) firstFilter.current.focus();
        return;
      }
      if (!list || !list.length) return;
      const idx = list.findIndex((a) => a.alert_id === fid);
      const move = (d) => {
        e.preventDefault();
        const next = list[idx < 0 ? 0 : Math.min(list.length - 1, Math.max(0, idx + d))];
        setFocusedId(next.alert_id);
        const row = document.querySelector(`tr[data-alert-id="${CSS.escape(next.alert_id)}"]`);
        if (row) row.scrollIntoView({ block: 'nearest' });
      };
      const onControl = /^(A|BUTTON)$/.test(e.target.tagName);
      switch (e.key) {
        case 'j': case 'ArrowDown': move(1); break;
        case 'k': case 'ArrowUp': move(-1); break;
        case 'Enter': case 'o':
          if (onControl && e.key === 'Enter') return;
          if (fid) { e.preventDefault(); location.hash = links.alert(fid); }
          break;
        case 'x': if (fid) { e.preventDefault(); toggle(fid); } break;
        case 'a': e.preventDefault(); bulk('acknowledged'); break;
        case 'c': if (closeSelect.current) { e.preventDefault(); closeSelect.current.focus(); } break;
        default:
      }
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, []);

  const onRowClick = (a, e) => {
    if (/^(A|INPUT|BUTTON|LABEL)$/.test(e.target.tagName)) return;
    setFocusedId(a.alert_id);
  };

  const sevToggle = (s, on) => setFilter('severity', on ? [...filters.severity, s] : filters.severity.filter((x) => x !== s));
  const n = selected.size;
  const filtered = JSON.stringify(filters) !== JSON.stringify(DEFAULTS);

  return html`<section class="page inbox-page">
    <div class="page-head">
      <h1>Alerts</h1>
      <span id="live" class=${`live live-${live}`} role="status" title="updates over server-sent events">
        <span class="dot" aria-hidden="true"></span>${live === 'live' ? 'live' : live === 'connecting' ? 'connecting' : 'reconnecting'}</span>
      <span class="spacer"></span>
      <span class="kbd-help muted">
        <kbd>j</kbd>/<kbd>k</kbd> move · <kbd>o</kbd> open · <kbd>x</kbd> select · <kbd>a</kbd> acknowledge · <kbd>c</kbd> close · <kbd>/</kbd> filter
      </span>
    </div>

    <form class="filters" id="inbox-filters" aria-label="filters" onSubmit=${(e) => e.preventDefault()}>
      <div class="field">
        <label for="f-status">Status</label>
        <select id="f-status" ref=${firstFilter} value=${filters.status} onChange=${(e) => setFilter('status', e.target.value)}>
          ${STATUS_CHOICES.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
        </select>
      </div>
      <fieldset class="field sev-filter">
        <legend>Severity</legend>
        <div class="chips">${SEVERITIES.map((s) => html`<label class=${`chip chip-${s}`}>
          <input type="checkbox" id=${`f-sev-${s}`} checked=${filters.severity.includes(s)}
            onChange=${(e) => sevToggle(s, e.target.checked)} />${s}</label>`)}</div>
      </fieldset>
      ${[['detector', 'Detector', 'e.g. new_tool'], ['tenant', 'Tenant', 'tenant id'], ['user', 'User', 'user id']].map(([k, l, ph]) => html`
        <div class="field">
          <label for=${`f-${k}`}>${l}</label>
          <input id=${`f-${k}`} type="text" placeholder=${ph} value=${filters[k]} spellcheck="false"
            onChange=${(e) => setFilter(k, e.target.value)} />
        </div>`)}
      <div class="field">
        <label for="f-from">From</label>
        <input id="f-from" type="datetime-local" value=${filters.from} onChange=${(e) => setFilter('from', e.target.value)} />
      </div>
      <div class="field">
        <label for="f-to">To</label>
        <input id="f-to" type="datetime-local" value=${filters.to} onChange=${(e) => setFilter('to', e.target.value)} />
      </div>
      <div class="field">
        <label for="f-sort">Sort</label>
        <select id="f-sort" value=${filters.sort} onChange=${(e) => setFilter('sort', e.target.value)}>
          <option value="newest">Newest first</option>
          <option value="oldest">Oldest first</option>
          <option value="severity">Severity</option>
        </select>
      </div>
      <div class="field field-actions">
        <button type="button" class="ghost" id="reset-filters" disabled=${!filtered}
          onClick=${() => setFilters({ ...DEFAULTS })}>Reset</button>
      </div>
    </form>

    <div class="bulkbar" role="group" aria-label="bulk triage">
      <span class="count">${n ? `${n} selected` : 'None selected'}</span>
      <button id="bulk-ack" type="button" disabled=${busy || readOnly || !n} onClick=${() => bulk('acknowledged')}>Acknowledge</button>
      <label for="bulk-close-reason" class="sr-only">Close reason</label>
      <select id="bulk-close-reason" ref=${closeSelect} value=${bulkReason} disabled=${readOnly}
        onChange=${(e) => setBulkReason(e.target.value)}>
        <option value="">Close reason…</option>
        ${CLOSE_REASONS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
      </select>
      <button id="bulk-close" type="button" disabled=${busy || readOnly || !n} onClick=${() => bulk('closed', bulkReason)}>Close</button>
      ${readOnly ? html`<span class="muted">Read-only: auditors cannot triage.</span>` : null}
      <span class="ok-note" role="status">${bulkNote}</span>
      <${ErrorBox} id="bulk-error" error=${bulkError} />
    </div>

    <${ErrorBox} id="inbox-error" error=${error} />
    ${alerts === null ? (error ? null : html`<${Loading} what="Loading alerts" />`) : alerts.length === 0
      ? html`<div class="empty" id="inbox-empty"><p><strong>No alerts match these filters.</strong></p>
          <p class="muted">${filters.status === 'open,acknowledged' ? 'Nothing open right now. ' : ''}Try another status, or reset the filters.</p></div>`
      : html`<div class="table-wrap sticky"><${AlertTable} id="inbox" caption="alert inbox" alerts=${alerts} select
          selected=${selected} onToggle=${toggle} focusedId=${focusedId} newIds=${newIds} onRowClick=${onRowClick}
          onToggleAll=${(on) => setSelected(on ? new Set(alerts.map((a) => a.alert_id)) : new Set())} /></div>`}
    ${alerts && alerts.length ? html`<div class="table-foot">
      <span class="muted">${alerts.length} shown${cursor ? ', more available' : ''}</span>
      ${cursor ? html`<button id="load-more" type="button" onClick=${loadMore} disabled=${loadingMore}>${loadingMore ? 'Loading…' : 'Load more'}</button>` : null}
    </div>` : null}
  </section>`;
}
