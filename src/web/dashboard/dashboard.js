// The admin dashboard: plain DOM, no framework. Everything it shows comes from the admin API and
// the progress socket with the admin's token, kept in this tab's sessionStorage only.

const TOKEN_KEY = "ratatoskr-admin-token";
const PRIORITIES = ["urgent", "high", "normal", "low"];
const PAGE = 20;

const $ = (selector) => document.querySelector(selector);

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  socket: undefined,
  retry: undefined,
  offset: 0,
  total: 0,
  detailsId: undefined,
};

/** A new element with attributes and children (text or elements). */
const el = (tag, attributes = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

const fill = (tbody, rows) => tbody.replaceChildren(...rows);

/**
 * Someone is working in this part of the page (focus inside it, or a confirmation open): a live
 * redraw now would take their focus away, so it waits for the next push.
 */
const busy = (selector) => $("#confirm").open || $(selector).contains(document.activeElement);
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");
const dateTime = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const seconds = (s) => (s === null || s === undefined ? "none yet" : `${s.toFixed(1)} s`);

class ApiError extends Error {
  constructor(status, body) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

const api = async (method, path, body) => {
  const response = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${state.token}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
};

// ---- what an action did -------------------------------------------------------------------

const say = (text, bad = false) => {
  const result = $("#result");
  result.textContent = text;
  result.classList.toggle("bad", bad);
};

/** Asks first (every action does); resolves to the reason typed, or undefined if not confirmed. */
const confirmAction = (title, text, { reason = false } = {}) =>
  new Promise((resolve) => {
    const dialog = $("#confirm");
    $("#confirm-title").textContent = title;
    $("#confirm-text").textContent = text;
    $("#confirm-reason-field").hidden = !reason;
    const input = $("#confirm-reason");
    input.value = "";
    input.required = reason;
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "ok" ? input.value.trim() || "-" : undefined),
      { once: true },
    );
    dialog.returnValue = "";
    dialog.showModal();
    (reason ? input : $("#confirm-ok")).focus();
  });

const act = async (title, text, run, options) => {
  const answer = await confirmAction(title, text, options);
  if (answer === undefined) return say(`${title}: not done`);
  try {
    say(`${title}: ${await run(answer)}`);
  } catch (error) {
    say(`${title} failed: ${error.message}`, true);
  }
  // Best effort: the next push redraws what did not load now.
  await Promise.all([
    refreshSnapshot().catch(() => {}),
    loadTasks(),
    loadDead(),
    state.detailsId && showDetails(state.detailsId).catch(() => {}),
  ]);
};

// ---- the live snapshot ------------------------------------------------------------------------

const renderOverview = (s) => {
  const backend =
    s.backend.mode === "redis" ? "Redis" : s.backend.forced ? "Database (rollback)" : "Database (Redis down)";
  const memory =
    s.redis.usedMb === null
      ? (s.redis.error ?? "not read yet")
      : `${s.redis.usedMb} MB${s.redis.maxMb ? ` of ${s.redis.maxMb} MB (${s.redis.percent}%)` : ""}`;
  const items = [
    ["Queue backend", backend],
    ["Redis memory", memory],
    ["Run time p50 (last hour)", seconds(s.durations.p50)],
    ["Run time p95 (last hour)", seconds(s.durations.p95)],
    ["Completed in the last hour", s.durations.count],
    ["Tasks queued", s.tasks.queued],
    ["Tasks running", s.tasks.running],
    ["Waiting in the database queue", s.tasks.inDatabaseQueue],
    ["Outages seen by this server", s.backend.outages],
  ];
  $("#overview").replaceChildren(
    ...items.map(([name, value]) =>
      el("div", { "data-name": name }, el("dt", {}, name), el("dd", {}, String(value))),
    ),
  );
};

const queueAction = (priority, action, label) =>
  act(`${label} ${priority}`, `${label} the ${priority} queue?`, async () => {
    const answer = await api("POST", "/admin/api/rq/queue-management", {
      action,
      queue_name: priority,
    });
    if (action === "clear_queue") return `${answer.cleared} waiting tasks cancelled`;
    return answer.changed ? "done" : "it already was";
  });

const QUEUE_FIELDS = ["waiting", "running", "delayed", "dead", "completedLastHour", "failedLastHour"];

