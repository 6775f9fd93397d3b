// The detail page follows its batch: one request a second to the page's state URL, and the
// progress bar, status, why it waits and when it should end, history, buttons (cancel, pause, resume) and
// download links updated in place, no reload; times shown in the browser's time zone.
"use strict";

(function () {
  const root = document.getElementById("batch-detail");
  if (!root) return;

  const POLL_MS = 1000;
  const badge = document.getElementById("batch-status");
  const bar = document.getElementById("batch-progress");
  const text = document.getElementById("progress-text");
  const reason = document.getElementById("failure-reason");
  const reasonWords = document.getElementById("reason-words");
  const reasonSubcode = document.getElementById("reason-subcode");
  const cancelForm = document.getElementById("cancel-form");
  const pauseForm = document.getElementById("pause-form");
  const resumeForm = document.getElementById("resume-form");
  const history = document.getElementById("batch-history");
  const updated = document.getElementById("batch-updated");
  const waiting = {
    box: document.getElementById("batch-waiting"),
    reason: document.getElementById("waiting-reason"),
    description: document.getElementById("waiting-description"),
    queueLine: document.getElementById("queue-line"),
    queuePosition: document.getElementById("queue-position"),
    etaLine: document.getElementById("eta-line"),
    etaTime: document.getElementById("eta-time"),
    etaRelative: document.getElementById("eta-relative"),
    rate: document.getElementById("rate-text"),
    stalledLine: document.getElementById("stalled-line"),
    stalledTime: document.getElementById("stalled-time"),
    stalledRelative: document.getElementById("stalled-relative"),
  };
  const summarySlot = document.getElementById("summary-slot");
  const downloads = {
    results: document.getElementById("download-results"),
    errors: document.getElementById("download-errors"),
    partial: document.getElementById("download-partial"),
    results_csv: document.getElementById("download-results-csv"),
    errors_csv: document.getElementById("download-errors-csv"),
    partial_csv: document.getElementById("download-partial-csv"),
  };

  function setBadge(element, label, tone) {
    element.textContent = label;
    element.className = element.className.replace(/\bbadge-\w+/, `badge-${tone}`);
  }

  function showProgress(batch, percent, terminal) {
    const progress = batch.progress;
    if (progress.total === null) {
      if (terminal) {
        bar.value = 0;
      } else {
        bar.removeAttribute("value");
      }
      const counted = terminal ? "No lines were run." : "Counting lines…";
      text.textContent = `${counted} · ${progress.succeeded} succeeded · ${progress.failed} failed`;
      return;
    }
    if (batch.validate_only && batch.status === "completed") {
      bar.max = 1;
      bar.value = 1;
      text.textContent = `Dry run: ${progress.total} lines checked, none run.`;
      return;
    }
    bar.max = Math.max(progress.total, 1);
    bar.value = progress.total === 0 ? bar.max * (percent / 100) : progress.processed;
    text.textContent =
      `${progress.processed} of ${progress.total} lines (${percent} %)` +
      ` · ${progress.succeeded} succeeded · ${progress.failed} failed`;
  }

  // The server writes times in UTC; a person reads them in their own time zone.
  function localTime(element, at) {
    const when = new Date(at * 1000);
    const sameDay = when.toDateString() === new Date().toDateString();
    const options = { hour: "2-digit", minute: "2-digit" };
    element.dateTime = when.toISOString();
    element.textContent = sameDay
      ? when.toLocaleTimeString([], options)
      : when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    element.title = `${when.toISOString().slice(0, 16).replace("T", " ")} UTC`;
  }

  function showMoment(line, time, relative, moment) {
    line.hidden = !moment;
    if (!moment) return;
    localTime(time, moment.at);
    relative.textContent = moment.relative;
  }

  function showWaiting(state) {
    waiting.box.hidden = !state;
    if (!state) return;
    setBadge(waiting.reason, state.label, state.tone);
    waiting.reason.dataset.reason = state.reason;
    waiting.description.textContent = state.description;
    waiting.queueLine.hidden = !state.queue_position;
    waiting.queuePosition.textContent = state.queue_position || "";
    showMoment(waiting.etaLine, waiting.etaTime, waiting.etaRelative, state.eta);
    waiting.rate.textContent = state.rate ? `, at ${state.rate}` : "";
    showMoment(waiting.stalledLine, waiting.stalledTime, waiting.stalledRelative, state.stalled_since);
  }

  function showHistory(changes) {
    const items = changes.map((change) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = `badge badge-${change.tone}`;
      label.textContent = change.label;
      const time = document.createElement("time");
      time.dateTime = new Date(change.at * 1000).toISOString();
      time.textContent = change.clock;
      item.append(label, " ", time);
      if (change.note) {
        const note = document.createElement("span");
        note.className = "note";
        note.textContent = change.note;
        item.append(" ", note);
      }
      return item;
    });
    history.replaceChildren(...items);
  }

  function show(state) {
    badge.dataset.status = state.batch.status;
    setBadge(badge, state.status_label, state.status_tone);
    showProgress(state.batch, state.percent, state.terminal);
    reasonWords.textContent = state.reason ? state.reason.words : "";
    reasonSubcode.textContent = state.reason ? state.reason.subcode : "";
    reasonSubcode.hidden = !(state.reason && state.reason.subcode);
    reason.hidden = !state.reason;
    showWaiting(state.waiting);
    if (state.summary_html && !summarySlot.firstElementChild) summarySlot.innerHTML = state.summary_html;
    cancelForm.hidden = !state.can_cancel;
    pauseForm.hidden = !state.can_pause;
    resumeForm.hidden = !state.can_resume;
    updated.textContent = state.updated;
    for (const [part, link] of Object.entries(downloads)) {
      const url = state.downloads[part];
      link.hidden = !url;
      if (url) link.href = url;
    }
    showHistory(state.history);
    if (state.terminal) forgetStoppingMessages();
  }

  // "… is cancelling" is true only until the batch has stopped.
  function forgetStoppingMessages() {
    for (const message of document.querySelectorAll("[data-until-stopped]")) message.remove();
  }

  async function poll() {
    let response;
    try {
      response = await fetch(root.dataset.stateUrl, { headers: { Accept: "application/json" } });
    } catch (_) {
      text.textContent = "The server does not answer; trying again…";
      setTimeout(poll, POLL_MS * 3);
      return;
    }
    if (response.status === 404) {
      badge.textContent = "deleted";
      text.textContent = "This batch has been deleted.";
      for (const form of [cancelForm, pauseForm, resumeForm]) form.hidden = true;
      return;
    }
    if (!response.ok || !(response.headers.get("Content-Type") || "").includes("json")) {
      text.textContent = "Live progress stopped: sign in again to follow this batch.";
      return;
    }
    const state = await response.json();
    show(state);
    if (!state.terminal) {
      setTimeout(poll, POLL_MS);
    } else if (
      state.batch.status === "validation_failed" ||
      state.batch.progress.failed > 0 ||
      state.next_step
    ) {
      // The failed lines and the next step (retry, run for real) are drawn by the server,
      // once: load the page again to show them.
      window.location.reload();
    }
  }

  for (const time of root.querySelectorAll("time[data-at]")) {
    if (time.dataset.at) localTime(time, Number(time.dataset.at));
  }
  if (root.dataset.terminal === "true") {
    forgetStoppingMessages();
  } else {
    setTimeout(poll, POLL_MS);
  }
})();
