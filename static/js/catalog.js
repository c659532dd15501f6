/* Broker catalog: filter the cards as the person types (the search form still works without JS).
   A file, not an inline script, so the Content-Security-Policy needs no 'unsafe-inline'. */
document.querySelectorAll("[data-filter-cards]").forEach(function (input) {
  var cards = document.querySelectorAll(input.dataset.filterCards + " [data-name]");
  input.addEventListener("input", function () {
    var q = input.value.trim().toLowerCase();
    cards.forEach(function (card) { card.hidden = q && card.dataset.name.indexOf(q) === -1; });
  });
});
