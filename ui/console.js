// The operator console: reads /ui/api/overview every few seconds and draws it. Plain browser JavaScript, no
// build step; uPlot (served by Sluice) draws the charts. The admin key, when one is needed, is kept in this
// tab's session storage and sent as a bearer token.
(() => {
  'use strict';
  const REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);
  let charts = {};

  const key = () => sessionStorage.getItem('sluice-admin-key') || '';

  // One time zone and one format everywhere on the page: UTC, as the object keys (dt=, hour=), the logs and
  // the API are; a browser's local zone would put the same moment at different hours on different screens.
  // The exact value the server sent stays in the cell's title.
  const pad = (n) => String(n).padStart(2, '0');
  function utc(value) {
    const ms = typeof value === 'number' ? value : Date.parse(value);
    if (!Number.isFinite(ms)) return String(value ?? '');
    const d = new Date(ms);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
  }
  function timeCell(value) {
    const td = cell(value ? utc(value) : '');
    if (value) td.title = String(value);
    return td;
  }

  const headers = () => (key() ? { authorization: `Bearer ${key()}` } : {});

  async function api(path, init = {}) {
    const res = await fetch(path, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
    const body = await res.json().catch(() => ({}));
    if (res.status === 401 || res.status === 403) {
      showLogin(body.message || 'the admin key is needed');
      throw new Error('unauthorized');
    }
    if (!res.ok) throw new Error(body.message || `HTTP ${res.status}`);
    return body;
  }

  function showLogin(message) {
    $('console').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = key() ? message : '';
  }

  function cell(text, cls) {
    const td = document.createElement('td');
    if (cls) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = text;
      td.className = 'state';
      td.appendChild(span);
    } else {
      td.textContent = text;
    }
    return td;
  }

  function fill(tableId, rows) {
    const body = $(tableId).querySelector('tbody');
    body.replaceChildren(
      ...rows.map((cells) => {
        const tr = document.createElement('tr');
        tr.append(...cells);
        return tr;
      }),
    );
  }

  // rates are the differences of running totals between samples
  function series(history) {
    const t = [],
      received = [],
      delivered = [],
      bytes = [],
      pending = [];
    for (let i = 1; i < history.length; i++) {
      const a = history[i - 1],
        b = history[i];
      const seconds = Math.max((b.at - a.at) / 1000, 0.001);
      t.push(b.at / 1000);
      received.push((b.ingested - a.ingested) / seconds);
      delivered.push((b.delivered - a.delivered) / seconds);
      bytes.push(b.bufferBytes);
      pending.push(b.pendingDeliveries);
    }
    return { t, received, delivered, bytes, pending };
  }

  // Legends: bytes in binary units, counts and rates with k/M/G, so a value stays short
  const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  function bytes(n) {
    let i = 0;
    while (Math.abs(n) >= 1024 && i < UNITS.length - 1) {
      n /= 1024;
      i++;
    }
    return `${i === 0 ? Math.round(n) : n.toFixed(n < 10 ? 1 : 0)} ${UNITS[i]}`;
  }
  function count(n) {
    const a = Math.abs(n);
    if (a >= 1e9) return `${(n / 1e9).toFixed(a >= 1e10 ? 0 : 1)}G`;
    if (a >= 1e6) return `${(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
    if (a >= 1e4) return `${(n / 1e3).toFixed(0)}k`;
    return Number.isInteger(n) ? String(n) : n.toFixed(a >= 100 ? 0 : 1);
  }
  // Axis labels: one unit for all the ticks of an axis (that of the largest), and as many decimals as the
  // step between ticks needs, so that neighbouring labels never read the same
  // [from, divisor, unit]: the largest tick picks the row
  const BYTE_STEPS = UNITS.map((u, i) => [1024 ** i, 1024 ** i, ` ${u}`]);
  const COUNT_STEPS = [
    [0, 1, ''],
    [1e4, 1e3, 'k'],
    [1e6, 1e6, 'M'],
    [1e9, 1e9, 'G'],
  ];
  const ticks =
    (steps, suffix = '') =>
    (u, splits, axisIdx, space, incr) => {
      const largest = Math.max(0, ...splits.map((v) => Math.abs(v)));
      let [, div, unit] = steps[0];
      for (const [from, d, name] of steps) if (largest >= from) [div, unit] = [d, name];
      const decimals = Math.min(3, Math.max(0, Math.ceil(-Math.log10((incr || 1) / div) - 1e-9)));
      return splits.map((v) => `${(v / div).toFixed(decimals)}${unit}${suffix}`);
    };
  const hhmm = (u, splits) =>
    splits.map((t) => {
      const d = new Date(t * 1000);
      return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    });

  // A y axis as wide as its longest label (measured in the axis's font), so no label is cut, whatever the
  // numbers: a fixed width clipped "1,000,000" to "000,000".
  function axisSize(u, values, axisIdx, cycleNum) {
    const axis = u.axes[axisIdx];
    if (cycleNum > 1) return axis._size;
    let size = axis.ticks.size + axis.gap;
    const longest = (values || []).reduce((a, v) => (String(v).length > a.length ? String(v) : a), '');
    if (longest !== '') {
      u.ctx.font = axis.font[0];
      size += u.ctx.measureText(longest).width / devicePixelRatio;
    }
    return Math.ceil(size) + 4;
  }

  // The legend shows the latest sample when the pointer is not over the chart (uPlot's own shows "--" until
  // hovered), and the hovered sample when it is.
  const legendValue = (format) => (u, v, sidx, idx) => {
    if (idx == null) {
      const values = u.data[sidx];
      v = values && values.length > 0 ? values[values.length - 1] : null;
    }
    return v == null ? 'no data yet' : format(v);
  };

  // specs: [{label, scale, format, ticks}]; one y axis per scale (the second on the right)
  function chart(id, specs, data) {
    const width = Math.min(560, Math.max(320, (window.innerWidth - 80) / 2));
    if (!charts[id]) {
      const scales = [...new Set(specs.map((s) => s.scale))];
      const ticksOf = (scale) => specs.find((s) => s.scale === scale).ticks;
      charts[id] = new uPlot(
        {
          width,
          height: 180,
          // the x axis in UTC, like every other time on the page
          tzDate: (ts) => uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'),
          // always the last hour, however few samples there are yet
          scales: { x: { time: true, range: () => [Date.now() / 1000 - 3600, Date.now() / 1000] } },
          series: [
            { label: 'time (UTC)', value: legendValue((t) => utc(t * 1000)) },
            ...specs.map((s, i) => ({
              label: s.label,
              scale: s.scale,
              stroke: ['#2563eb', '#16a34a'][i],
              width: 2,
              value: legendValue(s.format),
            })),
          ],
          axes: [
            // HH:MM in UTC (the legend gives the whole date); uPlot's own default is a 12-hour US format
            { values: hhmm },
            ...scales.map((scale, i) => ({
              scale,
              side: i === 0 ? 3 : 1,
              grid: { show: i === 0 },
              size: axisSize,
              values: ticksOf(scale),
            })),
          ],
        },
        data,
        $(id),
      );
      // reachable for inspection (and the console tests): the drawn chart with its axes and legend
      $(id).uplot = charts[id];
    } else {
      charts[id].setData(data);
    }
  }

  function render(o) {
    const ready = o.ready;
    $('status').textContent = ready.status;
    $('status').className = `badge ${ready.status}`;
    $('updated').textContent = `updated ${utc(Date.now())}`;
    const b = ready.buffer;
    $('buffer').textContent =
      `Buffer: ${(b.bytes / 1048576).toFixed(1)} MiB of ${(b.max_bytes / 1048576).toFixed(0)} MiB, ` +
      `oldest undelivered ${b.oldest_age_seconds.toFixed(1)} s; event deliveries pending: ${ready.events.pending_deliveries ?? 'unknown (the store does not answer)'}`;

    const s = series(o.history);
    const perSecond = (v) => `${count(v)}/s`;
    const rate = ticks(COUNT_STEPS, '/s');
    chart(
      'chart-rates',
      [
        { label: 'received', scale: 'rate', format: perSecond, ticks: rate },
        { label: 'delivered', scale: 'rate', format: perSecond, ticks: rate },
      ],
      [s.t, s.received, s.delivered],
    );
    chart(
      'chart-backlog',
      [
        { label: 'buffer', scale: 'bytes', format: bytes, ticks: ticks(BYTE_STEPS) },
        { label: 'pending deliveries', scale: 'deliveries', format: count, ticks: ticks(COUNT_STEPS) },
      ],
      [s.t, s.bytes, s.pending],
    );

    fill(
      'outputs',
      ready.outputs.map((x) => [
        cell(x.name),
        cell(x.type),
        cell(x.target),
        cell(x.state, x.state),
        cell(String(x.delivered.events)),
        cell(String(x.delivered.objects)),
        cell(String(x.dropped || 0)),
        cell(String(x.retries)),
        cell(x.last_error ? `${x.last_error.code ? `${x.last_error.code}: ` : ''}${x.last_error.message}` : ''),
      ]),
    );

    fill(
      'destinations',
      o.destinations.map((d) => {
        const state = d.disabled_at ? 'disabled' : d.last_failure ? 'failing' : 'ok';
        return [
          cell(d.tenant_id),
          cell(d.id),
          cell(d.type),
          cell(d.target || ''),
          cell(d.topics.join(', ')),
          cell(state, state),
          cell(
            d.last_failure ? `${utc(d.last_failure.time)} ${d.last_failure.error || d.last_failure.code || ''}` : '',
          ),
        ];
      }),
    );

    fill(
      'failures',
      o.failed_attempts.map((a) => {
        const button = document.createElement('button');
        button.textContent = 'Retry';
        button.disabled = !a.event_id;
        button.addEventListener('click', () => retry(a, button));
        const td = document.createElement('td');
        td.appendChild(button);
        return [
          timeCell(a.time),
          cell(a.tenant_id),
          cell(a.event_id || '(batch)'),
          cell(a.destination_id),
          cell(a.error || a.code || ''),
          td,
        ];
      }),
    );

    fill(
      'tenants',
      o.tenants.map((t) => [cell(t.id), cell(String(t.destinations)), timeCell(t.created_at)]),
    );

    const select = $('lookup-output');
    if (select.options.length !== o.outputs.length) {
      select.replaceChildren(...o.outputs.map((name) => new Option(name, name)));
    }
  }

  async function retry(attempt, button) {
    button.disabled = true;
    try {
      await api('/api/v1/retry', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          event_id: attempt.event_id,
          destination_id: attempt.destination_id,
          tenant_id: attempt.tenant_id,
        }),
      });
      $('retry-result').textContent = `Retry of ${attempt.event_id} on ${attempt.destination_id} queued.`;
    } catch (err) {
      $('retry-result').textContent = `Retry failed: ${err.message}`;
      button.disabled = false;
    }
  }

  async function lookup(event) {
    event.preventDefault();
    const params = new URLSearchParams({
      output: $('lookup-output').value,
      from: $('lookup-from').value || '1h',
      to: $('lookup-to').value || 'now',
    });
    if ($('lookup-id').value.trim()) params.set('decision_id', $('lookup-id').value.trim());
    $('lookup-summary').textContent = 'Searching…';
    $('lookup-detail').textContent = '';
    try {
      const r = await api(`/ui/api/decisions?${params}`);
      $('lookup-summary').textContent =
        `${r.decisions.length} decision${r.decisions.length === 1 ? '' : 's'} in ${r.objects} objects${r.truncated ? ' (first 100)' : ''}`;
      fill(
        'lookup-results',
        r.decisions.map((d) => {
          const cells = [
            timeCell(d.timestamp),
            cell(d.decision_id || ''),
            cell(d.path || ''),
            cell(JSON.stringify(d.result ?? null).slice(0, 80)),
          ];
          cells.forEach((c) =>
            c.addEventListener('click', () => {
              $('lookup-detail').textContent = JSON.stringify(d, null, 2);
            }),
          );
          return cells;
        }),
      );
      document.querySelectorAll('#lookup-results tbody tr').forEach((tr) => tr.classList.add('clickable'));
    } catch (err) {
      $('lookup-summary').textContent = `Search failed: ${err.message}`;
    }
  }

  async function refresh() {
    try {
      const overview = await api('/ui/api/overview');
      $('login').hidden = true;
      $('console').hidden = false;
      render(overview);
    } catch (err) {
      if (err.message !== 'unauthorized') $('updated').textContent = `cannot refresh: ${err.message}`;
    }
  }

  $('login').addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem('sluice-admin-key', $('key').value);
    refresh();
  });
  $('lookup').addEventListener('submit', lookup);
  refresh();
  setInterval(refresh, REFRESH_MS);
})();