/** One row per priority, built once; later snapshots change its text in place (focus stays put). */
const queueRow = (priority) => {
  const toggle = el("button", {
    type: "button",
    "data-role": "toggle",
    onclick: () => {
      const paused = toggle.dataset.paused === "true";
      return queueAction(priority, paused ? "resume_queue" : "pause_queue", paused ? "Resume" : "Pause");
    },
  });
  return el(
    "tr",
    { "data-priority": priority },
    el("th", { scope: "row" }, priority),
    el("td", { "data-field": "state" }),
    ...QUEUE_FIELDS.map((f) => el("td", { class: "num", "data-field": f })),
    el(
      "td",
      { class: "actions" },
      toggle,
      el(
        "button",
        { type: "button", class: "danger", onclick: () => queueAction(priority, "clear_queue", "Clear") },
        "Clear",
        el("span", { class: "sr-only" }, ` ${priority}`),
      ),
    ),
  );
};

const renderQueues = (s) => {
  const tbody = $("#queues tbody");
  if (!s.priorities) {
    fill(tbody, [el("tr", {}, el("td", { colspan: 9 }, s.redis.error ?? "Redis did not answer"))]);
    return;
  }
  if (tbody.querySelectorAll("tr[data-priority]").length !== s.priorities.length)
    fill(
      tbody,
      s.priorities.map((p) => queueRow(p.priority)),
    );
  for (const p of s.priorities) {
    const row = tbody.querySelector(`tr[data-priority="${p.priority}"]`);
    row.querySelector('[data-field="state"]').textContent = p.paused ? "paused" : "running";
    for (const f of QUEUE_FIELDS) row.querySelector(`[data-field="${f}"]`).textContent = String(p[f]);
    const toggle = row.querySelector('[data-role="toggle"]');
    if (toggle.dataset.paused !== String(p.paused)) {
      toggle.dataset.paused = String(p.paused);
      toggle.replaceChildren(
        p.paused ? "Resume" : "Pause",
        el("span", { class: "sr-only" }, ` ${p.priority}`),
      );
    }
  }
};

const total = (counts) => PRIORITIES.reduce((n, p) => n + (counts[p] ?? 0), 0);

const drawBars = (svg, values, label) => {
  const width = 600;
  const height = 120;
  const top = Math.max(1, ...values);
  const step = width / Math.max(1, values.length);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const ns = "http://www.w3.org/2000/svg";
  const bars = values.map((v, i) => {
    const rect = document.createElementNS(ns, "rect");
    const h = (v / top) * (height - 4);
    rect.setAttribute("x", String(i * step + 1));
    rect.setAttribute("width", String(Math.max(1, step - 2)));
    rect.setAttribute("y", String(height - h));
    rect.setAttribute("height", String(h));
    return rect;
  });
  const title = document.createElementNS(ns, "title");
  const sum = values.reduce((a, b) => a + b, 0);
  title.textContent = `${label}: ${sum} in the last hour, at most ${Math.max(0, ...values)} in a minute`;
  svg.replaceChildren(title, ...bars);
};

const renderHistory = (s) => {
  const completed = s.history.map((m) => total(m.completed));
  const failed = s.history.map((m) => total(m.failed) + total(m.retried));
  drawBars($("#chart-completed"), completed, "Completed per minute");
  drawBars($("#chart-failed"), failed, "Failed or retried per minute");
  fill(
    $("#history tbody"),
    [...s.history]
      .reverse()
      .filter((m) => total(m.completed) + total(m.failed) + total(m.retried) > 0)
      .map((m) =>
        el(
          "tr",
          {},
          el("td", {}, time(m.minute)),
          el("td", { class: "num" }, total(m.completed)),
          el("td", { class: "num" }, total(m.failed)),
          el("td", { class: "num" }, total(m.retried)),
        ),
      ),
  );
};

const renderWorkers = (s) => {
  if (!s.workers) {
    fill($("#workers tbody"), [el("tr", {}, el("td", { colspan: 7 }, "Redis did not answer"))]);
    return;
  }
  if (s.workers.length === 0) {
    fill($("#workers tbody"), [el("tr", {}, el("td", { colspan: 7 }, "No live workers"))]);
    return;
  }
  fill(
    $("#workers tbody"),
    s.workers.map((w) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, w.id),
        el("td", {}, w.groups.map((g) => `${g.name} (${g.queues.join(" > ")}) ×${g.concurrency}`).join(", ")),
        el("td", { class: "num" }, w.active),
        el("td", {}, w.jobs.length === 0 ? "none" : w.jobs.map((id) => id.slice(0, 8)).join(", ")),
        el("td", { class: "num" }, `${w.rssMb} MB`),
        el("td", {}, w.mode),
        el("td", { class: "num" }, `${Math.max(0, Math.round((s.at - w.lastBeatAt) / 1000))} s ago`),
      ),
    ),
  );
};

