// The Observatory's live timeline: records arrive as server-sent events and are added
// to the page as they come.  Every value is user data: it is placed with textContent,
// never parsed as markup, and a link is only ever one of our own paths.
"use strict";

(function () {
  const MAX_ROWS = 300;        // rows kept in the live table (older ones page in from the server)
  const MAX_OPERATIONS = 30;   // entries kept in the operations list
  const FLUSH_MS = 200;        // records are added to the page in batches, at most this often
  const MAX_QUEUED = 2000;     // records kept while paused (counted all the same)
  const ROWS_PER_FLUSH = 60;   // beyond this, a batch shows its newest rows: nobody reads
                               // hundreds of rows a second, and the page must stay quick
  const KINDS = new Set(["command", "query", "event"]);

  const config = document.getElementById("timeline-config");
  if (!config || !config.dataset.stream) {
    return;
  }
  const table = document.querySelector("#timeline tbody");
  const operations = document.getElementById("operations");
  const status = document.getElementById("live-status");
  const pause = document.getElementById("pause");
  const news = document.getElementById("operation-news");
  const selected = config.dataset.correlationId || null;
  const counters = document.body.dataset;

  let received = 0;
  let lastId = -1;
  let outOfOrder = 0;
  let paused = false;
  let queue = [];
  let timer = null;
  let skipped = 0;

  // What the stream delivered, for people (the status) and for tests (body data-*).
  function showCounters() {
    counters.received = String(received);
    counters.lastEventId = lastId < 0 ? "" : String(lastId);
    counters.outOfOrder = String(outOfOrder);
  }
  showCounters();
  setInterval(showCounters, 250);

  function ownPath(link) {
    return typeof link === "string" && link.startsWith("/") && !link.startsWith("//")
      ? link : null;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function link(href, text, title) {
    const a = el("a", null, text);
    const path = ownPath(href);
    if (path) a.setAttribute("href", path);
    if (title) a.title = String(title);
    return a;
  }

  function cell(className, child) {
    const td = el("td", className);
    if (child instanceof Node) td.appendChild(child);
    else if (child !== undefined && child !== null) td.textContent = String(child);
    return td;
  }

  // The same row as record_row() in templates/macros.html.
  function recordRow(r) {
    const d = r.display;
    const tr = el("tr", "record");
    if (r.outcome === "failed") tr.classList.add("failed");
    if (r.causation_id === null) tr.classList.add("root");
    tr.classList.add("live");
    tr.dataset.position = String(r.position);
    tr.dataset.messageId = String(r.message_id);
    tr.dataset.correlationId = String(r.correlation_id);
    tr.appendChild(cell("mark", d.mark));
    tr.appendChild(cell("time", d.time));
    const kind = cell("kind", r.kind);
    if (KINDS.has(r.kind)) kind.classList.add("kind-" + r.kind);
    tr.appendChild(kind);
    const type = cell("type", link(r.links.message, d.type));
    type.title = String(r.message_type);
    tr.appendChild(type);
    tr.appendChild(cell("id", link(r.links.message, d.id)));
    const handlers = el("td", "handlers");
    if (d.handlers.length === 0) handlers.appendChild(el("span", "dim", "no handler"));
    for (const h of d.handlers) {
      const span = el("span", h.failed ? "handler failed" : "handler", h.name + " ");
      span.appendChild(el("span", "dim", h.duration));
      handlers.appendChild(span);
    }
    tr.appendChild(handlers);
    tr.appendChild(cell("duration", d.duration));
    tr.appendChild(cell("who", d.requested_by));
    tr.appendChild(cell("service", d.service));
    tr.appendChild(cell("correlation", link(r.links.operation, d.correlation, r.correlation_id)));
    tr.appendChild(cell("error", d.error || ""));
    return tr;
  }

  // An operation opened by a root record, as summary_row() shows it.
  function operationEntry(r) {
    const li = el("li", "operation live");
    if (r.outcome === "failed") li.classList.add("failed");
    li.dataset.correlationId = String(r.correlation_id);
    li.appendChild(el("span", "mark", r.display.mark));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(link(r.links.operation, r.display.type, r.correlation_id));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "who", r.display.requested_by));
    li.appendChild(document.createTextNode(" "));
    li.appendChild(el("span", "dim", r.display.time));
    return li;
  }

  function markOperation(r) {
    if (!operations) return;
    for (const li of operations.children) {
      if (li.dataset.correlationId === r.correlation_id) {
        if (r.outcome === "failed" && !li.classList.contains("failed")) {
          li.classList.add("failed");
          li.querySelector(".mark").textContent = "✗";
        }
        return;
      }
    }
    if (r.causation_id === null) {
      operations.insertBefore(operationEntry(r), operations.firstChild);
      while (operations.children.length > MAX_OPERATIONS) operations.lastChild.remove();
    }
  }

  function flush() {
    timer = null;
    if (paused || queue.length === 0) return;
    const batch = queue;
    queue = [];
    const rows = document.createDocumentFragment();
    const first = Math.max(batch.length - ROWS_PER_FLUSH, 0);
    skipped += first;
    for (let i = batch.length - 1; i >= first; i--) rows.appendChild(recordRow(batch[i]));
    table.insertBefore(rows, table.firstChild);
    while (table.children.length > MAX_ROWS) table.lastChild.remove();
    for (const r of batch) markOperation(r);
    const empty = document.querySelector(".live .empty");
    if (empty) empty.remove();
    if (skipped > 0 && !paused) {
      showStatus("live", "live · " + skipped.toLocaleString() + " fast-moving records not drawn");
    }
  }

  function schedule() {
    if (timer === null && !paused) timer = setTimeout(flush, FLUSH_MS);
  }

  function showStatus(state, text) {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  }

  const source = new EventSource(config.dataset.stream);
  source.addEventListener("open", () => showStatus("live", "live"));
  source.addEventListener("error", () => showStatus("reconnecting", "reconnecting…"));
  source.addEventListener("record", (event) => {
    const id = Number(event.lastEventId);
    if (!(id > lastId)) outOfOrder += 1;
    lastId = id;
    received += 1;
    let record;
    try {
      record = JSON.parse(event.data);
    } catch (problem) {
      return;
    }
    queue.push(record);
    if (queue.length > MAX_QUEUED) skipped += queue.splice(0, queue.length - MAX_QUEUED).length;
    if (selected !== null && record.correlation_id === selected && news) {
      news.hidden = false;
      news.querySelector("a").setAttribute("href", location.pathname + location.search);
    }
    if (paused && pause) pause.textContent = "Resume (" + queue.length + " new)";
    schedule();
  });

  if (pause) {
    pause.addEventListener("click", () => {
      paused = !paused;
      pause.textContent = paused ? "Resume" : "Pause";
      pause.setAttribute("aria-pressed", String(paused));
      if (paused) {
        showStatus("paused", "paused");
      } else {
        showStatus("live", "live");
        schedule();
      }
    });
  }
})();
