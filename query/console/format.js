// Formatting helpers: times (local display, UTC in titles), numbers, bytes,
// and the hash links of the console's pages. No DOM, no imports.

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** Parses an RFC 3339 string; null when missing or invalid. */
export function parseTime(iso) {
  if (iso == null || iso === '') return null;
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "2025-03-01 14:05:09" in the browser's local time; "—" when missing. */
export function localTime(iso, { seconds = true } = {}) {
  const d = parseTime(iso);
  if (!d) return iso ? String(iso) : '—';
  const s = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return seconds ? `${s}:${pad(d.getSeconds())}` : s;
}

/** The UTC ISO string, for title attributes. */
export function utcTitle(iso) {
  const d = parseTime(iso);
  return d ? d.toISOString() : (iso ? String(iso) : '');
}

/** "just now", "5m ago", "3h ago", "2d ago", "in 4m". */
export function relTime(iso, now = Date.now()) {
  const d = parseTime(iso);
  if (!d) return '';
  let s = Math.round((now - d.getTime()) / 1000);
  const future = s < 0;
  s = Math.abs(s);
  let t;
  if (s < 45) return 'just now';
  if (s < 3600) t = `${Math.round(s / 60)}m`;
  else if (s < 86400 * 2) t = `${Math.round(s / 3600)}h`;
  else if (s < 86400 * 60) t = `${Math.round(s / 86400)}d`;
  else t = `${Math.round(s / (86400 * 30))}mo`;
  return future ? `in ${t}` : `${t} ago`;
}

/** A span of seconds as "45s", "12m", "3h 05m", "2d 4h". */
export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const join = (a, ua, b, ub) => (b ? `${a}${ua} ${b}${ub}` : `${a}${ua}`);
  if (s < 3600) return join(Math.floor(s / 60), 'm', s % 60, 's');
  if (s < 86400) return join(Math.floor(s / 3600), 'h', Math.floor((s % 3600) / 60), 'm');
  return join(Math.floor(s / 86400), 'd', Math.floor((s % 86400) / 3600), 'h');
}

/** A <input type="datetime-local"> value (local time) → RFC 3339 UTC, or "" . */
export function localInputToRfc3339(value) {
  if (!value) return '';
  const d = new Date(value); // a datetime-local value parses as local time
  if (Number.isNaN(d.getTime())) return '';
  return d.toISOString().replace(/\.000Z$/, 'Z');
}

/** RFC 3339 → a <input type="datetime-local"> value in local time, or "". */
export function rfc3339ToLocalInput(iso) {
  const d = parseTime(iso);
  if (!d) return '';
  const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return d.getSeconds() ? `${base}:${pad(d.getSeconds())}` : base;
}

/** Midnight UTC of the day of `iso`, shifted by `days`, as RFC 3339. */
export function utcDay(iso, days = 0) {
  const d = parseTime(iso) || new Date();
  const t = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + days);
  return new Date(t).toISOString().replace(/\.000Z$/, 'Z');
}

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

export function num(n) {
  if (n == null || n === '') return '—';
  return typeof n === 'number' ? nf.format(n) : String(n);
}

/** A p-value: 3 significant digits, scientific below 0.001. */
export function pValue(p) {
  if (p == null) return '—';
  if (p === 0) return '0';
  return p < 0.001 ? p.toExponential(2) : String(Number(p.toPrecision(3)));
}

export function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[i]}`;
}

/** Any cell value as display text: null → "null", objects → JSON. */
export function cellText(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/** The hash links of the pages. */
export const links = {
  alerts: () => '#/alerts',
  alert: (id) => `#/alerts/${encodeURIComponent(id)}`,
  user: (tenant, user) => `#/users/${encodeURIComponent(tenant)}/${encodeURIComponent(user)}`,
  sql: (q) => (q ? `#/sql?q=${encodeURIComponent(q)}` : '#/sql'),
  exports: (prefill) => {
    if (!prefill) return '#/exports';
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(prefill)) if (v) p.set(k, v);
    return `#/exports?${p.toString().replace(/\+/g, '%20')}`;
  },
};

/** Quotes a string as a SQL literal ('' doubles a quote). */
export function sqlString(s) {
  return `'${String(s).replace(/'/g, "''")}'`;
}

export const CLOSE_REASONS = [
  ['false_positive', 'False positive'],
  ['true_positive_benign', 'True positive, benign'],
  ['true_positive_malicious', 'True positive, malicious'],
  ['duplicate', 'Duplicate'],
  ['testing', 'Testing'],
  ['other', 'Other'],
];

export function reasonLabel(r) {
  const found = CLOSE_REASONS.find(([k]) => k === r);
  return found ? found[1] : (r || '');
}