const renderActors = (s) =>
  fill(
    $("#actors tbody"),
    Object.entries(s.actors).map(([id, a]) =>
      el(
        "tr",
        {},
        el("th", { scope: "row" }, id),
        el("td", {}, a.running ? "yes" : "no"),
        el("td", { class: "num" }, a.restarts),
        el("td", {}, a.lastExit ?? ""),
      ),
    ),
  );

/** Recent alerts as a banner; a new one is also announced once (not at every redraw). */
const renderAlerts = (s) => {
  const recent = (s.alerts ?? []).filter((a) => s.at - a.at < 3_600_000);
  const key = recent.map((a) => `${a.at}|${a.message}`).join("\n");
  if (key === state.alertsKey) return;
  const fresh = recent.filter((a) => a.at > (state.alertsSeen ?? 0));
  state.alertsKey = key;
  state.alertsSeen = Math.max(state.alertsSeen ?? 0, ...recent.map((a) => a.at));
  $("#alerts").hidden = recent.length === 0;
  $("#alerts-list").replaceChildren(
    ...recent.map((a) => el("li", {}, `${time(a.at)} · ${a.level} · ${a.message} (${a.source})`)),
  );
  if (fresh.length > 0 && state.alertsSeenOnce)
    $("#alerts-news").textContent = `New alert: ${fresh[0].message}`;
  state.alertsSeenOnce = true;
};

const render = (snapshot) => {
  renderAlerts(snapshot);
  renderOverview(snapshot);
  renderQueues(snapshot);
  renderHistory(snapshot);
  renderWorkers(snapshot);
  renderActors(snapshot);
  $("#connection").textContent = `Live · updated ${time(snapshot.at)}`;
};

const refreshSnapshot = async () => render((await api("GET", "/admin/api/dashboard")).dashboard);

// ---- tasks ------------------------------------------------------------------------------------

const loadTasks = async () => {
  const form = new FormData($("#task-filters"));
  const query = new URLSearchParams({ limit: String(PAGE), offset: String(state.offset) });
  for (const [name, value] of form) if (String(value).trim() !== "") query.set(name, String(value).trim());
  try {
    const answer = await api("GET", `/admin/api/jobs?${query}`);
    state.total = answer.total;
    $("#tasks-caption").textContent =
      answer.total === 0
        ? "No tasks match"
        : `Tasks ${state.offset + 1} to ${state.offset + answer.jobs.length} of ${answer.total}, newest first`;
    $("#tasks-prev").disabled = state.offset === 0;
    $("#tasks-next").disabled = state.offset + PAGE >= answer.total;
    fill(
      $("#tasks tbody"),
      answer.jobs.map((j) =>
        el(
          "tr",
          { "data-task": j.task_id },
          el(
            "td",
            {},
            el(
              "button",
              {
                type: "button",
                class: "link",
                onclick: () => showDetails(j.task_id).catch((e) => say(`Details: ${e.message}`, true)),
              },
              el("code", {}, j.task_id.slice(0, 8)),
              el("span", { class: "sr-only" }, ` details of task ${j.task_id}`),
            ),
          ),
          el("td", { class: "num" }, j.user_id),
          el("td", { class: `status-${j.status}` }, j.status),
          el("td", {}, j.priority),
          el("td", { class: "num" }, `${j.progress_percent}%`),
          el("td", {}, dateTime(j.created_at)),
          el("td", { class: "error" }, j.error_message ?? ""),
        ),
      ),
    );
  } catch (error) {
    say(`Tasks: ${error.message}`, true);
  }
};

const field = (name, value) => [el("dt", {}, name), el("dd", {}, value ?? "")];

