/* The segment page's live count: after each change to the filters (debounced), post the form to the admin's
   count view and show how many members match. No library; a stale answer never overwrites a newer one. */
(function () {
  "use strict";
  var DELAY_MS = 400;

  function start() {
    var target = document.getElementById("segment-live-count");
    if (!target) return;
    var form = target.closest("form");
    if (!form) return;
    var note = document.getElementById("segment-live-count-note");
    var url = target.getAttribute("data-url");
    var timer = null;
    var controller = null;
    var latest = 0;

    function show(text, title) {
      target.textContent = text;
      if (note) note.textContent = title || "";
    }

    function refresh() {
      var ticket = ++latest;
      if (controller) controller.abort();
      controller = window.AbortController ? new AbortController() : null;
      show("…");
      fetch(url, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { "X-Requested-With": "XMLHttpRequest", Accept: "application/json" },
        signal: controller ? controller.signal : undefined,
      })
        .then(function (response) {
          return response.json().then(function (body) { return { ok: response.ok, body: body }; });
        })
        .then(function (answer) {
          if (ticket !== latest) return;
          if (answer.ok) {
            show(answer.body.display, "");
          } else {
            var errors = answer.body.errors || {};
            var messages = Object.keys(errors).map(function (name) {
              return errors[name].map(function (e) { return e.message; }).join(" ");
            });
            show("—", messages.join(" "));
          }
        })
        .catch(function (error) {
          if (error && error.name === "AbortError") return;
          if (ticket === latest) show("—", "");
        });
    }

    function schedule(event) {
      if (event && event.target && event.target.name === "csrfmiddlewaretoken") return;
      window.clearTimeout(timer);
      timer = window.setTimeout(refresh, DELAY_MS);
    }

    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
