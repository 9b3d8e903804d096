// uPlot helpers: a time-series chart as a preact component, bars or lines
// per series, an optional dashed "expected" level and a shaded window.

import uPlot from './vendor/uPlot-1.6.32.esm.js';
import { html, useEffect, useRef } from './ui.js';
import { parseTime } from './format.js';

export const COLORS = {
  calls: '#2f5fd0',
  denials: '#c8322b',
  expected: '#5b6675',
  window: 'rgba(234, 170, 0, 0.16)',
  windowEdge: 'rgba(181, 120, 0, 0.7)',
};

const secs = (iso) => {
  const d = parseTime(iso);
  return d ? d.getTime() / 1000 : null;
};

/**
 * Builds uPlot data and options.
 * spec = {points: [{time, ...}], series: [{key, label, color, bars}],
 *         expected?: number|null, window?: [startIso, endIso], bucketSeconds?}
 */
export function buildChart(spec, width, height) {
  const pts = spec.points || [];
  const xs = pts.map((p) => secs(p.time));
  const data = [xs];
  const series = [{}];
  const barsPath = uPlot.paths.bars ? uPlot.paths.bars({ size: [0.8, 32], gap: 1, align: 1 }) : undefined;
  for (const s of spec.series) {
    data.push(pts.map((p) => (p[s.key] == null ? null : Number(p[s.key]))));
    series.push({
      label: s.label,
      stroke: s.color,
      width: s.bars ? 0 : 1.75,
      fill: s.bars ? s.color + 'cc' : s.color + '1f',
      paths: s.bars ? barsPath : undefined,
      points: { show: pts.length < 60 && !s.bars, size: 4 },
      value: (u, v) => (v == null ? '—' : String(v)),
    });
  }
  if (spec.expected != null && Number.isFinite(Number(spec.expected))) {
    const e = Number(spec.expected);
    data.push(xs.map(() => e));
    series.push({
      label: 'expected',
      stroke: COLORS.expected,
      width: 1.5,
      dash: [6, 5],
      points: { show: false },
      value: () => String(Math.round(e * 100) / 100),
    });
  }
  const win = spec.window ? [secs(spec.window[0]), secs(spec.window[1])] : null;
  const hooks = {};
  if (win && win[0] != null && win[1] != null) {
    hooks.drawClear = [(u) => {
      const { ctx, bbox } = u;
      let x0 = u.valToPos(win[0], 'x', true);
      let x1 = u.valToPos(win[1], 'x', true);
      x0 = Math.max(bbox.left, Math.min(bbox.left + bbox.width, x0));
      x1 = Math.max(bbox.left, Math.min(bbox.left + bbox.width, x1));
      if (x1 - x0 < 2) { x0 -= 1; x1 += 1; }
      ctx.save();
      ctx.fillStyle = COLORS.window;
      ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
      ctx.strokeStyle = COLORS.windowEdge;
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(x0, bbox.top); ctx.lineTo(x0, bbox.top + bbox.height);
      ctx.moveTo(x1, bbox.top); ctx.lineTo(x1, bbox.top + bbox.height);
      ctx.stroke();
      ctx.restore();
    }];
  }
  // Keep the window visible even when it lies outside the points.
  let xMin = xs.length ? Math.min(...xs) : null;
  let xMax = xs.length ? Math.max(...xs) : null;
  const pad = spec.bucketSeconds || 0;
  if (win && win[0] != null) {
    xMin = xMin == null ? win[0] : Math.min(xMin, win[0]);
    xMax = xMax == null ? win[1] : Math.max(xMax, win[1]);
  }
  const opts = {
    width,
    height,
    series,
    hooks,
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    scales: {
      x: { time: true, range: xMin != null ? () => [xMin - pad / 2, xMax + pad] : undefined },
      y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
    },
    axes: [
      { stroke: '#4a5565', grid: { stroke: '#eceff3' }, ticks: { stroke: '#dde1e7' } },
      { stroke: '#4a5565', grid: { stroke: '#eceff3' }, ticks: { stroke: '#dde1e7' }, size: 48 },
    ],
  };
  return { opts, data };
}

/** The chart component. `spec` as for buildChart; re-drawn when it changes. */
export function Chart({ id, spec, height = 240, label }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (!el || !spec) return undefined;
    const width = Math.max(300, el.clientWidth || 600);
    const { opts, data } = buildChart(spec, width, height);
    const plot = new uPlot(opts, data, el);
    let last = width;
    const ro = new ResizeObserver(() => {
      const w = Math.max(300, el.clientWidth);
      if (Math.abs(w - last) > 2) { last = w; plot.setSize({ width: w, height }); }
    });
    ro.observe(el);
    return () => { ro.disconnect(); plot.destroy(); };
  }, [spec, height]);
  const empty = !spec || !spec.points || spec.points.length === 0;
  return html`<figure class="chart">
    <div id=${id} ref=${ref} class="chart-area" role="img" aria-label=${label || 'chart'}></div>
    ${empty ? html`<figcaption class="muted">No data points in this range.</figcaption>` : null}
  </figure>`;
}