const showDetails = async (taskId) => {
  const answer = await api("GET", `/admin/api/jobs/${taskId}/details`);
  const job = answer.job;
  const section = $("#details");
  const opening = state.detailsId !== taskId;
  if (opening && state.detailsId)
    state.socket?.send(JSON.stringify({ event: "leave_task", data: { task_id: state.detailsId } }));
  state.detailsId = taskId;
  $("#details-title").textContent = `Task ${taskId}`;
  $("#details-fields").replaceChildren(
    ...field("Status", job.status),
    ...field("Priority", job.priority),
    ...field("User", job.user_id),
    ...field("Progress", `${job.progress_percent}% ${job.current_step ?? ""}`),
    ...field("Attempt", `${job.attempt} (retries ${job.retry_count} of ${job.max_retries})`),
    ...field("Queue", job.queue_backend + (answer.queue ? `, ${answer.queue.state} in Redis` : "")),
    ...field("Created", dateTime(job.created_at)),
    ...field("Started", dateTime(job.started_at)),
    ...field("Ended", dateTime(job.completed_at)),
    ...field("Error", job.error_message),
    ...field(
      "Cancelled",
      job.cancellation_reason
        ? `${job.cancellation_reason}${job.cancelled_by_admin ? " (by an admin)" : ""}`
        : "",
    ),
  );
  $("#details-priority").value = job.priority;
  const active = job.status === "queued" || job.status === "running";
  $("#details-cancel").disabled = !active;
  $("#details-move").disabled = job.status !== "queued";
  $("#details-steps").replaceChildren(
    ...(answer.queue?.steps ?? []).map((s) =>
      el("li", {}, `${time(s.at)} · attempt ${s.attempt} · ${s.percent}% · ${s.step}`),
    ),
  );
  if ((answer.queue?.steps ?? []).length === 0)
    $("#details-steps").replaceChildren(el("li", {}, "No progress reported (or Redis no longer has it)"));
  fill(
    $("#details-audit tbody"),
    (answer.audit ?? []).map((a) =>
      el(
        "tr",
        {},
        el("td", {}, dateTime(a.at)),
        el("td", {}, a.action.replaceAll("_", " ")),
        el("td", {}, a.actor),
        el("td", {}, a.from_status ? `${a.from_status} → ${a.to_status}` : (a.to_status ?? "")),
        el("td", { class: "num" }, a.attempt ?? ""),
        el("td", {}, a.reason ?? ""),
      ),
    ),
  );
  $("#details-results").textContent = job.results ? JSON.stringify(job.results, null, 2) : "none";
  section.hidden = false;
  if (opening) {
    state.socket?.send(JSON.stringify({ event: "join_task", data: { task_id: taskId } }));
    $("#details-title").focus();
  }
};

const closeDetails = () => {
  if (state.detailsId)
    state.socket?.send(JSON.stringify({ event: "leave_task", data: { task_id: state.detailsId } }));
  state.detailsId = undefined;
  $("#details").hidden = true;
};

// ---- dead letters -----------------------------------------------------------------------------

const loadDead = async () => {
  try {
    const answer = await api("GET", "/admin/api/dead?limit=50");
    fill(
      $("#dead tbody"),
      answer.dead.length === 0
        ? [el("tr", {}, el("td", { colspan: 6 }, "No dead letters"))]
        : answer.dead.map((d) =>
            el(
              "tr",
              { "data-entry": d.entryId },
              el("td", {}, new Date(d.at).toLocaleString()),
              el("td", {}, d.priority),
              el("td", {}, d.taskId ? el("code", {}, d.taskId.slice(0, 8)) : "(none)"),
              el("td", { class: "num" }, d.attempt),
              el("td", {}, d.reason),
              el(
                "td",
                { class: "actions" },
                el(
                  "button",
                  {
                    type: "button",
                    onclick: () =>
                      act("Retry", `Run the task of dead letter ${d.entryId} again?`, async () => {
                        const r = await api("POST", `/admin/api/dead/${d.priority}/retry`, {
                          entry_ids: [d.entryId],
                        });
                        return r.retried === 1
                          ? "queued again"
                          : `refused (${JSON.stringify(r.results[0]?.outcome)})`;
                      }),
                  },
                  "Retry",
                  el("span", { class: "sr-only" }, ` dead letter ${d.entryId}`),
                ),
                el(
                  "button",
                  {
                    type: "button",
                    class: "danger",
                    onclick: () =>
                      act("Purge", `Delete dead letter ${d.entryId} for good?`, async () => {
                        const r = await api("POST", `/admin/api/dead/${d.priority}/purge`, {
                          entry_ids: [d.entryId],
                        });
                        return `${r.purged} deleted`;
                      }),
                  },
                  "Purge",
                  el("span", { class: "sr-only" }, ` dead letter ${d.entryId}`),
                ),
              ),
            ),
          ),
    );
  } catch (error) {
    say(`Dead letters: ${error.message}`, true);
  }
};

