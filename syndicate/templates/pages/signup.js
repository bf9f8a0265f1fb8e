// The subscriber forms' two conveniences; both forms work the same without them.
// 1. The time zone: the browser's own (Intl), when the list has it and the reader has not chosen yet.
// 2. The weekday: shown only when the digest is weekly.
(function () {
  "use strict";
  var zone = document.getElementById("field-timezone");
  if (zone && zone.dataset.detect) {
    var detected = "";
    try { detected = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { detected = ""; }
    for (var i = 0; i < zone.options.length; i++) {
      if (zone.options[i].value === detected) { zone.value = detected; break; }
    }
  }
  var frequency = document.getElementById("field-frequency");
  var weekday = document.getElementById("weekday-field");
  if (frequency && weekday) {
    var update = function () { weekday.hidden = frequency.value !== weekday.dataset.showWhen; };
    frequency.addEventListener("change", update);
    update();
  }
})();
