// Shared pieces: the one import of preact + htm (pages import them from
// here, so updating the vendored file touches one line), and small
// components used on several pages.

import {
  html, render, useState, useEffect, useRef, useMemo, useCallback, useReducer,
} from './vendor/htm-preact-standalone-3.1.1.mjs';
import { localTime, relTime, utcTitle, links } from './format.js';

export { html, render, useState, useEffect, useRef, useMemo, useCallback, useReducer };

/** A time in local time; the UTC ISO string in the title; optionally relative. */
export function Time({ iso, rel = false, seconds = true }) {
  if (!iso) return html`<span class="muted">—</span>`;
  return html`<time datetime=${iso} title=${utcTitle(iso)}>${localTime(iso, { seconds })}${
    rel ? html` <span class="rel">${relTime(iso)}</span>` : null}</time>`;
}

export function Severity({ value, score }) {
  const v = value || 'unknown';
  const title = score != null ? `${v}, score ${score}/100` : v;
  return html`<span class=${`sev sev-${v}`} title=${title}>${v}</span>`;
}

export function Status({ value }) {
  return html`<span class=${`st st-${value || 'unknown'}`}>${value || '—'}</span>`;
}

/** An error message where the action happened; renders empty (hidden by CSS) when none. */
export function ErrorBox({ id, error }) {
  const msg = error ? (error.message || String(error)) : '';
  return html`<div id=${id} class="error" role="alert">${msg}</div>`;
}

export function Loading({ what = 'Loading' }) {
  return html`<p class="loading" aria-live="polite">${what}…</p>`;
}

/**
 * The alert table of the inbox and the user page. With `select`, a first
 * column of checkboxes; `focusedId` and `newIds` mark rows.
 */
export function AlertTable({
  id, alerts, select, selected, onToggle, onToggleAll, focusedId, newIds, onRowClick, caption,
}) {
  const all = select && alerts.length > 0 && alerts.every((a) => selected.has(a.alert_id));
  return html`<table id=${id} class="data alerts" aria-label=${caption || 'alerts'}>
    <thead><tr>
      ${select ? html`<th class="check"><input type="checkbox" aria-label="select all alerts"
        checked=${all} onChange=${(e) => onToggleAll(e.target.checked)} /></th>` : null}
      <th>Severity</th><th>Time</th><th>Tenant</th><th>User</th><th>Detector</th>
      <th class="title-col">Title</th><th>Status</th><th>Assignee</th>
    </tr></thead>
    <tbody>
      ${alerts.map((a) => {
        const cls = [a.alert_id === focusedId ? 'focused' : '', newIds && newIds.has(a.alert_id) ? 'new' : '',
          selected && selected.has(a.alert_id) ? 'selected' : ''].filter(Boolean).join(' ');
        return html`<tr key=${a.alert_id} data-alert-id=${a.alert_id} class=${cls}
            aria-selected=${select ? String(a.alert_id === focusedId) : undefined}
            onClick=${onRowClick ? (e) => onRowClick(a, e) : undefined}>
          ${select ? html`<td class="check"><input type="checkbox" data-select aria-label="select alert"
            checked=${selected.has(a.alert_id)} onChange=${() => onToggle(a.alert_id)} /></td>` : null}
          <td><${Severity} value=${a.severity} score=${a.score} /></td>
          <td class="nowrap"><${Time} iso=${a.time} rel seconds=${false} /></td>
          <td class="ellip">${a.tenant_id}</td>
          <td class="ellip"><a href=${links.user(a.tenant_id, a.user_id)} title=${a.user_id}>${a.user_id}</a></td>
          <td class="ellip mono-s">${a.detector}</td>
          <td class="title-col"><div class="t"><a href=${links.alert(a.alert_id)} title=${a.title}>${a.title}</a>${
            a.repeats > 1 ? html`<span class="repeats" title=${`repeated ${a.repeats} times`}>×${a.repeats}</span>` : null}</div></td>
          <td class="status"><${Status} value=${a.status} /></td>
          <td class="ellip">${a.assignee || html`<span class="muted">—</span>`}</td>
        </tr>`;
      })}
    </tbody>
  </table>`;
}

/** A plain result table from {columns:[{name,type}], rows:[{...}]}; `cell` renders a value. */
export function DataTable({ id, columns, rows, cell, label }) {
  return html`<div class="table-wrap"><table id=${id} class="data cells" aria-label=${label || id}>
    <thead><tr>${columns.map((c) => html`<th title=${c.type || ''}>${c.name}</th>`)}</tr></thead>
    <tbody>${rows.map((r, i) => html`<tr key=${i}>${columns.map((c) => html`<td>${cell(r[c.name], c)}</td>`)}</tr>`)}</tbody>
  </table></div>`;
}

/** Sets document.title while a page is shown. */
export function useTitle(title) {
  useEffect(() => { document.title = title ? `${title} · tooltrail console` : 'tooltrail console'; }, [title]);
}
