// dpps dashboard: small progressive enhancements; every page works without this script.
(function () {
  "use strict";
  // Product search: say how many files the filter matches (or what is wrong) while typing.
  var input = document.getElementById("q");
  var hint = document.getElementById("hint");
  if (input && hint) {
    var timer = null;
    var check = function () {
      var q = input.value;
      fetch("/ui/search-count?q=" + encodeURIComponent(q), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          if (input.value !== q) { return; }
          if (data.error) {
            hint.className = "hint error";
            hint.textContent = data.error;
          } else {
            hint.className = "hint";
            hint.textContent = data.count + (data.count === 1 ? " file matches" : " files match");
          }
        })
        .catch(function () { hint.textContent = ""; });
    };
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(check, 250);
    });
  }
  // The overview refreshes itself every minute while it is visible.
  if (document.querySelector("[data-testid=total-files]")) {
    setInterval(function () {
      if (document.visibilityState === "visible") { window.location.reload(); }
    }, 60000);
  }
})();
