// @ts-nocheck -- a browser script, not part of the TypeScript build
// The run dashboard's script. runtime/train/dashboard.ts inlines it into RUN/dashboard.html after uPlot
// (a chart library, inlined too: the page needs no network and no server). It reads the run's data from
// <script id="pipec-run-data" type="application/json"> (metrics.jsonl's columns, eval.jsonl's points),
// draws one uPlot chart per panel on the run's global step axis, and keeps the view (smoothing, log
// scales, zoom, reloading) in the URL's #hash, so the page's own reload while a run goes on keeps it.
// Node loads this file too (test/e2e/dashboard.test.ts): the functions it exports must not touch the DOM.
'use strict';
var PipecDashboard = (function () {
  /**
   * TensorBoard's smoothing: an exponential moving average with debiasing (its "classic" smoothing,
   * tensorboard/webapp/widgets/line_chart_v2/lib/data_transformer.ts), restarted at each stage, whose
   * loss starts from another level. Non-finite values (null) pass through; a constant segment stays.
   */
  function ema(values, weight, segmentStarts) {
    var out = new Array(values.length);
    var starts = (segmentStarts || [0]).concat([values.length]);
    for (var s = 0; s + 1 < starts.length; s++) {
      var a = starts[s], b = starts[s + 1], last = 0, n = 0, constant = true;
      for (var i = a + 1; i < b; i++) if (values[i] !== values[a]) constant = false;
      for (var j = a; j < b; j++) {
        var v = values[j];
        if (constant || v === null || !isFinite(v)) {
          out[j] = v;
          continue;
        }
        last = last * weight + (1 - weight) * v;
        n++;
        out[j] = weight === 1 ? last : last / (1 - Math.pow(weight, n));
      }
    }
    return out;
  }

  /** Indices where a stage starts (0 first), from the per-step stage_index column. */
  function stageStarts(stageIndex) {
    var starts = [];
    for (var i = 0; i < stageIndex.length; i++) if (i === 0 || stageIndex[i] !== stageIndex[i - 1]) starts.push(i);
    return starts;
  }

  /**
   * Min/max decimation for drawing: at most `buckets` pairs, each keeping the lowest and highest value
   * of its span (spikes survive, unlike sampling). The data itself is never changed; only what is drawn.
   */
  function decimate(xs, columns, buckets) {
    var n = xs.length;
    if (n <= buckets * 2) return { xs: xs, columns: columns };
    var idx = [];
    var size = n / buckets;
    for (var b = 0; b < buckets; b++) {
      var a = Math.floor(b * size), e = Math.min(n, Math.floor((b + 1) * size));
      if (e <= a) continue;
      var picks = [a, e - 1];
      for (var c = 0; c < columns.length; c++) {
        var col = columns[c], lo = -1, hi = -1;
        for (var i = a; i < e; i++) {
          var v = col[i];
          if (v === null || !isFinite(v)) continue;
          if (lo < 0 || v < col[lo]) lo = i;
          if (hi < 0 || v > col[hi]) hi = i;
        }
        if (lo >= 0) picks.push(lo, hi);
      }
      picks.sort(function (p, q) { return p - q; });
      for (var k = 0; k < picks.length; k++) if (k === 0 || picks[k] !== picks[k - 1]) idx.push(picks[k]);
    }
    return {
      xs: idx.map(function (i) { return xs[i]; }),
      columns: columns.map(function (col) { return idx.map(function (i) { return col[i]; }); }),
    };
  }

  function fmt(v) {
    if (v === null || v === undefined || (typeof v === 'number' && !isFinite(v))) return '—';
    var a = Math.abs(v);
    if (a === 0) return '0';
    if (a >= 1e5) return Math.round(v).toLocaleString('en-US');
    if (a >= 100) return v.toFixed(0);
    if (a < 1e-3) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  function fmtTick(v) {
    if (v === null) return '';
    var a = Math.abs(v);
    if (a === 0) return '0';
    if (a >= 1e4) return (v / 1000).toLocaleString('en-US', { maximumFractionDigits: 1 }) + 'k';
    if (a < 1e-3) return v.toExponential(0);
    return String(Number(v.toPrecision(3)));
  }

  /** An axis's tick labels in one format: once a tick reaches 10,000, every tick from 1,000 up is in k. */
  function fmtTicks(splits) {
    var big = splits.some(function (v) { return v !== null && Math.abs(v) >= 1e4; });
    return splits.map(function (v) {
      if (big && v !== null && Math.abs(v) >= 1000) return (v / 1000).toLocaleString('en-US', { maximumFractionDigits: 1 }) + 'k';
      return fmtTick(v);
    });
  }

  function fmtSeconds(s) {
    if (!isFinite(s)) return '—';
    if (s < 60) return s.toFixed(1) + ' s';
    var m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h ? h + ' h ' + (m % 60) + ' min' : m + ' min ' + Math.round(s % 60) + ' s';
  }

  return { ema: ema, stageStarts: stageStarts, decimate: decimate, fmt: fmt, fmtTick: fmtTick, fmtTicks: fmtTicks, fmtSeconds: fmtSeconds };
})();

if (typeof document !== 'undefined') (function (D, uPlot) {
  var data = JSON.parse(document.getElementById('pipec-run-data').textContent);
  var m = data.metrics, n = m.step.length;
  var PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];
  var STAGE_BANDS = ['rgba(31,119,180,0.045)', 'rgba(255,127,14,0.06)'];
  var DRAW_BUCKETS = 4000; // per chart; beyond 8000 points each is drawn from min/max pairs

  // --- the view: read from and written to location.hash
  var view = { smoothing: 0.6, logLoss: false, logGrad: false, live: true, x: null };
  (location.hash.slice(1) || '').split('&').forEach(function (kv) {
    var p = kv.split('='), k = p[0], v = decodeURIComponent(p[1] || '');
    if (k === 'smoothing' && isFinite(+v)) view.smoothing = Math.min(0.999, Math.max(0, +v));
    if (k === 'log') view.logLoss = v === '1';
    if (k === 'loggrad') view.logGrad = v === '1';
    if (k === 'live') view.live = v !== '0';
    if (k === 'x') {
      var r = v.split('~').map(Number);
      if (r.length === 2 && r.every(isFinite) && r[0] < r[1]) view.x = r;
    }
  });
  function saveView() {
    var h = 'smoothing=' + view.smoothing + '&log=' + (view.logLoss ? 1 : 0) + '&loggrad=' + (view.logGrad ? 1 : 0) + '&live=' + (view.live ? 1 : 0);
    if (view.x) h += '&x=' + Math.round(view.x[0]) + '~' + Math.round(view.x[1]);
    history.replaceState(null, '', '#' + h);
  }

  // --- the run's axis: global step 1..n; stage boundaries; (stage, step) -> global step
  var xs = new Array(n);
  for (var i = 0; i < n; i++) xs[i] = i + 1;
  var starts = D.stageStarts(m.stage_index);
  var stageName = function (si) { return (data.stages[si] && data.stages[si].name) || 'stage ' + si; };
  var globalOf = {};
  for (var g = 0; g < n; g++) globalOf[m.stage_index[g] + ':' + m.step[g]] = g + 1;
  function stageAt(x) { // the index into starts of the stage holding global step x
    var lo = 0, hi = starts.length - 1;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (starts[mid] + 1 <= x) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
  function stepLabel(x) {
    if (x === null || x === undefined || !n) return '—';
    var gi = Math.min(n, Math.max(1, Math.round(x))) - 1, si = m.stage_index[gi], planned = data.stages[si] && data.stages[si].planned_steps;
    return Math.round(x).toLocaleString('en-US') + '  ·  ' + stageName(si) + ' step ' + m.step[gi] + (planned ? '/' + planned : '');
  }

  // --- header: status, stages, evaluation
  var el = function (tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  document.getElementById('title').textContent = data.title;
  document.title = data.title + ' — pipec dashboard';
  var status = document.getElementById('status');
  status.textContent = { running: 'running', finished: 'finished', stopped: 'stopped early' }[data.status] || data.status;
  status.className = 'status ' + data.status;
  var generated = new Date(data.generated);
  // a step's time is tokens / tokens_per_s (elapsed_s restarts when a resumed process continues a stage)
  var stepSeconds = m.tokens.map(function (tk, q) { return m.tokens_per_s[q] > 0 ? tk / m.tokens_per_s[q] : 0; });
  var totalSeconds = 0, totalTokens = 0;
  for (var t = 0; t < n; t++) {
    totalSeconds += stepSeconds[t];
    totalTokens += m.tokens[t];
  }
  document.getElementById('facts').textContent = [
    data.run_dir,
    n.toLocaleString('en-US') + ' steps in ' + starts.length + ' of ' + data.stages.length + ' stage' + (data.stages.length === 1 ? '' : 's'),
    D.fmtSeconds(totalSeconds) + ' in optimizer steps',
    (totalTokens / Math.max(totalSeconds, 1e-9)).toFixed(0) + ' tokens/s on average',
    'page written ' + generated.toLocaleString(),
  ].join('   ·   ');
  if (data.status === 'running') {
    var age = (Date.now() - generated.getTime()) / 1000;
    if (age > 3 * data.refresh_s + 60) document.getElementById('stale').textContent = 'No update for ' + D.fmtSeconds(age) + ': the run may have stopped (is its process still running?).';
  }

  // the stage table: one row per planned stage
  var table = document.getElementById('stages');
  var head = el('tr');
  ['stage', 'steps', 'global steps', 'loss (first → last, smoothed)', 'tokens/s', 'time in steps'].forEach(function (h) { head.appendChild(el('th', null, h)); });
  table.appendChild(head);
  var smoothLossAll = D.ema(m.loss, view.smoothing, starts);
  data.stages.forEach(function (s, si) {
    var k = -1;
    for (var q = 0; q < starts.length; q++) if (m.stage_index[starts[q]] === si) k = q;
    var tr = el('tr');
    var sw = el('td');
    sw.appendChild(el('span', 'swatch s' + (si % 2)));
    sw.appendChild(document.createTextNode(s.name));
    tr.appendChild(sw);
    if (k < 0) {
      tr.appendChild(el('td', null, '0' + (s.planned_steps ? ' / ' + s.planned_steps : '')));
      for (var c = 0; c < 4; c++) tr.appendChild(el('td', 'muted', '—'));
    } else {
      var a = starts[k], b = (starts[k + 1] || n) - 1, tok = 0, sec = 0;
      for (var r = a; r <= b; r++) {
        tok += m.tokens[r];
        sec += stepSeconds[r];
      }
      tr.appendChild(el('td', null, m.step[b] + (s.planned_steps ? ' / ' + s.planned_steps : '')));
      tr.appendChild(el('td', null, (a + 1).toLocaleString('en-US') + ' – ' + (b + 1).toLocaleString('en-US')));
      tr.appendChild(el('td', null, D.fmt(smoothLossAll[a]) + ' → ' + D.fmt(smoothLossAll[b])));
      tr.appendChild(el('td', null, (tok / Math.max(sec, 1e-9)).toFixed(0)));
      tr.appendChild(el('td', null, D.fmtSeconds(sec)));
    }
    table.appendChild(tr);
  });

  // evaluation figures: the latest of each name
  var latest = {};
  data.eval.forEach(function (p) { latest[p.name] = p; });
  var evalNames = Object.keys(latest).sort();
  var evalBox = document.getElementById('evaluation');
  if (evalNames.length) {
    evalBox.appendChild(el('span', 'label', 'Evaluation'));
    evalNames.forEach(function (name) {
      var p = latest[name], tile = el('span', 'tile');
      tile.appendChild(el('b', null, name.replace(/^accuracy\//, '') + ' '));
      tile.appendChild(document.createTextNode(/accuracy/.test(name) ? (p.value * 100).toFixed(1) + '%' : D.fmt(p.value)));
      if (p.total) tile.appendChild(el('small', null, ' ' + p.correct + '/' + p.total));
      evalBox.appendChild(tile);
    });
  }

  // --- controls
  var smoothing = document.getElementById('smoothing'), smoothingValue = document.getElementById('smoothing-value');
  smoothing.value = String(view.smoothing);
  smoothingValue.textContent = view.smoothing.toFixed(3).replace(/0+$/, '').replace(/\.$/, '');
  var logLoss = document.getElementById('log-loss'), logGrad = document.getElementById('log-grad');
  logLoss.checked = view.logLoss;
  logGrad.checked = view.logGrad;
  var live = document.getElementById('live');
  if (data.status === 'running') {
    document.getElementById('live-box').hidden = false;
    document.getElementById('live-every').textContent = String(data.refresh_s);
    live.checked = view.live;
  }

  // --- charts
  var charts = [], syncing = false;
  var fullRange = [1, Math.max(n, 2)];
  function xRange() {
    return view.x || fullRange;
  }

  /** Stage bands behind the series, boundary lines and names above: drawn on uPlot's canvas. */
  function stageHooks(u) {
    var ctx = u.ctx, bb = u.bbox, top = bb.top, h = bb.height;
    ctx.save();
    ctx.beginPath();
    ctx.rect(bb.left, bb.top, bb.width, bb.height);
    ctx.clip();
    starts.forEach(function (a, k) {
      var b = (starts[k + 1] || n);
      var x0 = u.valToPos(a + 0.5, 'x', true), x1 = u.valToPos(b + 0.5, 'x', true);
      ctx.fillStyle = STAGE_BANDS[m.stage_index[a] % 2];
      ctx.fillRect(x0, top, x1 - x0, h);
      if (k > 0) {
        ctx.strokeStyle = 'rgba(0,0,0,0.45)';
        ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
        ctx.lineWidth = devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(Math.round(x0) + 0.5, top);
        ctx.lineTo(Math.round(x0) + 0.5, top + h);
        ctx.stroke();
        ctx.setLineDash([]);
      }
      var lx = Math.max(x0, bb.left) + 6 * devicePixelRatio;
      if (lx < x1 - 20 * devicePixelRatio) {
        ctx.fillStyle = 'rgba(0,0,0,0.55)';
        ctx.font = '600 ' + 11 * devicePixelRatio + 'px system-ui, sans-serif';
        ctx.textBaseline = 'top';
        ctx.fillText(stageName(m.stage_index[a]), lx, top + 4 * devicePixelRatio);
      }
    });
    ctx.restore();
  }

  /** v rounded (down or up) to one significant digit: 4.23 -> 4 or 5, 0.0371 -> 0.03 or 0.04. */
  function oneDigit(v, round) {
    var mag = Math.pow(10, Math.floor(Math.log10(v)));
    return round(v / mag) * mag;
  }

  function makeChart(box, o) {
    var width = Math.max(320, box.clientWidth - 2);
    var xsDraw = xs, cols = o.columns;
    if (!o.sparse && n > DRAW_BUCKETS * 2) {
      var d = D.decimate(xs, o.columns, DRAW_BUCKETS);
      xsDraw = d.xs;
      cols = d.columns;
    }
    if (o.log) cols = cols.map(function (c) { return c.map(function (v) { return v !== null && v > 0 ? v : null; }); });
    var opts = {
      width: width,
      height: o.height || 250,
      cursor: { sync: { key: 'pipec-run', setSeries: false }, drag: { x: true, y: false }, points: { size: 7 } },
      legend: { live: true },
      scales: {
        x: { time: false, range: function () { return xRange(); } },
        // log: the data's span out to the next one-digit values (4.2..4.9 -> 4..5), not whole decades
        // (uPlot's default), so a loss from 4.9 to 4.2 fills the chart instead of a strip at the bottom of 1..10
        y: o.log ? { distr: 3, log: 10, range: function (u, lo, hi) { return lo > 0 && hi > 0 ? [oneDigit(lo, Math.floor), oneDigit(hi, Math.ceil)] : [0.1, 10]; } } : o.yRange ? { range: o.yRange } : { auto: true },
      },
      axes: [
        { label: 'global step (all stages)', labelSize: 22, values: function (u, splits) { return D.fmtTicks(splits); }, grid: { stroke: 'rgba(0,0,0,0.07)' }, ticks: { stroke: 'rgba(0,0,0,0.25)' } },
        { label: o.yLabel + (o.log ? ' (log scale)' : ''), labelSize: 22, size: 60, values: function (u, splits) { return D.fmtTicks(splits); }, grid: { stroke: 'rgba(0,0,0,0.07)' }, ticks: { stroke: 'rgba(0,0,0,0.25)' } },
      ],
      series: [{ label: 'step', value: function (u, v) { return stepLabel(v); } }].concat(o.series.map(function (s) {
        return Object.assign({ value: function (u, v) { return o.valueFmt ? o.valueFmt(v) : D.fmt(v); }, spanGaps: true }, s); // evaluation points (sparse) joined too
      })),
      hooks: {
        drawClear: [stageHooks],
        setSelect: [function (u) {
          if (u.select.width < 2) return;
          var a = u.posToVal(u.select.left, 'x'), b = u.posToVal(u.select.left + u.select.width, 'x');
          view.x = [Math.max(1, a), Math.min(fullRange[1], b)];
          saveView();
          redrawAll();
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
        }],
      },
    };
    var chart = new uPlot(opts, [xsDraw].concat(cols), box);
    chart.over.addEventListener('dblclick', function () { resetZoom(); });
    if (o.after) o.after(chart);
    return chart;
  }

  function redrawAll() {
    if (syncing) return;
    syncing = true;
    charts.forEach(function (c) { c.setScale('x', { min: xRange()[0], max: xRange()[1] }); });
    syncing = false;
  }
  function resetZoom() {
    view.x = null;
    saveView();
    redrawAll();
  }

  function panel(id, title, subtitle, wide) {
    var p = el('section', 'panel' + (wide ? ' wide' : ''));
    var h = el('h2', null, title);
    if (subtitle) h.appendChild(el('small', null, subtitle));
    p.appendChild(h);
    var box = el('div', 'chart');
    box.id = id;
    p.appendChild(box);
    document.getElementById('panels').appendChild(p);
    return box;
  }

  var hasAux = m.aux_loss && m.aux_loss.some(function (v) { return v !== null; });
  var faint = function (c) { return c + '40'; };
  var boxes = {};
  function build() {
    charts.forEach(function (c) { c.destroy(); });
    charts = [];
    document.getElementById('panels').innerHTML = '';
    if (!n) {
      document.getElementById('panels').appendChild(el('p', 'empty', 'No step logged yet: the charts appear after the first optimizer step.'));
      return;
    }
    var w = view.smoothing;
    var sm = function (col) { return D.ema(col, w, starts); };
    boxes.loss = panel('loss', 'Loss', hasAux ? 'train/loss = lm_loss + aux_loss · weight; faint: raw, bold: smoothed (EMA ' + w + ', restarted per stage)' : 'train/loss; faint: raw, bold: smoothed (EMA ' + w + ', restarted per stage)', true);
    charts.push(makeChart(boxes.loss, {
      yLabel: 'loss', log: view.logLoss, height: 320,
      columns: [m.loss, sm(m.loss)].concat(hasAux ? [sm(m.lm_loss)] : []),
      series: [
        { label: 'loss', stroke: faint(PALETTE[0]), width: 1 },
        { label: 'loss (smoothed)', stroke: PALETTE[0], width: 2 },
      ].concat(hasAux ? [{ label: 'lm_loss (smoothed)', stroke: PALETTE[1], width: 1.5 }] : []),
    }));
    boxes.lr = panel('lr', 'Learning rate', 'train/lr, per optimizer step (the schedule\'s value)');
    charts.push(makeChart(boxes.lr, {
      yLabel: 'learning rate', columns: [m.lr], yRange: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.08 : 1]; },
      series: [{ label: 'lr', stroke: PALETTE[2], width: 1.5 }],
    }));
    boxes.grad = panel('grad', 'Gradient norm', 'train/grad_norm: global L2 norm before clipping');
    charts.push(makeChart(boxes.grad, {
      yLabel: 'gradient norm', log: view.logGrad, columns: [m.grad_norm, sm(m.grad_norm)],
      series: [{ label: 'grad norm', stroke: faint(PALETTE[3]), width: 1 }, { label: 'smoothed', stroke: PALETTE[3], width: 2 }],
    }));
    boxes.tps = panel('tps', 'Throughput', 'train/tokens_per_s: tokens of the step / the step\'s time');
    charts.push(makeChart(boxes.tps, {
      yLabel: 'tokens / s', columns: [m.tokens_per_s, sm(m.tokens_per_s)], yRange: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.08 : 1]; },
      series: [{ label: 'tokens/s', stroke: faint(PALETTE[4]), width: 1 }, { label: 'smoothed', stroke: PALETTE[4], width: 2 }],
    }));
    if (m.data_wait_s && m.data_wait_s.some(function (v) { return v > 0; })) {
      boxes.wait = panel('wait', 'Waiting for data', 'train/data_wait_s: seconds the step waited for its batch (image workers behind the step)');
      charts.push(makeChart(boxes.wait, {
        yLabel: 'seconds', columns: [m.data_wait_s], yRange: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.08 : 1]; },
        series: [{ label: 'data wait (s)', stroke: PALETTE[6 % PALETTE.length], width: 1.5 }],
      }));
    }
    if (hasAux) {
      boxes.aux = panel('aux', 'Auxiliary loss', 'train/aux_loss: the mixture-of-experts load-balancing loss');
      charts.push(makeChart(boxes.aux, {
        yLabel: 'aux loss', columns: [m.aux_loss, sm(m.aux_loss)],
        series: [{ label: 'aux_loss', stroke: faint(PALETTE[5]), width: 1 }, { label: 'smoothed', stroke: PALETTE[5], width: 2 }],
      }));
    }
    boxes.eval = panel('eval', 'Evaluation', evalNames.length ? 'eval.jsonl: held-out figures at the step they were measured' : null);
    if (!evalNames.length) {
      boxes.eval.appendChild(el('p', 'empty', data.status === 'running'
        ? 'No evaluation yet: the held-out accuracy is measured when the last stage ends.'
        : 'This run has no evaluation (its data has no held-out questions).'));
    } else {
      var evalCols = evalNames.map(function () { return new Array(n).fill(null); });
      data.eval.forEach(function (p) {
        var gx = globalOf[p.stage_index + ':' + p.step] || n;
        evalCols[evalNames.indexOf(p.name)][gx - 1] = /accuracy/.test(p.name) ? p.value * 100 : p.value;
      });
      var allAcc = evalNames.every(function (nm) { return /accuracy/.test(nm); });
      charts.push(makeChart(boxes.eval, {
        yLabel: allAcc ? 'accuracy (%)' : 'value', sparse: true, columns: evalCols,
        yRange: allAcc ? [0, 105] : undefined,
        valueFmt: function (v) { return v === null ? '—' : allAcc ? v.toFixed(1) + '%' : D.fmt(v); },
        series: evalNames.map(function (nm, k) {
          return { label: nm, stroke: PALETTE[(k + 1) % PALETTE.length], width: 1.5, points: { show: true, size: 9, fill: PALETTE[(k + 1) % PALETTE.length] } };
        }),
        after: function (u) {
          u.hooks.draw = u.hooks.draw || [];
          u.hooks.draw.push(function (uu) { // each series' latest point labelled with its value
            var ctx = uu.ctx;
            ctx.save();
            ctx.font = 11 * devicePixelRatio + 'px system-ui, sans-serif';
            ctx.textAlign = 'right';
            ctx.textBaseline = 'middle';
            var labels = [];
            evalCols.forEach(function (col, k) {
              for (var q = col.length - 1; q >= 0; q--) {
                if (col[q] === null) continue;
                labels.push({ k: k, text: evalNames[k].replace(/^accuracy\//, '') + ' ' + (allAcc ? col[q].toFixed(1) + '%' : D.fmt(col[q])), x: uu.valToPos(q + 1, 'x', true) - 10 * devicePixelRatio, y: uu.valToPos(col[q], 'y', true) });
                break;
              }
            });
            // equal figures would print on top of each other: push labels apart, at least a line each
            var gap = 13 * devicePixelRatio;
            labels.sort(function (p, q) { return p.y - q.y; });
            for (var l = 1; l < labels.length; l++) if (labels[l].y - labels[l - 1].y < gap) labels[l].y = labels[l - 1].y + gap;
            var over = labels.length ? labels[labels.length - 1].y - (uu.bbox.top + uu.bbox.height - gap / 2) : 0;
            labels.forEach(function (lb) {
              ctx.fillStyle = PALETTE[(lb.k + 1) % PALETTE.length];
              ctx.fillText(lb.text, lb.x, over > 0 ? lb.y - over : lb.y);
            });
            ctx.restore();
          });
          u.redraw(false);
        },
      }));
    }
  }
  build();

  smoothing.addEventListener('input', function () {
    view.smoothing = +smoothing.value;
    smoothingValue.textContent = view.smoothing.toFixed(3).replace(/0+$/, '').replace(/\.$/, '');
    saveView();
  });
  smoothing.addEventListener('change', build);
  logLoss.addEventListener('change', function () { view.logLoss = logLoss.checked; saveView(); build(); });
  logGrad.addEventListener('change', function () { view.logGrad = logGrad.checked; saveView(); build(); });
  document.getElementById('reset-zoom').addEventListener('click', resetZoom);
  live.addEventListener('change', function () { view.live = live.checked; saveView(); scheduleReload(); });
  var resizeTimer = null;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      charts.forEach(function (c) { c.setSize({ width: Math.max(320, c.root.parentNode.clientWidth - 2), height: c.height }); });
    }, 100);
  });

  // While the run goes on, pipec rewrites this file every refresh_s seconds; reloading shows the new one
  var reloadTimer = null;
  function scheduleReload() {
    clearTimeout(reloadTimer);
    if (data.status === 'running' && view.live) reloadTimer = setTimeout(function () { saveView(); location.reload(); }, data.refresh_s * 1000);
  }
  scheduleReload();
  saveView();
  document.body.setAttribute('data-ready', String(charts.length));
})(PipecDashboard, uPlot);
