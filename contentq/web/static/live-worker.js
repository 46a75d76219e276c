// The one live connection of this browser to the panel, shared by all its tabs (a SharedWorker).
// A browser opens at most 6 connections per host over HTTP/1.1; an EventSource per tab held them all, and the
// 7th tab never loaded. Here one EventSource (/api/events) feeds every tab through its MessagePort.
// Messages to a tab: {type: "state", open: bool}, {type: "job"|"post", data: "<JSON>"}, {type: "unsupported"}.
"use strict";

var ports = [];
var source = null;
var open = false;
var retryMs = 1000;
var retryTimer = null;

function send(message) {
  ports.forEach(function (port) { port.postMessage(message); });
}

function setOpen(value) {
  open = value;
  send({ type: "state", open: value });
}

function connect() {
  if (source || retryTimer || !ports.length) return;
  source = new EventSource("/api/events");
  source.onopen = function () { retryMs = 1000; setOpen(true); };
  source.onerror = function () {
    setOpen(false);
    if (source && source.readyState === EventSource.CLOSED) {
      // Refused (logged out, token rotated) rather than cut: the browser gives up, so try again later, slower
      // each time; a tab that logs in again gets the feed back within a minute (or at once: see onconnect).
      source = null;
      retryTimer = setTimeout(function () { retryTimer = null; connect(); }, retryMs);
      retryMs = Math.min(retryMs * 2, 60000);
    }
  };
  ["job", "post"].forEach(function (kind) {
    source.addEventListener(kind, function (message) { send({ type: kind, data: message.data }); });
  });
}

function disconnect() {
  if (source) source.close();
  source = null;
  open = false;
}

self.onconnect = function (event) {
  var port = event.ports[0];
  if (typeof EventSource === "undefined") {  // some browsers have no EventSource in workers
    port.postMessage({ type: "unsupported" });
    return;
  }
  ports.push(port);
  port.onmessage = function (message) {
    var type = message.data && message.data.type;
    if (type === "bye") {  // the tab is going away
      ports = ports.filter(function (p) { return p !== port; });
      if (!ports.length) disconnect();
    } else if (type === "hello" && ports.indexOf(port) < 0) {  // it came back (the back-forward cache)
      ports.push(port);
      connect();
      port.postMessage({ type: "state", open: open });
    }
  };
  port.start();
  if (retryTimer && !open) {  // a new page (after a login, say): try now rather than at the next retry
    clearTimeout(retryTimer);
    retryTimer = null;
  }
  connect();
  port.postMessage({ type: "state", open: open });
};
