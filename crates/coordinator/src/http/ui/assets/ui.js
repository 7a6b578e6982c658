// The status page's live parts: the refresh timeline from GET /ui/events
// (server-sent events; entries hold ids, generations, times and replicas,
// never a value), the rows it names, and TTL bars that count down.
// Text goes in with textContent only: nothing received becomes markup.
(function () {
  'use strict';
  var timeline = document.getElementById('timeline');
  var live = document.getElementById('live');
  var started = performance.now();
  var KEPT = 200;

  function clock(ms) {
    return new Date(ms).toISOString().slice(11, 19) + 'Z';
  }
  function suffix(generation) {
    return '·' + String(generation).slice(-4).padStart(4, '0');
  }
  function span(ms) {
    var s = Math.floor(ms / 1000);
    if (s < 1) return Math.max(0, Math.round(ms)) + 'ms';
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm ' + String(s % 60).padStart(2, '0') + 's';
    return Math.floor(s / 3600) + 'h ' + String(Math.floor((s % 3600) / 60)).padStart(2, '0') + 'm';
  }
  function el(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  function entry(e) {
    var li = el('li', 'ev ' + e.event + ' new');
    li.dataset.seq = e.seq;
    li.dataset.id = e.id;
    li.dataset.event = e.event;
    li.dataset.generation = e.generation;
    var t = el('time', '', clock(e.at_ms));
    t.title = new Date(e.at_ms).toISOString();
    li.append(t, ' ', el('b', 'id', e.id), ' ', el('span', 'what', e.event));
    if (e.generation > 0) {
      var g = el('span', 'gen', suffix(e.generation));
      g.title = String(e.generation);
      li.append(' ', g);
    }
    if (e.replica) li.append(' by ', el('b', 'replica', e.replica));
    if (e.detail) li.append(' ', el('small', '', e.detail));
    return li;
  }

  function updateRow(e) {
    var row = null;
    document.querySelectorAll('#credentials tr[data-id]').forEach(function (r) {
      if (r.dataset.id === e.id) row = r;
    });
    if (!row) return;
    row.classList.remove('flash');
    void row.offsetWidth; // restart the highlight
    row.classList.add('flash');
    if (e.event !== 'refreshed') return;
    var gen = row.querySelector('td.generation');
    if (gen) {
      gen.textContent = '';
      var g = el('span', '', clock(e.at_ms) + ' ' + suffix(e.generation));
      g.title = String(e.generation);
      gen.append(g);
    }
    var fetched = row.querySelector('td.fetched');
    if (fetched) {
      fetched.textContent = '';
      var t = el('span', '', clock(e.at_ms));
      t.title = new Date(e.at_ms).toISOString();
      fetched.append(t);
      if (e.replica) fetched.append(' by ', el('b', '', e.replica));
    }
    var meter = row.querySelector('td.ttl meter');
    if (meter && e.ttl_ms) {
      meter.max = e.ttl_ms;
      meter.dataset.lifetimeMs = e.ttl_ms;
      meter.dataset.ttlMs = e.ttl_ms + (performance.now() - started);
    }
    var fp = row.querySelector('td.fp');
    if (fp) {
      fp.textContent = '';
      if (e.fingerprint) fp.append(el('code', '', e.fingerprint));
      else fp.textContent = '—';
    }
    var badge = row.querySelector('td .badge');
    if (badge) {
      badge.className = 'badge healthy';
      badge.textContent = 'healthy';
      row.dataset.state = 'healthy';
    }
  }

  function tick() {
    var elapsed = performance.now() - started;
    document.querySelectorAll('td.ttl meter[data-ttl-ms]').forEach(function (m) {
      var left = Math.max(0, Number(m.dataset.ttlMs) - elapsed);
      m.value = Math.min(left, Number(m.max));
      var label = m.parentElement.querySelector('.left');
      if (label) label.textContent = span(left);
    });
  }
  setInterval(tick, 1000);

  var since = document.body.dataset.since || '0';
  var source = new EventSource('/ui/events?since=' + encodeURIComponent(since));
  source.onopen = function () {
    live.textContent = 'live';
    live.className = 'live up';
  };
  source.onerror = function () {
    live.textContent = 'reconnecting…';
    live.className = 'live down';
  };
  source.onmessage = function (m) {
    var e;
    try { e = JSON.parse(m.data); } catch (_) { return; }
    timeline.prepend(entry(e));
    while (timeline.children.length > KEPT) timeline.lastElementChild.remove();
    updateRow(e);
  };
})();
