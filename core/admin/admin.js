/*
 * keyleash admin page: lists accounts and their budgeted API keys, draws per-day spend
 * charts and revokes keys. Vanilla ES2020, no dependencies, no build step. Talks to the
 * JSON API under ./api/ (see docs/admin.md). Builds the DOM with createElement and sets SVG
 * geometry with setAttribute: the server's CSP forbids inline scripts and styles.
 *
 * Money is shown in cents with 2 decimals ("120.50 ¢"); the exact number is kept in a
 * data-cents attribute for tests.
 */

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const CHART_DAYS = 30;
  const DEBOUNCE_MS = 250;
  const COLUMNS = ["ID", "Name", "Prefix", "Budget", "Used", "Held", "Remaining", "Period", "Expires", "Status"];

  const $ = (sel, root = document) => root.querySelector(sel);
  const list = $("#accounts");
  const message = $("#message");
  const panel = $("#chart");
  const search = $("#q");

  let listSeq = 0; // bumps on every accounts load; stale responses are dropped
  let chartSeq = 0; // same for the chart panel
  let csrfPromise = null;

  // ---------- helpers ----------

  /** Create an element. attrs: class, text, or any attribute (null/false = skipped). */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    node.append(...children.filter((c) => c != null));
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text != null) node.textContent = text;
    return node;
  }

  const fmtCents = (c) => `${Number(c).toFixed(2)} ¢`;
  const fmtDay = (iso) => new Date(iso).toISOString().slice(0, 10);
  const fmtStamp = (iso) => `${new Date(iso).toISOString().slice(0, 16).replace("T", " ")} UTC`;

  /** Show a line in the #message status area (errors are styled red). */
  function say(text, isError = false) {
    message.textContent = text;
    message.classList.toggle("error", isError);
  }

  /** fetch + JSON; throws an Error carrying the API's error message and code. */
  async function api(url, options = {}) {
    const res = await fetch(url, { credentials: "same-origin", ...options });
    let body = null;
    try {
      body = await res.json();
    } catch {
      /* non-JSON body */
    }
    if (!res.ok) {
      const err = new Error(body?.error?.message || `HTTP ${res.status}`);
      err.code = body?.error?.code || String(res.status);
      throw err;
    }
    return body;
  }

  /** CSRF token from api/session, fetched once at load and cached (refetched after a failure). */
  function csrfToken() {
    if (!csrfPromise) {
      csrfPromise = api("api/session")
        .then((d) => d.csrf)
        .catch((err) => {
          csrfPromise = null;
          throw err;
        });
    }
    return csrfPromise;
  }

  // ---------- accounts list ----------

  async function loadAccounts() {
    const seq = ++listSeq;
    const q = search.value.trim();
    list.setAttribute("aria-busy", "true");
    try {
      const data = await api(`api/accounts${q ? `?q=${encodeURIComponent(q)}` : ""}`);
      if (seq === listSeq) renderAccounts(data);
    } catch (err) {
      if (seq !== listSeq) return;
      const retry = el("button", { type: "button", text: "Retry" });
      retry.addEventListener("click", loadAccounts);
      list.replaceChildren(
        el(
          "div",
          { class: "state error load-error" },
          el("p", { text: `Could not load accounts: ${err.message}` }),
          retry,
        ),
      );
    } finally {
      if (seq === listSeq) list.removeAttribute("aria-busy");
    }
  }

  function renderAccounts(data) {
    const accounts = data.accounts || [];
    if (accounts.length === 0) {
      list.replaceChildren(el("p", { class: "state empty", text: "No keys match" }));
      return;
    }
    const nodes = accounts.map(renderAccount);
    if (data.truncated) {
      nodes.push(el("p", { class: "state", text: "More accounts match: refine the search to see them." }));
    }
    list.replaceChildren(...nodes);
  }

  function renderAccount(acct, i) {
    const headingId = `account-${i}`;
    const chartBtn = el("button", { type: "button", class: "account-chart", text: "Spend chart" });
    chartBtn.addEventListener("click", () =>
      showChart(`Spend per day — account ${acct.accountId}`, `account=${encodeURIComponent(acct.accountId)}`),
    );

    const head = el(
      "div",
      { class: "account-head" },
      el("h2", { id: headingId, text: acct.accountId }),
      acct.ceiling ? renderCeiling(acct.ceiling) : el("span", { class: "muted", text: "No account ceiling" }),
      chartBtn,
    );

    const keys = acct.keys || [];
    const body = keys.length
      ? el("div", { class: "table-wrap" }, renderKeyTable(keys))
      : el("p", { class: "state", text: "No keys" });

    return el(
      "section",
      { class: "account panel", "data-account": acct.accountId, "aria-labelledby": headingId },
      head,
      body,
    );
  }

  /** The account ceiling as a compact definition list. */
  function renderCeiling(c) {
    const item = (label, col, node) => el("div", {}, el("dt", { text: label }), node(col));
    const money = (cents) => (col) =>
      el("dd", { "data-col": col, "data-cents": cents ?? "", text: cents == null ? "uncapped" : fmtCents(cents) });
    return el(
      "dl",
      { class: "ceiling", "aria-label": "Account ceiling" },
      item("Ceiling", "budget", money(c.budgetCents)),
      item("Used", "used", money(c.budgetUsedCents)),
      item("Held", "held", money(c.budgetHeldCents)),
      item("Remaining", "remaining", money(c.budgetRemainingCents)),
      item("Period", "period", (col) =>
        el("dd", {
          "data-col": col,
          title: c.budgetResetAt ? `Resets ${fmtStamp(c.budgetResetAt)}` : null,
          text: c.budgetPeriod || "lifetime",
        }),
      ),
    );
  }

  function renderKeyTable(keys) {
    const headRow = el(
      "tr",
      {},
      ...COLUMNS.map((c) => el("th", { scope: "col", text: c })),
      el("th", { scope: "col" }, el("span", { class: "sr-only", text: "Actions" })),
    );
    return el("table", { class: "keys" }, el("thead", {}, headRow), el("tbody", {}, ...keys.map(renderKeyRow)));
  }

  function moneyCell(col, cents) {
    return el("td", {
      class: cents == null ? "num muted" : "num",
      "data-col": col,
      "data-cents": cents ?? "",
      text: cents == null ? "uncapped" : fmtCents(cents),
    });
  }

  function renderKeyRow(key) {
    const row = el(
      "tr",
      { class: "key", "data-key-id": key.id },
      el("td", { class: "num", "data-col": "id", text: key.id }),
      el("td", { "data-col": "name", class: key.name ? null : "muted", text: key.name || "—" }),
      el("td", { "data-col": "prefix" }, el("code", { text: key.keyPrefix })),
      moneyCell("budget", key.budgetCents),
      moneyCell("used", key.budgetUsedCents),
      moneyCell("held", key.budgetHeldCents),
      moneyCell("remaining", key.budgetRemainingCents),
      el("td", {
        "data-col": "period",
        "data-period": key.budgetPeriod ?? "",
        title: key.budgetResetAt ? `Resets ${fmtStamp(key.budgetResetAt)}` : null,
        text: key.budgetPeriod || "lifetime",
      }),
      el("td", {
        "data-col": "expires",
        "data-iso": key.expiresAt ?? "",
        title: key.expiresAt ? fmtStamp(key.expiresAt) : null,
        text: key.expiresAt ? fmtDay(key.expiresAt) : "never",
      }),
      el(
        "td",
        { "data-col": "status", "data-status": key.status },
        el("span", { class: `badge badge-${key.status}`, text: key.status.replace(/_/g, " ") }),
      ),
    );

    const label = `key #${key.id}${key.name ? ` (${key.name})` : ""}`;
    const chart = el("button", {
      type: "button",
      class: "chart",
      "aria-label": `Spend chart for ${label}`,
      text: "Chart",
    });
    chart.addEventListener("click", () => showChart(`Spend per day — ${label}`, `key=${key.id}`));
    const actions = el("td", { class: "actions" }, chart);
    if (key.status !== "revoked") {
      const revoke = el("button", {
        type: "button",
        class: "revoke danger-outline",
        "aria-label": `Revoke ${label}`,
        text: "Revoke",
      });
      revoke.addEventListener("click", () => askRevoke(key, row));
      actions.append(revoke);
    }
    row.append(actions);
    return row;
  }

  // ---------- revoke (inline confirmation) ----------

  function closeConfirm() {
    for (const r of list.querySelectorAll("tr.confirm-row")) r.remove();
  }

  function askRevoke(key, row) {
    closeConfirm();
    const text = `Revoke key #${key.id} (${key.keyPrefix}…)? Apps using it stop working at once.`;
    const yes = el("button", { type: "button", class: "confirm-revoke danger", text: "Revoke key" });
    const no = el("button", { type: "button", class: "cancel-revoke", text: "Cancel" });
    const box = el(
      "div",
      { class: "confirm", role: "alertdialog", "aria-label": `Confirm revoking key #${key.id}` },
      el("p", { text }),
      yes,
      no,
    );
    const cancel = () => {
      closeConfirm();
      $("button.revoke", row)?.focus();
    };
    no.addEventListener("click", cancel);
    yes.addEventListener("click", () => revoke(key, [yes, no]));
    box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") cancel();
    });
    row.after(el("tr", { class: "confirm-row" }, el("td", { colspan: COLUMNS.length + 1 }, box)));
    no.focus(); // the safe choice gets the focus
  }

  async function revoke(key, buttons) {
    buttons.forEach((b) => {
      b.disabled = true;
    });
    try {
      const token = await csrfToken();
      await api("api/revoke", {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Keyleash-Csrf": token },
        body: JSON.stringify({ id: key.id }),
      });
      say(`Key #${key.id} revoked.`);
      await loadAccounts();
    } catch (err) {
      if (err.code === "csrf") csrfPromise = null; // stale session: fetch a new token next time
      say(`Could not revoke key #${key.id}: ${err.message}`, true);
      buttons.forEach((b) => {
        b.disabled = false;
      });
    }
  }

  // ---------- spend chart ----------

  async function showChart(title, query) {
    const seq = ++chartSeq;
    const body = $(".chart-body", panel);
    const total = $(".total", panel);
    panel.hidden = false;
    $("#chart-title").textContent = title;
    body.replaceChildren(el("p", { class: "state", text: "Loading…" }));
    total.textContent = "…";
    total.removeAttribute("data-cents");
    panel.scrollIntoView({ block: "nearest" });
    $("#chart-title").focus({ preventScroll: true });
    try {
      const data = await api(`api/spend?${query}&days=${CHART_DAYS}`);
      if (seq !== chartSeq) return;
      body.replaceChildren(drawBars(data.days || [], body.clientWidth));
      total.dataset.cents = String(data.totalCents);
      total.textContent = fmtCents(data.totalCents);
    } catch (err) {
      if (seq !== chartSeq) return;
      body.replaceChildren(el("p", { class: "state error", text: `Could not load spend: ${err.message}` }));
      total.textContent = "—";
    }
  }

  /** Round up to 1, 2, 2.5 or 5 times a power of ten, for a tidy y-axis top. */
  function niceCeil(v) {
    if (v <= 0) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 2, 2.5, 5, 10].map((m) => m * p).find((x) => x >= v);
  }

  /** SVG bar chart, one <rect class="bar"> per day (height 0 on zero days). Drawn at the
   *  container's width so text is not scaled; the viewBox still lets it shrink on resize. */
  function drawBars(days, width) {
    const W = Math.max(360, Math.round(width) || 760),
      H = 240,
      L = 64,
      R = 12,
      T = 14,
      B = 30;
    const plotW = W - L - R,
      plotH = H - T - B;
    const top = niceCeil(Math.max(0, ...days.map((d) => d.cents)));
    const slot = plotW / Math.max(1, days.length);
    const barW = Math.max(1, slot * 0.72);
    const root = svg("svg", {
      class: "spend",
      viewBox: `0 0 ${W} ${H}`,
      role: "img",
      "aria-label": `Spend per day over ${days.length} days`,
    });

    // Horizontal grid lines with y labels at 0, half and top.
    for (const f of [0, 0.5, 1]) {
      const y = T + plotH * (1 - f);
      root.append(svg("line", { class: f === 0 ? "axis" : "grid", x1: L, x2: W - R, y1: y, y2: y }));
      root.append(
        svg("text", { class: "tick", x: L - 8, y: y + 4, "text-anchor": "end" }, `${+(top * f).toFixed(2)} ¢`),
      );
    }

    days.forEach((d, i) => {
      const h = (d.cents / top) * plotH;
      const x = L + i * slot + (slot - barW) / 2;
      const rect = svg("rect", {
        class: "bar",
        x: x.toFixed(2),
        y: (T + plotH - h).toFixed(2),
        width: barW.toFixed(2),
        height: h.toFixed(2),
        "data-day": d.day,
        "data-cents": String(d.cents),
      });
      rect.append(svg("title", {}, `${d.day}: ${fmtCents(d.cents)}`));
      root.append(rect);
    });

    // A few date labels along the x axis: first, every ~week, last.
    const step = Math.max(1, Math.round(days.length / 4));
    days.forEach((d, i) => {
      if (i % step !== 0 && i !== days.length - 1) return;
      if (i !== days.length - 1 && days.length - 1 - i < step / 2) return; // avoid overlap with last
      root.append(
        svg(
          "text",
          { class: "tick", x: (L + (i + 0.5) * slot).toFixed(2), y: H - 10, "text-anchor": "middle" },
          d.day.slice(5),
        ),
      );
    });
    return root;
  }

  // ---------- wiring ----------

  let timer = null;
  search.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(loadAccounts, DEBOUNCE_MS);
  });
  $("#search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    clearTimeout(timer);
    loadAccounts();
  });
  $(".close-chart", panel).addEventListener("click", () => {
    chartSeq++;
    panel.hidden = true;
  });

  csrfToken().catch((err) => say(`Could not start an admin session: ${err.message}`, true));
  loadAccounts();
})();
