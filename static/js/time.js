/* First visit of a signed-in person whose time zone is unknown: report the browser's zone
   (the server keeps it only while none is set, and the settings page can change it). */
(function () {
  "use strict";
  var url = document.body.dataset.detectTz;
  if (!url || !window.fetch || !window.Intl) return;
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone) return;
  var headers = {};
  try { headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}"); } catch (e) { headers = {}; }
  headers["Content-Type"] = "application/x-www-form-urlencoded";
  var body = "detected=1&time_zone=" + encodeURIComponent(zone);
  fetch(url, { method: "POST", headers: headers, body: body, credentials: "same-origin" }).then(function (response) {
    // Re-render once so the times on this page are already in the person's zone.
    if (response.status === 204 && zone !== "UTC" && zone !== "Etc/UTC") window.location.reload();
  });
})();
