/* Filter the broker cards as the person types; say so when nothing matches (the server does
   the same for the no-JavaScript search). */
(function () {
  "use strict";
  document.querySelectorAll("[data-filter-cards]").forEach(function (input) {
    var cards = document.querySelectorAll(input.dataset.filterCards + " [data-name]");
    var status = document.querySelector("[data-search-status]");
    function apply() {
      var q = input.value.trim().toLowerCase();
      var shown = 0;
      cards.forEach(function (card) {
        card.hidden = Boolean(q) && card.dataset.name.indexOf(q) === -1;
        if (!card.hidden) shown += 1;
      });
      document.querySelectorAll(".catalog-more").forEach(function (section) {
        section.hidden = !section.querySelector("[data-name]:not([hidden])");
      });
      if (status) status.textContent = shown ? "" : status.dataset.emptyTemplate.replace("{q}", input.value.trim());
    }
    input.addEventListener("input", apply);
    if (input.value) apply();  // typed before this script ran
  });
})();
