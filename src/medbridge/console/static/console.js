// MedBridge console: the CSRF token on every htmx request (no inline script anywhere: the
// Content-Security-Policy forbids it).
"use strict";

document.body.addEventListener("htmx:configRequest", function (event) {
  event.detail.headers["X-CSRF-Token"] = document.body.dataset.csrf;
});
