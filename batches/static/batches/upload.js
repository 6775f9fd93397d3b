// The upload form: hash the file with Web Crypto, then the API's own three steps with the
// session and its CSRF token: POST /cache for an upload URL, PUT the file there, POST /batches.
"use strict";

(function () {
  const form = document.getElementById("upload-form");
  if (!form) return;

  const statusLine = document.getElementById("upload-status");
  const errorBox = document.getElementById("upload-error");
  const submit = document.getElementById("upload-submit");
  const rows = document.getElementById("batch-dict-rows");
  const csrfToken = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  const examples = JSON.parse(document.getElementById("operation-examples").textContent);
  const exampleLine = document.getElementById("operation-example");

  class ApiRefusal extends Error {
    constructor(step, status, body) {
      const description = body && body.description ? body.description : `The server answered ${status}.`;
      super(`${step}: ${description}`);
      this.subcode = body && body.subcode;
    }
  }

  function say(text) {
    statusLine.textContent = text;
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
  }

  async function answerOf(step, response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) throw new ApiRefusal(step, response.status, body);
    return body;
  }

  function api(url, method, body) {
    return fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  async function sha256Hex(file) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  // The labels typed in, with the file's name as `name` (what the batch list shows) unless
  // one was given.
  function batchDict(file) {
    const dict = {};
    for (const row of rows.querySelectorAll(".dict-row")) {
      const key = row.querySelector("input[name=dict-key]").value.trim();
      const raw = row.querySelector("input[name=dict-value]").value;
      if (!key) continue;
      let value = raw;
      try {
        value = JSON.parse(raw);
      } catch (_) {
        value = raw;
      }
      dict[key] = value;
    }
    if (!Object.hasOwn(dict, "name")) dict.name = file.name;
    return dict;
  }

  function showExample() {
    exampleLine.textContent = examples[form.elements.operation.value] || "";
  }
  form.elements.operation.addEventListener("change", showExample);
  showExample();

  // The failure limit: N lines, or P% of the lines run (as the CLI's --error-budget).
  function errorBudget() {
    const text = document.getElementById("error-budget").value.trim();
    if (!text) return null;
    if (/^\d+$/.test(text)) return { max_failed: Number(text) };
    if (/^\d+(\.\d+)?%$/.test(text)) return { max_failed_ratio: Number(text.slice(0, -1)) / 100 };
    throw new Error("The failure limit is a number of lines (25) or a percentage (5%).");
  }

  // The correlation fields (contract §15): the id field's name, and the echoed fields as a
  // comma list; the service checks both and its refusal is shown like any other.
  function correlation() {
    const fields = {};
    const idField = document.getElementById("id-field").value.trim();
    if (idField) fields.id_field = idField;
    const echoed = document.getElementById("echo-fields").value.trim();
    if (echoed) fields.echo_fields = echoed.split(",").map((name) => name.trim());
    return fields;
  }

  // A datetime-local value is the browser's local time; the API takes Unix seconds.
  function epochSeconds(id, label) {
    const input = document.getElementById(id);
    if (input.validity.badInput) throw new Error(`${label} is not a complete date and time.`);
    if (!input.value) return null;
    const at = new Date(input.value).getTime();
    if (Number.isNaN(at)) throw new Error(`${label} is not a date and time.`);
    return at / 1000;
  }

  // Time and order (contract §14): sent only when given, so a plain upload stays as it was.
  function timeAndOrder() {
    const fields = {};
    const notBefore = epochSeconds("not-before", "Start not before");
    if (notBefore !== null) fields.not_before = notBefore;
    const deadline = epochSeconds("deadline", "The deadline");
    if (deadline !== null) fields.deadline_ts = deadline;
    const priority = Number(document.getElementById("priority").value);
    if (priority !== 5) fields.priority = priority;
    const parent = document.getElementById("after-batch").value.trim();
    if (parent) fields.after = [{ batch: parent, require: document.getElementById("after-require").value }];
    return fields;
  }

  document.getElementById("add-dict-row").addEventListener("click", () => {
    const row = rows.querySelector(".dict-row").cloneNode(true);
    for (const input of row.querySelectorAll("input")) input.value = "";
    rows.appendChild(row);
    row.querySelector("input").focus();
  });

  rows.addEventListener("click", (event) => {
    if (!event.target.classList.contains("remove-row")) return;
    const row = event.target.closest(".dict-row");
    if (rows.querySelectorAll(".dict-row").length > 1) {
      row.remove();
    } else {
      for (const input of row.querySelectorAll("input")) input.value = "";
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const file = document.getElementById("batch-file").files[0];
    if (!file) {
      showError("Choose a file to upload.");
      return;
    }
    const body = { operation: form.elements.operation.value };
    try {
      const budget = errorBudget();
      if (budget) body.error_budget = budget;
      Object.assign(body, timeAndOrder());
    } catch (error) {
      showError(error.message);
      return;
    }
    if (document.getElementById("validate-only").checked) body.validate_only = true;
    Object.assign(body, correlation());
    submit.disabled = true;
    try {
      body.batch_dict = batchDict(file);
      // Web Crypto exists only in secure contexts (HTTPS or localhost); elsewhere the batch
      // is created without a hash and the server skips the check.
      if (window.crypto && crypto.subtle) {
        say("Computing the file's SHA-256…");
        body.hash = await sha256Hex(file);
      }

      say("Asking for an upload URL…");
      const issued = await answerOf("Upload URL", await api(form.dataset.cacheUrl, "POST"));
      body.handler = issued.handler;

      say(`Uploading ${file.name} (${file.size.toLocaleString()} bytes)…`);
      await answerOf(
        "Upload",
        await fetch(issued.url, {
          method: "PUT",
          headers: { "Content-Type": file.type || "application/octet-stream" },
          body: file,
        }),
      );

      say("Creating the batch…");
      const batch = await answerOf("Create batch", await api(form.dataset.batchesUrl, "POST", body));
      say("Batch created; opening it…");
      window.location.assign(form.dataset.detailUrl.replace("00000000-0000-0000-0000-000000000000", batch.batch));
    } catch (error) {
      say("");
      showError(error instanceof ApiRefusal ? error.message : `The upload failed: ${error.message}`);
      submit.disabled = false;
    }
  });
})();
