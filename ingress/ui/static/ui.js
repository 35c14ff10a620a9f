// restate-lambda web UI: routes on the URL fragment, fetches server-rendered views with the
// admin token, and sends invocation actions to the admin API. No dependencies.
"use strict";

(() => {
  const TOKEN_KEY = "restate-lambda.admin-token";
  // The views this page may load (anything else in the fragment is refused).
  const ROUTES = /^(invocations|invocations\/inv_[0-9A-Za-z]+|services|state)$/;
  const ACTIONS = new Set(["cancel", "kill", "purge", "pause", "resume"]);
  const CONFIRM = {
    kill: "Kill this invocation? Its handler runs no compensation.",
    purge: "Purge this invocation? Its result and journal are deleted.",
  };

  const $ = (id) => document.getElementById(id);
  let generation = 0;
  let afterNavigation = null;  // [message, kind] to flash once the next view is asked for

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = token();
    if (t) h.authorization = "Bearer " + t;
    return h;
  }

  function flash(message, kind) {
    const el = $("flash");
    el.textContent = message;
    el.className = kind || "info";
    el.hidden = !message;
  }

  function rawRoute() {
    return location.hash.replace(/^#\/?/, "");
  }

  function route() {
    const raw = rawRoute();
    const at = raw.indexOf("?");
    const path = decodeURIComponent(at < 0 ? raw : raw.slice(0, at)) || "invocations";
    const query = at < 0 ? "" : raw.slice(at + 1);
    return { path, query };
  }

  function markNav(path, query) {
    for (const a of document.querySelectorAll("[data-nav]")) {
      const nav = a.dataset.nav;
      const failed = query.includes("status=failed");
      const on =
        nav === "failed" ? path === "invocations" && failed : path.split("/")[0] === nav && !(nav === "invocations" && failed);
      a.classList.toggle("active", on);
    }
  }

  async function errorMessage(response) {
    try {
      const body = await response.json();
      if (body && typeof body.message === "string") return body.message;
    } catch (e) {
      // not JSON
    }
    return "HTTP " + response.status;
  }

  function showLogin(reason) {
    $("login").hidden = false;
    $("view").hidden = true;
    $("login-reason").textContent = reason;
    $("token").focus();
  }

  // The view element says which route it shows (data-route) and whether it is loading
  // (aria-busy): tests and assistive technology can wait for a view.
  function settled(view, raw) {
    view.dataset.route = raw;
    view.removeAttribute("aria-busy");
  }

  async function load() {
    const mine = ++generation;
    const raw = rawRoute();
    const { path, query } = route();
    const view = $("view");
    view.setAttribute("aria-busy", "true");
    markNav(path, query);
    if (!ROUTES.test(path)) {
      flash("Unknown page: " + path, "error");
      view.replaceChildren();
      settled(view, raw);
      return;
    }
    let response;
    try {
      response = await fetch("/ui/views/" + path + (query ? "?" + query : ""), {
        headers: headers({ accept: "text/html" }),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      if (mine === generation) {
        flash("The admin API cannot be reached: " + e.message, "error");
        settled(view, raw);
      }
      return;
    }
    if (mine !== generation) return;  // a newer navigation won
    if (response.status === 401) {
      showLogin(
        token()
          ? "The admin API refused this token: " + (await errorMessage(response))
          : "This admin API needs its bearer token (RESTATE_LAMBDA_ADMIN_TOKEN).",
      );
      settled(view, raw);
      return;
    }
    if (!response.ok || !(response.headers.get("content-type") || "").startsWith("text/html")) {
      const message = await errorMessage(response);
      if (mine !== generation) return;
      view.hidden = false;
      view.replaceChildren();
      flash(message, "error");
      settled(view, raw);
      return;
    }
    const html = await response.text();
    if (mine !== generation) return;
    $("login").hidden = true;
    $("logout").hidden = !token();
    view.hidden = false;
    // The view is HTML rendered and escaped by the server; the CSP allows no inline script.
    view.innerHTML = html;
    document.title = "restate-lambda: " + (view.querySelector("h1")?.textContent || path);
    settled(view, raw);
  }

  function hashFromForm(form) {
    const target = form.dataset.route;
    const data = new FormData(form);
    if (target === "goto") {
      const id = String(data.get("id") || "").trim();
      return id ? "#/invocations/" + encodeURIComponent(id) : null;
    }
    const params = new URLSearchParams();
    for (const [name, value] of data.entries()) {
      const text = String(value).trim();
      if (text && !(name === "limit" && text === "50")) params.set(name, text);
    }
    const query = params.toString();
    return "#/" + target + (query ? "?" + query : "");
  }

  async function act(button) {
    const action = button.dataset.action;
    const id = button.dataset.id;
    if (!ACTIONS.has(action) || !/^inv_[0-9A-Za-z]+$/.test(id || "")) return;
    if (CONFIRM[action] && !window.confirm(CONFIRM[action])) return;
    button.disabled = true;
    let response;
    try {
      response = await fetch("/invocations/" + encodeURIComponent(id) + "/" + action, {
        method: "PATCH",
        headers: headers(),
        credentials: "omit",
        cache: "no-store",
      });
    } catch (e) {
      button.disabled = false;
      flash(action + " failed: " + e.message, "error");
      return;
    }
    if (response.status === 401) {
      showLogin("The admin API needs its bearer token to " + action + ".");
      return;
    }
    if (!response.ok) {
      button.disabled = false;
      flash(action + " refused: " + (await errorMessage(response)), "error");
      return;
    }
    if (action === "purge") {
      // nothing left to show: back to the list, saying what happened
      afterNavigation = ["purge accepted: " + id + " is deleted", "ok"];
      location.hash = "#/invocations";
      return;
    }
    flash(action + " accepted for " + id, "ok");
    // cancel and resume take effect in the background: look again shortly
    setTimeout(load, action === "cancel" || action === "resume" ? 700 : 100);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    event.preventDefault();
    if (form.id === "login") {
      const value = $("token").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      flash("", "");
      load();
      return;
    }
    const hash = hashFromForm(form);
    if (hash === null) return;
    flash("", "");
    if (hash === location.hash) load();
    else location.hash = hash;
  });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) {
      event.preventDefault();
      act(button);
      return;
    }
    const reload = event.target.closest("a[data-reload]");
    if (reload && reload.getAttribute("href") === location.hash) {
      event.preventDefault();
      flash("", "");
      load();
    }
  });

  window.addEventListener("hashchange", () => {
    flash(...(afterNavigation || ["", ""]));
    afterNavigation = null;
    load();
  });

  document.addEventListener("DOMContentLoaded", () => {
    $("logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      $("logout").hidden = true;
      flash("Token forgotten.", "info");
      load();
    });
    load();
  });
})();
