// opendps web UI: keeps unfinished jobs up to date. Every page works without it.
(function () {
  "use strict";

  var LIST_INTERVAL = 3000; // ms between refreshes of the job rows
  var JOB_INTERVAL = 1500; // ms between polls of one job's status and logs

  function getJSON(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      });
  }

  function setBadge(badge, status) {
    if (!badge || badge.textContent === status) return;
    badge.textContent = status;
    badge.className = "badge badge-" + status;
  }

  // Wait, then run; while the tab is hidden, only wait.
  function later(fn, ms) {
    window.setTimeout(function () {
      if (document.hidden) later(fn, ms);
      else fn();
    }, ms);
  }

  // Buttons that ask first (Cancel).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });

  // Job lists: refresh the rows of jobs that have not finished.
  function refreshRows() {
    var rows = document.querySelectorAll("tr[data-job][data-live]");
    if (!rows.length) return;
    var params = new URLSearchParams();
    rows.forEach(function (row) { params.append("id", row.getAttribute("data-job")); });
    getJSON("/ui/live/jobs?" + params.toString())
      .then(function (data) {
        rows.forEach(function (row) {
          var job = data.jobs[row.getAttribute("data-job")];
          if (!job) return;
          setBadge(row.querySelector("[data-status]"), job.status);
          var duration = row.querySelector("[data-duration]");
          if (duration) duration.textContent = job.duration;
          if (job.terminal) row.removeAttribute("data-live");
        });
        later(refreshRows, LIST_INTERVAL);
      })
      .catch(function () { later(refreshRows, LIST_INTERVAL * 4); });
  }

  // One job: append what its streams write, follow its status, reload when it ends
  // (to show its outputs, metrics and history).
  function followJob(root) {
    var id = root.getAttribute("data-job");
    var offsets = {
      stdout: root.getAttribute("data-stdout-offset") || "0",
      stderr: root.getAttribute("data-stderr-offset") || "0",
    };
    function append(stream, text) {
      var pre = document.getElementById("log-" + stream);
      if (!pre || !text) return;
      var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      pre.appendChild(document.createTextNode(text));
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    function poll() {
      var query = "stdout=" + offsets.stdout + "&stderr=" + offsets.stderr;
      getJSON("/ui/live/jobs/" + encodeURIComponent(id) + "?" + query)
        .then(function (job) {
          append("stdout", job.stdout);
          append("stderr", job.stderr);
          offsets.stdout = job.stdout_offset;
          offsets.stderr = job.stderr_offset;
          setBadge(root.querySelector("h1 [data-status]"), job.status);
          var status = root.querySelector('[data-field="status"]');
          if (status) status.textContent = job.status;
          var message = root.querySelector('[data-field="message"]');
          if (message) message.textContent = job.message || "—";
          var duration = root.querySelector("dd[data-duration]");
          if (duration) duration.textContent = job.duration;
          if (job.terminal) {
            window.setTimeout(function () { window.location.reload(); }, 500);
          } else {
            later(poll, JOB_INTERVAL);
          }
        })
        .catch(function () { later(poll, JOB_INTERVAL * 4); });
    }
    later(poll, JOB_INTERVAL);
  }

  document.addEventListener("DOMContentLoaded", function () {
    // Logs open at their end, where a run's last words are.
    document.querySelectorAll("pre.log").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
    later(refreshRows, LIST_INTERVAL);
    var job = document.getElementById("job");
    if (job && job.hasAttribute("data-live")) followJob(job);
  });
})();
