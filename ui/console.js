// The operator console: reads /ui/api/overview every few seconds and draws it. Plain browser JavaScript, no
// build step; uPlot (served by Sluice) draws the charts. The admin key, when one is needed, is kept in this
// tab's session storage and sent as a bearer token.
(() => {
  'use strict';
  const REFRESH_MS = 5000;
  const $ = (id) => document.getElementById(id);
  let charts = {};

  const key = () => sessionStorage.getItem('sluice-admin-key') || '';
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
    body.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement('tr');
      tr.append(...cells);
      return tr;
    }));
  }

  // rates are the differences of running totals between samples
  function series(history) {
    const t = [], received = [], delivered = [], bytes = [], pending = [];
    for (let i = 1; i < history.length; i++) {
      const a = history[i - 1], b = history[i];
      const seconds = Math.max((b.at - a.at) / 1000, 0.001);
      t.push(b.at / 1000);
      received.push((b.ingested - a.ingested) / seconds);
      delivered.push((b.delivered - a.delivered) / seconds);
      bytes.push(b.bufferBytes);
      pending.push(b.pendingDeliveries);
    }
    return { t, received, delivered, bytes, pending };
  }

  function chart(id, labels, data) {
    const width = Math.min(560, Math.max(320, (window.innerWidth - 80) / 2));
    if (!charts[id]) {
      charts[id] = new uPlot({
        width, height: 180,
        // always the last hour, however few samples there are yet
        scales: { x: { time: true, range: () => [Date.now() / 1000 - 3600, Date.now() / 1000] } },
        series: [{}, ...labels.map((label, i) => ({ label, stroke: ['#2563eb', '#16a34a'][i], width: 2 }))],
        axes: [{}, { size: 60 }],
      }, data, $(id));
    } else {
      charts[id].setData(data);
    }
  }

  function render(o) {
    const ready = o.ready;
    $('status').textContent = ready.status;
    $('status').className = `badge ${ready.status}`;
    $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
    const b = ready.buffer;
    $('buffer').textContent = `Buffer: ${(b.bytes / 1048576).toFixed(1)} MiB of ${(b.max_bytes / 1048576).toFixed(0)} MiB, `
      + `oldest undelivered ${b.oldest_age_seconds.toFixed(1)} s; event deliveries pending: ${ready.events.pending_deliveries}`;

    const s = series(o.history);
    chart('chart-rates', ['received/s', 'delivered/s'], [s.t, s.received, s.delivered]);
    chart('chart-backlog', ['buffer bytes', 'pending deliveries'], [s.t, s.bytes, s.pending]);

    fill('outputs', ready.outputs.map((x) => [
      cell(x.name), cell(x.type), cell(x.target), cell(x.state, x.state), cell(String(x.delivered.events)),
      cell(String(x.delivered.objects)), cell(String(x.dropped || 0)), cell(String(x.retries)),
      cell(x.last_error ? `${x.last_error.code ? `${x.last_error.code}: ` : ''}${x.last_error.message}` : ''),
    ]));

    fill('destinations', o.destinations.map((d) => {
      const state = d.disabled_at ? 'disabled' : d.last_failure ? 'failing' : 'ok';
      return [cell(d.tenant_id), cell(d.id), cell(d.type), cell(d.target || ''), cell(d.topics.join(', ')), cell(state, state),
        cell(d.last_failure ? `${d.last_failure.time} ${d.last_failure.error || d.last_failure.code || ''}` : '')];
    }));

    fill('failures', o.failed_attempts.map((a) => {
      const button = document.createElement('button');
      button.textContent = 'Retry';
      button.disabled = !a.event_id;
      button.addEventListener('click', () => retry(a, button));
      const td = document.createElement('td');
      td.appendChild(button);
      return [cell(a.time), cell(a.tenant_id), cell(a.event_id || '(batch)'), cell(a.destination_id), cell(a.error || a.code || ''), td];
    }));

    fill('tenants', o.tenants.map((t) => [cell(t.id), cell(String(t.destinations)), cell(t.created_at)]));

    const select = $('lookup-output');
    if (select.options.length !== o.outputs.length) {
      select.replaceChildren(...o.outputs.map((name) => new Option(name, name)));
    }
  }

  async function retry(attempt, button) {
    button.disabled = true;
    try {
      await api('/api/v1/retry', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ event_id: attempt.event_id, destination_id: attempt.destination_id, tenant_id: attempt.tenant_id }) });
      $('retry-result').textContent = `Retry of ${attempt.event_id} on ${attempt.destination_id} queued.`;
    } catch (err) {
      $('retry-result').textContent = `Retry failed: ${err.message}`;
      button.disabled = false;
    }
  }

  async function lookup(event) {
    event.preventDefault();
    const params = new URLSearchParams({ output: $('lookup-output').value, from: $('lookup-from').value || '1h', to: $('lookup-to').value || 'now' });
    if ($('lookup-id').value.trim()) params.set('decision_id', $('lookup-id').value.trim());
    $('lookup-summary').textContent = 'Searching…';
    $('lookup-detail').textContent = '';
    try {
      const r = await api(`/ui/api/decisions?${params}`);
      $('lookup-summary').textContent = `${r.decisions.length} decision${r.decisions.length === 1 ? '' : 's'} in ${r.objects} objects${r.truncated ? ' (first 100)' : ''}`;
      fill('lookup-results', r.decisions.map((d) => {
        const cells = [cell(d.timestamp || ''), cell(d.decision_id || ''), cell(d.path || ''), cell(JSON.stringify(d.result ?? null).slice(0, 80))];
        cells.forEach((c) => c.addEventListener('click', () => { $('lookup-detail').textContent = JSON.stringify(d, null, 2); }));
        return cells;
      }));
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
