// Live updates: the one EventSource of a page. Job events and post state changes update what is shown.
(function () {
  if (!window.EventSource || !document.querySelector('meta[name="csrf-token"]').content) return;
  var live = document.getElementById("live");
  var feed = document.getElementById("feed");
  var source = new EventSource("/api/events");
  source.onopen = function () { if (live) live.classList.add("on"); };
  source.onerror = function () { if (live) live.classList.remove("on"); };

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

  source.addEventListener("job", function (message) {
    var e = JSON.parse(message.data);
    if (e.status) setText('[data-job="' + CSS.escape(e.job_id) + '"]', "status", e.status, "s-");
    var log = document.querySelector('#events[data-job="' + CSS.escape(e.job_id) + '"]');
    if (log) {
      var row = log.insertRow(-1);
      [e.at.slice(0, 19), e.level, e.event, e.message].forEach(function (v) { row.insertCell(-1).textContent = v; });
    }
    note(e.at.slice(11, 19) + " job " + e.job_id + ": " + e.event + (e.message ? " — " + e.message : ""));
  });

  source.addEventListener("post", function (message) {
    var p = JSON.parse(message.data);
    setText('[data-post="' + p.id + '"]', "state", p.state, "st-");
    note(p.updated_at.slice(11, 19) + " post " + p.id + " (" + p.route + "): " + p.state +
      (p.event ? " (" + p.event + " by " + p.actor + ")" : ""));
  });
})();
