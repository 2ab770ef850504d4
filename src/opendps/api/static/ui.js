// opendps web UI: keeps live parts of the pages up to date. Every page works without it.
(function () {
  "use strict";

  var LIST_INTERVAL = 3000; // ms between refreshes of a job list's rows and tiles
  var JOB_INTERVAL = 1500; // ms between polls of one job's status and logs
  var CHART_EVERY = 4; // polls of a job between refreshes of its memory/CPU chart
  var BUILD_INTERVAL = 1500; // ms between polls of a build
  var BATCH_INTERVAL = 2000; // ms between polls of a batch's progress
  var IDLE_POLLS = 20; // list refreshes with no unfinished row before the list rests

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

  // Buttons that ask first (Cancel, Delete).
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
  });

  // Copy buttons next to snippets.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source || !navigator.clipboard) return;
    navigator.clipboard.writeText(source.textContent).then(function () {
      var label = button.textContent;
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = label; }, 1500);
    });
  });

  // "Select all" on a job list.
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-select-all]")) return;
    var form = event.target.closest("form");
    form.querySelectorAll('input[name="job"]').forEach(function (box) {
      box.checked = event.target.checked;
    });
  });

  // Job lists: refresh the rows of unfinished jobs in place (rows never move, so the reader
  // keeps their place), the status tiles' counts, and offer newer jobs as a link.
  var idle = 0;
  var resting = false;
  function refreshRows() {
    var rows = document.querySelectorAll("tr[data-job][data-live]");
    var list = document.getElementById("job-list");
    var filters = document.getElementById("filters");
    if (!rows.length && !filters) return;
    // Nothing running here for a while: rest until the tab is shown again.
    idle = rows.length ? 0 : idle + 1;
    if (idle > IDLE_POLLS) { resting = true; return; }
    var params = new URLSearchParams();
    rows.forEach(function (row) { params.append("id", row.getAttribute("data-job")); });
    if (filters) {
      new URLSearchParams(window.location.search).forEach(function (value, key) {
        if (key !== "next" && key !== "id") params.append(key, value);
      });
      params.set("counts", "1");
      if (list && list.getAttribute("data-top")) params.set("top", list.getAttribute("data-top"));
    }
    getJSON("/ui/live/jobs?" + params.toString())
      .then(function (data) {
        rows.forEach(function (row) {
          var job = data.jobs[row.getAttribute("data-job")];
          if (!job) return;
          setBadge(row.querySelector("[data-status]"), job.status);
          var duration = row.querySelector("[data-duration]");
          if (duration) duration.textContent = job.duration;
          var reason = row.querySelector("[data-reason]");
          if (reason) reason.textContent = job.reason || "";
          if (job.terminal) row.removeAttribute("data-live");
        });
        if (data.counts) {
          var all = 0;
          Object.keys(data.counts).forEach(function (status) {
            all += data.counts[status];
            var tile = document.querySelector('[data-count="' + status + '"]');
            if (tile) tile.textContent = data.counts[status];
          });
          var total = document.querySelector('[data-count="all"]');
          if (total) total.textContent = all;
        }
        var newer = document.getElementById("newer");
        if (newer && data.newer) {
          newer.textContent = data.newer + " newer job" + (data.newer === 1 ? "" : "s") + " — show";
          newer.hidden = false;
        }
        later(refreshRows, LIST_INTERVAL);
      })
      .catch(function () { later(refreshRows, LIST_INTERVAL * 4); });
  }

  // Log search: show only the lines that contain the words typed, while logs keep growing.
  var logText = {};
  function filterLogs() {
    var input = document.querySelector("[data-log-search]");
    var needle = input ? input.value.trim().toLowerCase() : "";
    var shown = 0;
    ["stdout", "stderr"].forEach(function (stream) {
      var pre = document.getElementById("log-" + stream);
      if (!pre) return;
      if (!(stream in logText)) logText[stream] = pre.textContent;
      var text = logText[stream];
      if (needle) {
        var lines = text.split("\n").filter(function (line) {
          return line.toLowerCase().indexOf(needle) !== -1;
        });
        shown += lines.length;
        text = lines.join("\n");
      }
      pre.textContent = text;
    });
    var count = document.getElementById("log-count");
    if (count) count.textContent = needle ? shown + " matching line" + (shown === 1 ? "" : "s") : "";
  }

  // One job: append what its streams write, follow its status and chart, reload when it
  // ends (to show its outputs, metrics and history).
  function followJob(root) {
    var id = root.getAttribute("data-job");
    var offsets = {
      stdout: root.getAttribute("data-stdout-offset") || "0",
      stderr: root.getAttribute("data-stderr-offset") || "0",
    };
    var polls = 0;
    function append(stream, text) {
      var pre = document.getElementById("log-" + stream);
      if (!pre || !text) return;
      if (!(stream in logText)) logText[stream] = pre.textContent;
      logText[stream] += text;
      var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      filterLogs();
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    function poll() {
      polls += 1;
      var query = "stdout=" + offsets.stdout + "&stderr=" + offsets.stderr;
      if (polls % CHART_EVERY === 0) query += "&chart=1";
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
          var attempt = root.querySelector("[data-attempt-live]");
          if (attempt && job.status === "running") attempt.textContent = job.duration + " so far";
          var chart = document.getElementById("chart");
          if (chart && job.chart) chart.innerHTML = job.chart;
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

  // A build: follow its state and log until it is ready or failed, then reload.
  function followBuild(root) {
    var id = root.getAttribute("data-process");
    function poll() {
      getJSON("/ui/live/processes/" + encodeURIComponent(id))
        .then(function (build) {
          var badge = root.querySelector("[data-build-status] .badge");
          if (badge && build.status) {
            badge.textContent = build.status;
            badge.className = "badge build-" + build.status;
          }
          var log = document.getElementById("build-log");
          if (log && typeof build.log === "string" && log.textContent !== build.log) {
            log.textContent = build.log;
            log.scrollTop = log.scrollHeight;
          }
          if (build.done) window.setTimeout(function () { window.location.reload(); }, 300);
          else later(poll, BUILD_INTERVAL);
        })
        .catch(function () { later(poll, BUILD_INTERVAL * 4); });
    }
    later(poll, BUILD_INTERVAL);
  }

  // A batch: redraw its progress until every job has ended, then reload (stats, retry).
  function followBatch(root) {
    var id = root.getAttribute("data-batch");
    function poll() {
      getJSON("/ui/live/batches/" + encodeURIComponent(id))
        .then(function (batch) {
          var progress = document.getElementById("progress");
          if (progress && batch.progress) progress.innerHTML = batch.progress;
          if (batch.done) window.setTimeout(function () { window.location.reload(); }, 500);
          else later(poll, BATCH_INTERVAL);
        })
        .catch(function () { later(poll, BATCH_INTERVAL * 4); });
    }
    later(poll, BATCH_INTERVAL);
  }

  // The register form: the equivalent YAML follows what is typed; "More input rows" adds a
  // row here instead of sending the form.
  function registerForm(form) {
    var preview = document.getElementById(form.getAttribute("data-yaml-preview"));
    var timer = null;
    function refresh() {
      fetch("/ui/register/yaml", { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (text) { if (text !== null && preview) preview.textContent = text; });
    }
    form.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, 250);
    });
    var add = form.querySelector("[data-add-row]");
    if (add) {
      add.addEventListener("click", function (event) {
        event.preventDefault();
        var rows = form.querySelectorAll("[data-input-row]");
        var last = rows[rows.length - 1];
        var n = rows.length;
        var row = last.cloneNode(true);
        row.querySelectorAll("input, select, label").forEach(function (el) {
          ["id", "name", "for"].forEach(function (attr) {
            var value = el.getAttribute(attr);
            if (value) el.setAttribute(attr, value.replace(/-\d+-/, "-" + n + "-"));
          });
          if (el.tagName === "INPUT" && el.type === "checkbox") el.checked = false;
          else if (el.tagName === "INPUT") el.value = "";
          var label = el.getAttribute("aria-label");
          if (label) el.setAttribute("aria-label", label.replace(/\d+/, String(n + 1)));
          if (el.tagName === "LABEL") el.textContent = el.textContent.replace(/\d+/, String(n + 1));
        });
        last.parentNode.appendChild(row);
        form.querySelector('input[name="input_rows"]').value = String(n + 1);
        var first = row.querySelector("input");
        if (first) first.focus();
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    // Logs open at their end, where a run's last words are.
    document.querySelectorAll("pre.log").forEach(function (pre) { pre.scrollTop = pre.scrollHeight; });
    later(refreshRows, LIST_INTERVAL);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && resting) { resting = false; idle = 0; refreshRows(); }
    });
    var job = document.getElementById("job");
    if (job && job.hasAttribute("data-live")) followJob(job);
    var search = document.querySelector("[data-log-search]");
    if (search) search.addEventListener("input", filterLogs);
    var build = document.querySelector("#build[data-live]");
    if (build) followBuild(build);
    var batch = document.querySelector("#batch[data-live]");
    if (batch) followBatch(batch);
    var register = document.getElementById("register-form");
    if (register) registerForm(register);
  });
})();
