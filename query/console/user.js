// One user of one tenant: hourly activity, first-seen values, alerts and
// sessions, over 7 or 30 days.

import { html, useState, useEffect, useMemo, AlertTable, ErrorBox, Loading, Time, useTitle } from './ui.js';
import { get, aborted } from './api.js';
import { Chart, COLORS } from './chart.js';
import { num, duration, parseTime, links, sqlString } from './format.js';

const KINDS = ['tool', 'server', 'source_ip', 'client_id'];

export function UserPage({ tenant, user }) {
  const [days, setDays] = useState(7);
  const [data, setData] = useState(null);
  const [error, setError] = useState(null);
  useTitle(`${user} · ${tenant}`);

  useEffect(() => {
    const ctl = new AbortController();
    setError(null);
    get(`/v1/users/${encodeURIComponent(tenant)}/${encodeURIComponent(user)}?days=${days}`, { signal: ctl.signal })
      .then(setData, (e) => { if (!aborted(e)) setError(e); });
    return () => ctl.abort();
  }, [tenant, user, days]);

  const spec = useMemo(() => data && {
    points: data.hourly || [],
    series: [
      { key: 'calls', label: 'calls / hour', color: COLORS.calls },
      { key: 'denials', label: 'denials / hour', color: COLORS.denials },
    ],
    bucketSeconds: 3600,
  }, [data]);

  const firstSeen = useMemo(() => {
    if (!data || !data.first_seen) return [];
    const kinds = [...KINDS, ...Object.keys(data.first_seen).filter((k) => !KINDS.includes(k))];
    return kinds.flatMap((k) => [...(data.first_seen[k] || [])]
      .sort((x, y) => String(y.first_seen).localeCompare(String(x.first_seen)))
      .map((r) => ({ kind: k, ...r })));
  }, [data]);

  const totals = useMemo(() => (data ? (data.hourly || []).reduce(
    (t, p) => ({ calls: t.calls + (p.calls || 0), denials: t.denials + (p.denials || 0) }), { calls: 0, denials: 0 },
  ) : null), [data]);

  const sql = `SELECT * FROM events\nWHERE tenant_id = ${sqlString(tenant)} AND user_id = ${sqlString(user)}\n  AND time >= now() - INTERVAL '${days} days'\nORDER BY time DESC\nLIMIT 500`;

  return html`<section class="page user-page">
    <p class="crumbs"><a href="#/alerts">← Alerts</a></p>
    <div class="page-head">
      <h1 id="user-title">${user} · ${tenant}</h1>
      <span class="spacer"></span>
      <div class="seg" role="group" aria-label="time range">
        ${[7, 30].map((d) => html`<button type="button" id=${`days-${d}`} aria-pressed=${String(days === d)}
          class=${days === d ? 'on' : ''} onClick=${() => setDays(d)}>${d} days</button>`)}
      </div>
      <a class="button-link" id="user-sql" href=${links.sql(sql)}>Events in SQL</a>
    </div>
    <${ErrorBox} id="user-error" error=${error} />
    ${!data ? (error ? null : html`<${Loading} what="Loading the user" />`) : html`
      <p class="muted summary">Last ${data.days || days} days: ${num(totals.calls)} calls, ${num(totals.denials)} denials, ${(data.sessions || []).length} sessions, ${(data.alerts || []).length} alerts.</p>
      <${Chart} id="user-chart" spec=${spec} height=${220} label="calls and denials per hour" />

      <div class="two-col">
        <div>
          <h2>First seen</h2>
          <div class="table-wrap scroll-y"><table id="first-seen" class="data" aria-label="first seen values">
            <thead><tr><th>Kind</th><th>Value</th><th>First seen</th></tr></thead>
            <tbody>${firstSeen.length ? firstSeen.map((r) => html`<tr><td class="muted">${r.kind}</td><td class="mono-s ellip">${r.value}</td>
              <td class="nowrap"><${Time} iso=${r.first_seen} rel /></td></tr>`) : html`<tr class="empty-row"><td colspan="3">No values first seen in this range.</td></tr>`}</tbody>
          </table></div>
        </div>
        <div>
          <h2>Sessions</h2>
          <div class="table-wrap scroll-y"><table id="user-sessions" class="data" aria-label="sessions">
            <thead><tr><th>Session</th><th>Start</th><th>Duration</th><th class="r">Calls</th><th class="r">Denials</th><th class="r">Tools</th></tr></thead>
            <tbody>${(data.sessions || []).length === 0 ? html`<tr class="empty-row"><td colspan="6">No sessions in this range.</td></tr>` : data.sessions.map((s) => {
              const a = parseTime(s.start);
              const b = parseTime(s.end);
              return html`<tr><td class="mono-s ellip" title=${s.session_id}>${s.session_id}</td>
                <td class="nowrap"><${Time} iso=${s.start} /></td>
                <td>${a && b ? duration((b - a) / 1000) : '—'}</td>
                <td class="r">${num(s.calls)}</td><td class=${s.denials ? 'r deny' : 'r'}>${num(s.denials)}</td><td class="r">${num(s.tools)}</td></tr>`;
            })}</tbody>
          </table></div>
        </div>
      </div>

      <h2>Alerts</h2>
      <div class="table-wrap"><${AlertTable} id="user-alerts" caption="the user's alerts" alerts=${data.alerts || []} /></div>
      ${(data.alerts || []).length ? null : html`<p class="muted">No alerts for this user in this range.</p>`}
    `}
  </section>`;
}
