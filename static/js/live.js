/* brokerlink live pages: the "Live / Reconnecting… / Reconnect now" indicator, polling while
   the event stream is down (cards poll only when body[data-live] is not "open"), screen-reader
   announcements of status changes, and the disconnect dialog opened as a modal. */
(function () {
  "use strict";
  var known = {};

  function setState(state) {
    document.body.dataset.live = state;
    var box = document.getElementById("live-indicator");
    if (!box) return;
    box.dataset.state = state;
    var text = box.querySelector("[data-live-text]");
    var button = box.querySelector("[data-live-reconnect]");
    if (text) text.textContent = state === "open" ? "Live" : state === "connecting" ? "Connecting…" : "Reconnecting…";
    if (button) button.hidden = state === "open" || state === "connecting";
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
  });
  document.addEventListener("htmx:sseOpen", function () { setState("open"); });
  document.addEventListener("htmx:sseError", function () { setState("reconnecting"); });
  document.addEventListener("htmx:sseClose", function (evt) {
    if (evt.detail && evt.detail.type === "nodeReplaced") return;
    setState("reconnecting");
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
