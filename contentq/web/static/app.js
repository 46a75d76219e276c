// The menu: on a narrow screen the pages' links fold behind the Menu button (without JavaScript they stay
// shown, wrapped: the class "js" is what folds them).
document.documentElement.classList.add("js");
(function () {
  var toggle = document.querySelector(".menu-toggle");
  var header = document.getElementById("top");
  if (!toggle || !header) return;
  toggle.addEventListener("click", function () {
    var open = header.classList.toggle("open");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
})();

// Live updates: job events and post state changes update what the page shows, without a reload.
// One live connection per browser, shared by its tabs (a browser allows 6 connections per host over HTTP/1.1:
// a connection per tab left the 7th tab without any). In order of preference:
//   1. a SharedWorker (/static/live-worker.js) holds the one EventSource and passes its events to every tab;
//   2. else one tab, elected by a Web Lock, holds it and passes the events on over a BroadcastChannel (when
//      it closes, another tab takes the lock and the feed over);
//   3. else every tab polls: /api/events?once=1 answers what is new and closes, and its EventSource comes back
//      every few seconds with the Last-Event-ID (a connection held for milliseconds, not for the page's life).
(function () {
  var token = document.querySelector('meta[name="csrf-token"]');
  if (!token || !token.content) return;
  var live = document.getElementById("live");
  var feed = document.getElementById("feed");

  function setLive(on, how) {
    if (!live) return;
    live.classList.toggle("on", on);
    if (how) live.dataset.via = how;
  }

  function setText(selector, field, value, prefix) {
    document.querySelectorAll(selector).forEach(function (holder) {
      var cells = holder.matches('[data-field="' + field + '"]') ? [holder] :
        holder.querySelectorAll('[data-field="' + field + '"]');
      cells.forEach(function (cell) {
        cell.textContent = value;
        cell.className = cell.className.replace(new RegExp("\\b" + prefix + "[\\w-]+", "g"), "") + " " + prefix + value;
      });
    });
  }

  function note(text) {
    if (!feed) return;
    var item = document.createElement("li");
    item.textContent = text;
    feed.insertBefore(item, feed.firstChild);
    while (feed.children.length > 50) feed.removeChild(feed.lastChild);
  }

  function onJob(e) {
    var id = CSS.escape(e.job_id);
    if (e.status) setText('[data-job="' + id + '"]', "status", e.status, "s-");
    var log = document.querySelector('#events[data-job="' + id + '"]');
    if (log) {
      var row = log.insertRow(-1);
      [e.at.slice(0, 19), e.level, e.event, e.message].forEach(function (v, i) {
        var cell = row.insertCell(-1);
        cell.textContent = v;
        if (i === 1) cell.className = "opt";  // the level: hidden on a phone, as in the rows the page came with
      });
    }
    if (e.event === "stopped" || e.event === "discarded") {  // a cancelled run has ended: Retry is allowed now
      document.querySelectorAll('[data-after-stop="' + id + '"]').forEach(function (el) { el.hidden = false; });
      document.querySelectorAll('[data-stopping="' + id + '"]').forEach(function (el) { el.remove(); });
    }
    note(e.at.slice(11, 19) + " job " + e.job_id + ": " + e.event + (e.message ? " — " + e.message : ""));
  }

  function onPost(p) {
    setText('[data-post="' + p.id + '"]', "state", p.state, "st-");
    note(p.updated_at.slice(11, 19) + " post " + p.id + " (" + p.route + "): " + p.state +
      (p.event ? " (" + p.event + " by " + p.actor + ")" : ""));
  }

  function deliver(kind, data) {
    var value = JSON.parse(data);
    if (kind === "job") onJob(value);
    else if (kind === "post") onPost(value);
  }

  function listen(source, relay) {
    ["job", "post"].forEach(function (kind) {
      source.addEventListener(kind, function (message) { relay(kind, message.data); });
    });
  }

  function viaSharedWorker() {
    var worker = new SharedWorker("/static/live-worker.js", { name: "contentq-live" });
    var port = worker.port;
    port.onmessage = function (message) {
      var m = message.data;
      if (m.type === "state") setLive(m.open, "shared-worker");
      else if (m.type === "unsupported") { port.close(); viaLeader(); }
      else deliver(m.type, m.data);
    };
    worker.onerror = function () { port.close(); viaLeader(); };  // the script could not load
    port.start();
    window.addEventListener("pagehide", function () { port.postMessage({ type: "bye" }); });
    window.addEventListener("pageshow", function (e) { if (e.persisted) port.postMessage({ type: "hello" }); });
  }

  function viaLeader() {
    if (!window.BroadcastChannel || !navigator.locks || !window.EventSource) return viaPolling();
    var channel = new BroadcastChannel("contentq-live");
    var leading = false;
    var open = false;
    function share(message) {  // to the other tabs, and to this one (a channel does not echo to its sender)
      channel.postMessage(message);
      receive(message);
    }
    function receive(m) {
      if (m.type === "state") setLive(m.open, "leader");
      else if (m.type === "hello") { if (leading) channel.postMessage({ type: "state", open: open }); }
      else deliver(m.type, m.data);
    }
    channel.onmessage = function (message) { receive(message.data); };
    navigator.locks.request("contentq-live", function () {
      leading = true;
      var source = new EventSource("/api/events");
      source.onopen = function () { open = true; share({ type: "state", open: true }); };
      source.onerror = function () { open = false; share({ type: "state", open: false }); };
      listen(source, function (kind, data) { share({ type: kind, data: data }); });
      return new Promise(function () {});  // held while this page lives; then another tab is elected
    });
    channel.postMessage({ type: "hello" });  // the leader, if any, says whether the feed is up
  }

  function viaPolling() {
    if (!window.EventSource) return;
    var source = new EventSource("/api/events?once=1");
    source.onopen = function () { setLive(true, "polling"); };
    source.onerror = function () { if (source.readyState === EventSource.CLOSED) setLive(false, "polling"); };
    listen(source, deliver);
  }

  if (window.SharedWorker) {
    try { viaSharedWorker(); return; } catch (e) { /* blocked (a policy, a private mode): next best */ }
  }
  viaLeader();
})();

// Copy buttons (the Users page's new token or generated password): `data-copy` names the field to copy. The
// button stays hidden without JavaScript (the field's text can be selected by hand).
(function () {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.dataset.copy);
    if (!field) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      function copied(ok) {
        button.textContent = ok ? "Copied" : "Select and copy by hand";
        button.dataset.copied = ok ? "yes" : "no";
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(function () { copied(true); }, function () { fallback(); });
      } else {
        fallback();
      }
      function fallback() {
        field.focus();
        field.select();
        var ok = false;
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        copied(ok);
      }
    });
  });
})();
