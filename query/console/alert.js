// One alert: summary, explanation, evidence numbers, the chart of its
// series, the evidence events, triage controls and history, and links to
// the user, to SQL and (auditors/admins) to an export of the user's events.

import { html, useState, useEffect, useCallback, Severity, Status, Time, ErrorBox, Loading, DataTable, useTitle } from './ui.js';
import { get, post, aborted } from './api.js';
import { Chart, COLORS } from './chart.js';
import { links, num, pValue, cellText, localTime, utcTitle, CLOSE_REASONS, reasonLabel, utcDay, sqlString, duration, parseTime } from './format.js';

const FIRST = ['time', 'server', 'tool', 'resource', 'decision', 'status', 'source_ip', 'session_id'];

/** The evidence columns, the readable ones first. */
export function orderColumns(columns) {
  const by = new Map(columns.map((c) => [c.name, c]));
  const first = FIRST.filter((n) => by.has(n)).map((n) => by.get(n));
  return [...first, ...columns.filter((c) => !FIRST.includes(c.name))];
}

const isTimeCol = (c) => c.name === 'time' || /timestamp/i.test(c.type || '');

/** A result cell: times local (UTC in the title), null dimmed, long text clipped. */
export function cell(v, c) {
  if (v === null || v === undefined) return html`<span class="null">null</span>`;
  if (isTimeCol(c) && typeof v === 'string' && parseTime(v)) {
    return html`<time datetime=${v} title=${utcTitle(v)}>${localTime(v)}</time>`;
  }
  if ((c.name === 'decision' && v === 'deny') || (c.name === 'status' && typeof v === 'number' && v >= 400)) {
    return html`<span class="deny">${String(v)}</span>`;
  }
  const t = cellText(v);
  return t.length > 80 ? html`<span class="clip" title=${t}>${t}</span>` : t;
}

function Field({ label, children }) {
  return html`<div class="kv"><dt>${label}</dt><dd>${children}</dd></div>`;
}

function Triage({ alert, readOnly, onDone }) {
  const [assignee, setAssignee] = useState(alert.assignee || '');
  const [comment, setComment] = useState('');
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  async function send(status) {
    if (status === 'closed' && alert.status !== 'closed' && !reason) {
      setError(new Error('Pick a close reason first.'));
      document.getElementById('triage-close-reason').focus();
      return;
    }
    const body = { status };
    const a = assignee.trim();
    if (a !== (alert.assignee || '')) body.assignee = a || null;
    if (status === 'closed') body.close_reason = status === alert.status ? (reason || alert.close_reason) : reason;
    if (comment.trim()) body.comment = comment.trim();
    setBusy(true);
    setError(null);
    try {
      await post(`/v1/alerts/${encodeURIComponent(alert.alert_id)}/triage`, body);
      setComment('');
      setReason('');
      await onDone();
    } catch (e) {
      setError(e);
    }
    setBusy(false);
  }

  const closed = alert.status === 'closed';
  const dis = busy || readOnly;
  return html`<form class="triage" id="triage" aria-label="triage" onSubmit=${(e) => { e.preventDefault(); send(alert.status); }}>
    ${readOnly ? html`<p class="muted">Read-only: auditors may read alerts but not triage them.</p>` : null}
    <div class="row">
      ${!closed ? html`<button id="ack" type="button" class="primary" disabled=${dis || alert.status === 'acknowledged'}
        onClick=${() => send('acknowledged')}>${alert.status === 'acknowledged' ? 'Acknowledged' : 'Acknowledge'}</button>` : null}
      ${closed ? html`<button id="reopen" type="button" disabled=${dis} onClick=${() => send('open')}>Reopen</button>` : null}
    </div>
    ${!closed ? html`<div class="row">
      <label for="triage-close-reason" class="sr-only">Close reason</label>
      <select id="triage-close-reason" value=${reason} disabled=${dis} onChange=${(e) => setReason(e.target.value)}>
        <option value="">Close reason…</option>
        ${CLOSE_REASONS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}
      </select>
      <button id="close" type="button" disabled=${dis} onClick=${() => send('closed')}>Close</button>
    </div>` : null}
    <label for="triage-assignee">Assignee</label>
    <input id="triage-assignee" type="text" value=${assignee} disabled=${readOnly} spellcheck="false"
      placeholder="unassigned" onInput=${(e) => setAssignee(e.target.value)} />
    <label for="triage-comment">Comment</label>
    <textarea id="triage-comment" rows="3" value=${comment} disabled=${readOnly}
      placeholder="What did you find?" onInput=${(e) => setComment(e.target.value)}></textarea>
    <div class="row">
      <button id="assign" type="submit" disabled=${dis}>Save assignee & comment</button>
    </div>
    <${ErrorBox} id="triage-error" error=${error} />
  </form>`;
}

function History({ rows }) {
  if (!rows || !rows.length) return html`<p class="muted" id="triage-history-empty">No triage yet.</p>`;
  return html`<ol id="triage-history" class="history">
    ${rows.map((t) => html`<li>
      <div><${Status} value=${t.status} /> <strong>${t.actor}</strong> <span class="muted"><${Time} iso=${t.time} /></span></div>
      ${t.close_reason ? html`<div class="muted">reason: ${reasonLabel(t.close_reason)}</div>` : null}
      ${t.assignee ? html`<div class="muted">assignee: ${t.assignee}</div>` : null}
      ${t.comment ? html`<div class="comment">${t.comment}</div>` : null}
    </li>`)}
  </ol>`;
}

