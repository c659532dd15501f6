/* brokerlink live pages: the "Live / Reconnecting… / Reconnect now" indicator, polling while
   the event stream is down (a `live-poll` event on <body> every data-poll-seconds, which the
   cards, panel and summary strip listen for; never while body[data-live] is "open"; decided
   here because the CSP allows no eval, so hx-trigger filters cannot), the stream's scheduled
   end ("bye") reopened without an error, every stream opened with what the page shows
   (`?seen=`, so what changed while none was open is sent first), screen-reader
   announcements of status changes, live "next attempt in 40 s" countdowns, "You were signed
   out" when the session ends, and the disconnect dialog opened as a modal. */
(function () {
  "use strict";
  var known = {};
  // A stream that ends on schedule reopens within a second: only a gap longer than this
  // shows "Reconnecting…", so the indicator does not flash every few minutes.
  var RECONNECTING_AFTER_MS = 4000;
  var reconnectingTimer = null;

  function setState(state) {
    document.body.dataset.live = state;
    var box = document.getElementById("live-indicator");
    if (!box) return;
    box.dataset.state = state;
    var text = box.querySelector("[data-live-text]");
    var button = box.querySelector("[data-live-reconnect]");
    if (text) {
      text.textContent = state === "open" ? "Live" : state === "connecting" ? "Connecting…"
        : state === "signed-out" ? "Signed out" : "Reconnecting…";
    }
    if (button) button.hidden = state !== "reconnecting";
  }

  function streamTrouble() {
    if (document.body.dataset.live === "signed-out" || reconnectingTimer) return;
    reconnectingTimer = setTimeout(function () {
      reconnectingTimer = null;
      if (document.body.dataset.live !== "signed-out") setState("reconnecting");
    }, RECONNECTING_AFTER_MS);
  }

  function streamOpen() {
    if (reconnectingTimer) { clearTimeout(reconnectingTimer); reconnectingTimer = null; }
    if (document.body.dataset.live !== "signed-out") setState("open");
  }

  function closeStream() {
    var root = document.getElementById("live-root");
    if (!root) return;
    var data = root["htmx-internal-data"];
    if (data && data.sseEventSource) data.sseEventSource.close();
    root.removeAttribute("sse-connect");
  }

  function signedOut(login) {
    closeStream();
    setState("signed-out");
    if (document.getElementById("signed-out")) return;
    var here = window.location.pathname + window.location.search;
    var box = document.createElement("div");
    box.id = "signed-out";
    box.className = "message message--warning signed-out";
    box.setAttribute("role", "alert");
    box.innerHTML = "<strong>You were signed out.</strong> This page stopped updating. <a></a>";
    var link = box.querySelector("a");
    link.textContent = "Sign in again";
    link.href = login || "/accounts/login/?next=" + encodeURIComponent(here);
    var main = document.querySelector("main") || document.body;
    main.insertBefore(box, main.firstChild);
  }

  function durationPhrase(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    if (seconds < 2 * 86400) return Math.floor(seconds / 3600) + " h";
    return Math.floor(seconds / 86400) + " days";
  }

  function tickCountdowns() {
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      var left = Math.floor((Date.parse(el.getAttribute("datetime")) - Date.now()) / 1000);
      el.textContent = left >= 1 ? "in " + durationPhrase(left) : "any moment now";
    });
  }
  setInterval(tickCountdowns, 1000);

  // Every tick dispatches `live-tick` on <body> (what a page can wait for: "a poll would have
  // happened by now"); only a tick while the stream is down also dispatches `live-poll`.
  function pollTick() {
    var state = document.body.dataset.live;
    htmx.trigger(document.body, "live-tick", { polling: state !== "open" && state !== "signed-out" });
    if (state !== "open" && state !== "signed-out") htmx.trigger(document.body, "live-poll");
  }

  function pollStart() {
    var box = document.getElementById("live-indicator");
    if (!box || !document.getElementById("live-root")) return;
    var seconds = parseFloat(box.dataset.pollSeconds);
    if (!(seconds > 0)) seconds = 5;
    setInterval(pollTick, seconds * 1000);
  }

  // The server ends each stream on schedule with a `bye` event (sse-close="bye"): the extension
  // closes it quietly and the page opens a new one with the same elements processed afresh
  // (a browser-side reconnect after a dropped stream would log htmx:sseError every time).
  function reopen() {
    var root = document.getElementById("live-root");
    if (!root || document.body.dataset.live === "signed-out") return;
    var focused = document.activeElement && root.contains(document.activeElement) ? document.activeElement.id : "";
    var fresh = root.cloneNode(true);
    root.replaceWith(fresh);
    htmx.process(fresh);
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
  }

  // Every stream is opened with what the page shows (`?seen=`: each card's, or the panel's,
  // data-live-version, read at that moment), and the server sends first whatever changed since
  // (pages.live.Hub.resume): a change made while no stream was open (between a scheduled
  // end and the next open, or while the page loaded) still reaches the page. The extension
  // opens every stream through htmx.createEventSource, which it leaves to be replaced.
  // SEEN_MAX_CARDS: pages.live.SEEN_MAX_CARDS (the URL stays short).
  var SEEN_MAX_CARDS = 400;
  function seenNow() {
    var root = document.getElementById("live-root");
    var pieces = [];
    if (root) {
      root.querySelectorAll("[data-live-version]").forEach(function (el) {
        if (pieces.length < SEEN_MAX_CARDS) pieces.push(el.dataset.liveVersion);
      });
    }
    return pieces.join("");
  }
  // The summary strip says too whether it shows "Status may be out of date" (`&stale=`).
  htmx.createEventSource = function (url) {
    var seen = seenNow();
    var strip = document.getElementById("summary-strip");
    var query = [];
    if (seen) query.push("seen=" + encodeURIComponent(seen));
    if (strip) query.push("stale=" + (strip.querySelector("[data-stale]") ? "1" : "0"));
    if (query.length) url += (url.indexOf("?") < 0 ? "?" : "&") + query.join("&");
    return new EventSource(url, { withCredentials: true });
  };

  // A dropped stream: EventSource would reconnect by itself to the URL it was opened with,
  // whose ?seen= is what the page showed then (a card pushed since, then changed back in the
  // gap, would stay wrong). Closed here, the extension opens a new one (with back-off)
  // through htmx.createEventSource, with what the page shows now.
  function streamError(evt) {
    var source = evt.detail && evt.detail.source;
    if (source && source.readyState === EventSource.CONNECTING) source.close();
    streamTrouble();
  }

  // The summary strip is re-fetched after each batch of changes, at a random moment within
  // SUMMARY_SPREAD_MS: every open page hears the same event, and a sweep's changes must not
  // bring all of them to the server in the same instant. One re-fetch per batch.
  var SUMMARY_SPREAD_MS = 1000;
  var summaryTimer = null;
  function summaryDue() {
    if (summaryTimer) return;
    summaryTimer = setTimeout(function () {
      summaryTimer = null;
      htmx.trigger(document.body, "live-summary");
    }, Math.random() * SUMMARY_SPREAD_MS);
  }

  function remember() {
    document.querySelectorAll("[data-live-status]").forEach(function (el) {
      known[el.id] = el.dataset.liveStatus;
    });
  }

  function announceChanges() {
    var said = [];
    document.querySelectorAll("[data-live-status]").forEach(function (el) {
      var before = known[el.id];
      if (before && before !== el.dataset.liveStatus) {
        said.push(el.dataset.liveTitle + ": " + el.dataset.liveLabel);
      }
      known[el.id] = el.dataset.liveStatus;
    });
    var announcer = document.getElementById("live-announcer");
    if (said.length && announcer) announcer.textContent = said.join(". ");
  }

  function reconnect() {
    setState("connecting");
    // Replacing the root closes the old EventSource and opens a new one (htmx sse extension).
    htmx.ajax("GET", window.location.href, { target: "#live-root", select: "#live-root", swap: "outerHTML" });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("live-root")) setState(document.body.dataset.live || "connecting");
    remember();
    pollStart();
  });
  document.addEventListener("htmx:sseOpen", streamOpen);
  document.addEventListener("htmx:sseError", streamError);
  document.addEventListener("htmx:sseClose", function (evt) {
    if (evt.detail && evt.detail.type === "nodeReplaced") return;
    if (evt.detail && evt.detail.type === "message") { reopen(); return; }
    streamTrouble();
  });
  // The stream of a signed-out visitor says so (views_live._signed_out_stream) ...
  document.addEventListener("htmx:sseBeforeMessage", function (evt) {
    if (evt.detail && evt.detail.type === "signed-out") { evt.preventDefault(); signedOut(); }
    if (evt.detail && evt.detail.type === "summary") summaryDue();
  });
  // ... and so does every htmx request (pages.middleware).
  document.addEventListener("brokerlink:signed-out", function (evt) {
    signedOut(evt.detail && evt.detail.login);
  });
  // A busy server answers a re-fetch with 204 + X-Brokerlink-Busy (config.errorpages): the
  // element keeps what it shows and asks again a few seconds later, at a random moment so the
  // open pages do not all come back at once.
  document.addEventListener("htmx:afterRequest", function (evt) {
    var xhr = evt.detail && evt.detail.xhr;
    if (!xhr || xhr.status !== 204 || !xhr.getResponseHeader("X-Brokerlink-Busy")) return;
    var elt = evt.detail.elt;
    setTimeout(function () {
      if (document.body.contains(elt)) htmx.trigger(elt, "live-retry");
    }, 2000 + Math.random() * 6000);
  });
  document.addEventListener("htmx:afterSettle", announceChanges);
  document.addEventListener("click", function (evt) {
    if (evt.target.closest("[data-live-reconnect]")) reconnect();
  });
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (!evt.detail.target || evt.detail.target.id !== "dialog-slot") return;
    var dialog = evt.detail.target.querySelector("dialog");
    if (dialog && dialog.showModal) {
      dialog.removeAttribute("open");
      dialog.classList.add("is-modal");
      dialog.showModal();
    }
  });
  document.addEventListener("close", function (evt) {
    if (evt.target.tagName === "DIALOG") evt.target.remove();
  }, true);
})();