// ---- the socket -------------------------------------------------------------------------------

const connect = () => {
  clearTimeout(state.retry);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // The token goes in the first message, not the URL: URLs end up in proxies' logs.
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  state.socket = socket;
  const send = (event, data) => socket.send(JSON.stringify({ event, data }));
  socket.addEventListener("open", () => send("auth", { token: state.token }));
  socket.addEventListener("message", (message) => {
    const frame = JSON.parse(message.data);
    if (frame.event === "authenticated") {
      send("watch_dashboard", {});
      if (state.detailsId) send("join_task", { task_id: state.detailsId });
      return;
    }
    if (frame.event === "dashboard") {
      render(frame.data);
      // The tables follow the numbers, unless someone is working in them.
      if (!busy("#tasks-section")) void loadTasks();
      if (!busy("#dead")) void loadDead();
      return;
    }
    if (frame.data?.task_id && frame.data.task_id === state.detailsId)
      void showDetails(state.detailsId).catch(() => {});
  });
  socket.addEventListener("close", (event) => {
    if (state.socket !== socket || !state.token) return;
    if (event.code === 4401) {
      // The token was revoked (or its user demoted): reconnecting would not help.
      signOut();
      $("#sign-in-error").textContent = "The server no longer accepts this token. Sign in again.";
      return;
    }
    $("#connection").textContent = "Connection lost; reconnecting…";
    state.retry = setTimeout(connect, 2000);
  });
};

// ---- signing in and out -----------------------------------------------------------------------

const signIn = async (token) => {
  state.token = token;
  try {
    await refreshSnapshot();
  } catch (error) {
    // Only a refusal forgets the token: a server away for a moment does not sign anyone out.
    if (error.status === 401 || error.status === 403) sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    const text =
      error.status === 401
        ? "That token was refused."
        : error.status === 403
          ? "That token is not an administrator's."
          : `Could not sign in: ${error.message}`;
    $("#sign-in-error").textContent = text;
    $("#sign-in").hidden = false;
    $("#app").hidden = true;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#sign-in").hidden = true;
  $("#app").hidden = false;
  $("#sign-out").hidden = false;
  $("#sign-in-error").textContent = "";
  connect();
  await Promise.all([loadTasks(), loadDead()]);
};

const signOut = () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  const socket = state.socket;
  state.socket = undefined;
  socket?.close();
  closeDetails();
  $("#app").hidden = true;
  $("#sign-out").hidden = true;
  $("#sign-in").hidden = false;
  $("#connection").textContent = "Not signed in";
  $("#token").value = "";
  $("#token").focus();
};

$("#sign-in-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void signIn($("#token").value.trim());
});
$("#sign-out").addEventListener("click", signOut);
$("#task-filters").addEventListener("submit", (event) => {
  event.preventDefault();
  state.offset = 0;
  void loadTasks();
});
$("#tasks-prev").addEventListener("click", () => {
  state.offset = Math.max(0, state.offset - PAGE);
  void loadTasks();
});
$("#tasks-next").addEventListener("click", () => {
  state.offset += PAGE;
  void loadTasks();
});
$("#details-close").addEventListener("click", closeDetails);
$("#details-cancel").addEventListener("click", () =>
  act(
    "Cancel",
    `Cancel task ${state.detailsId}? Give the reason; the user sees it.`,
    async (reason) => {
      const r = await api("POST", `/admin/api/jobs/${state.detailsId}/cancel`, { reason });
      return r.status;
    },
    { reason: true },
  ),
);
$("#details-restart").addEventListener("click", () =>
  act("Restart", `Run task ${state.detailsId}'s settings again as a new task?`, async () => {
    const r = await api("POST", `/admin/api/jobs/${state.detailsId}/restart`);
    return `new task ${r.task_id}`;
  }),
);
$("#details-move").addEventListener("click", () => {
  const priority = $("#details-priority").value;
  return act("Change the priority", `Move task ${state.detailsId} to ${priority}?`, async () => {
    const r = await api("PUT", `/admin/api/jobs/${state.detailsId}/priority`, { priority });
    return `now ${r.priority}`;
  });
});

if (state.token) void signIn(state.token);
else $("#token").focus();