export function AlertPage({ alertId, session }) {
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  const [showRecord, setShowRecord] = useState(false);
  useTitle(data ? data.alert.title : 'Alert');

  const load = useCallback(async () => {
    try {
      setData(await get(`/v1/alerts/${encodeURIComponent(alertId)}`));
      setError(null);
    } catch (e) {
      if (!aborted(e)) setError(e);
    }
  }, [alertId]);
  useEffect(() => { load(); }, [load]);

  if (error && !data) {
    return html`<section class="page"><p><a href="#/alerts">← Alerts</a></p>
      <h1>${error.status === 404 ? 'Alert not found' : 'Could not load the alert'}</h1>
      <${ErrorBox} id="alert-error" error=${error} /></section>`;
  }
  if (!data) return html`<section class="page"><${Loading} what="Loading the alert" /></section>`;

  const a = data.alert;
  const s = data.series;
  const mayExport = session.role === 'auditor' || session.role === 'admin';
  const exportHref = links.exports({
    tenant: a.tenant_id, from: utcDay(a.time, -1), to: utcDay(a.time, 2), where: `user_id = ${sqlString(a.user_id)}`,
  });
  const spec = s && {
    points: s.points || [],
    series: [{ key: s.measure, label: `${s.measure} / ${duration(s.bucket_seconds)}`, color: COLORS[s.measure] || COLORS.calls, bars: true }],
    expected: s.expected,
    window: [s.window_start || a.window_start, s.window_end || a.window_end],
    bucketSeconds: s.bucket_seconds,
  };
  const cols = data.events && data.events.columns ? orderColumns(data.events.columns) : [];

  return html`<section class="page alert-page">
    <p class="crumbs"><a href="#/alerts">← Alerts</a></p>
    <div class="alert-head">
      <${Severity} value=${a.severity} score=${a.score} />
      <h1 id="alert-title">${a.title}</h1>
      <${Status} value=${a.status} />
    </div>
    <div class="alert-grid">
      <div class="alert-main">
        <dl class="kvs">
          <${Field} label="Detector"><span class="mono-s">${a.detector}</span><//>
          <${Field} label="Tenant / user">${a.tenant_id} / <a id="user-link" href=${links.user(a.tenant_id, a.user_id)}>${a.user_id}</a><//>
          <${Field} label="Time"><${Time} iso=${a.time} rel /><//>
          <${Field} label="Window"><${Time} iso=${a.window_start} /> → <${Time} iso=${a.window_end} /><//>
          <${Field} label="Score">${a.score}/100${a.repeats > 1 ? html` · repeated ${a.repeats}×` : ''}<//>
          <${Field} label="Assignee">${a.assignee || html`<span class="muted">unassigned</span>`}<//>
          ${a.close_reason ? html`<${Field} label="Close reason">${reasonLabel(a.close_reason)}<//>` : null}
          ${a.triaged_by ? html`<${Field} label="Last triage">${a.triaged_by} · <${Time} iso=${a.triaged_at} /><//>` : null}
        </dl>
        ${a.explanation ? html`<p class="explanation" id="alert-explanation">${a.explanation}</p>` : null}
        <div class="evidence-nums" id="alert-evidence">
          <div class="num-card"><span class="lbl">Observed</span><span class="val">${num(a.observed)}</span></div>
          <div class="num-card"><span class="lbl">Expected</span><span class="val">${num(a.expected)}</span></div>
          <div class="num-card"><span class="lbl">p-value</span><span class="val">${pValue(a.p_value)}</span></div>
          ${a.new_values && a.new_values.length ? html`<div class="num-card wide"><span class="lbl">New values</span>
            <span class="vals">${a.new_values.map((v) => html`<code class="tag">${v}</code>`)}</span></div>` : null}
        </div>
        <h2>${s ? `${s.measure} per ${duration(s.bucket_seconds)}` : 'Activity'}</h2>
        <p class="legend-note muted">Shaded: the alert's window.${s && s.expected != null ? ' Dashed: the expected count per bucket.' : ''}</p>
        <${Chart} id="alert-chart" spec=${spec} height=${220} label=${`${s ? s.measure : 'activity'} per bucket around the alert`} />
        <div class="links-row">
          <a id="open-sql" class="button-link" href=${links.sql(data.sql || '')}>Open the user's events in SQL</a>
          ${mayExport ? html`<a id="export-user" class="button-link" href=${exportHref}>Export this user's events (±1 day)</a>` : null}
        </div>
      </div>
      <aside class="alert-side" aria-label="triage">
        <h2>Triage</h2>
        <${Triage} key=${`${a.status}|${a.assignee}|${(data.triage || []).length}`} alert=${a}
          readOnly=${session.role === 'auditor'} onDone=${load} />
        <h2>History</h2>
        <${History} rows=${data.triage} />
      </aside>
    </div>
    <h2>Evidence events <span class="muted count">${data.events ? data.events.rows.length : 0}</span></h2>
    ${cols.length ? html`<${DataTable} id="evidence" label="evidence events" columns=${cols} rows=${data.events.rows} cell=${cell} />`
      : html`<p class="muted">No events are attached to this alert.</p>`}
    <p><button type="button" class="ghost" aria-expanded=${String(showRecord)} onClick=${() => setShowRecord(!showRecord)}>
      ${showRecord ? 'Hide' : 'Show'} the alert record (JSON)</button></p>
    ${showRecord ? html`<pre class="record" id="alert-record">${JSON.stringify(a.record, null, 2)}</pre>` : null}
  </section>`;
}
